"""A small client of a QuantumRNG server's v2 API, and ``RemoteRandom`` on top of it.

Needs ``httpx`` (``pip install quantumrng[client]``), imported on first use
so the package works without it. The key comes from ``api_key`` or the
``QRNG_API_KEY`` environment variable and is sent as ``Authorization:
Bearer``. Server errors, ``{"error": {"code", "message"}}``, come back as
the :mod:`quantumrng.errors` class of that code (by HTTP status when the
code is unknown); a server that cannot be reached is ``Unavailable``. An
answer of the wrong length or shape raises too: it is never padded or used.

Signed answers (``signed=True``) leave their ``signed`` object in
``Client.last_signed``. Everything that checks them is offline and needs only
the service's public keys (``GET /api/v2/keys/public``, best pinned once):
:func:`verify` checks a signature (``quantumrng.signed.verify_signed``),
:func:`audit_log` checks a signed tree head, each result's RFC 9162 inclusion
proof and the consistency of the log with a head seen before
(``quantumrng.transparency.verify``); :meth:`Client.audit` fetches what it needs.
"""

from __future__ import annotations

import base64
import builtins
import json
import math
import os
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from quantumrng import errors
from quantumrng.buffer import ZeroingBuffer
from quantumrng.errors import NotFound, QuantumRNGError, Unavailable
from quantumrng.formats import BytesRandom
from quantumrng.signed import PublicKey, Verification, canonical, verify_signed
from quantumrng.transparency.verify import check_consistency, check_inclusion, verify_head

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_URL",
    "Audit",
    "Client",
    "RemoteRandom",
    "audit_log",
    "load_public_keys",
    "signed_of",
    "verify",
]

DEFAULT_URL = "http://127.0.0.1:5000"
DEFAULT_TIMEOUT = 30.0  # seconds per network operation (connect, read, write)
READ_CHUNK = 1 << 16  # bytes per read of a raw stream
PROOF_WAIT_SECONDS = 10.0  # longest an audit waits for a head that covers a new result
PROOF_RETRY_SECONDS = 0.25
_KEPT_HEADERS = ("www-authenticate", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def error_from_response(status: int, body: object, headers: Mapping[str, str]) -> QuantumRNGError:
    """Return the error a server's error answer stands for."""
    code = message = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code, message = body["error"].get("code"), body["error"].get("message")
    cls = errors.error_class(status, code)
    if not isinstance(message, str):
        message = f"the server answered HTTP {status}"
    retry_after: float | None = None
    try:
        retry_after = float(headers.get("retry-after", ""))
    except ValueError:
        retry_after = None
    if retry_after is not None and not math.isfinite(retry_after):
        retry_after = None
    kept = {k: v for k, v in headers.items() if k.lower() in _KEPT_HEADERS}
    return cls(message, retry_after=retry_after, headers=kept)


def _malformed(what: str) -> NoReturn:
    raise QuantumRNGError(f"the server's answer to {what} has the wrong shape or length")


def signed_of(document: object) -> object:
    """The ``signed`` object of a whole signed answer (or stored result), else
    ``document`` itself."""
    if isinstance(document, Mapping) and "signed" in document and "result" not in document:
        return document["signed"]
    return document


def load_public_keys(source: object) -> builtins.list[PublicKey]:
    """Public keys from what ``GET /api/v2/keys/public`` answers (``{"keys": [...]}``),
    a list of its entries, one entry, :class:`PublicKey` objects, or PEM text or bytes
    (valid at any time). Raises ``ValueError`` for anything else."""
    if isinstance(source, PublicKey):
        return [source]
    if isinstance(source, str | builtins.bytes):
        text = source.encode() if isinstance(source, str) else source
        if text.lstrip().startswith(b"-----BEGIN"):
            return [PublicKey.from_pem(text)]
        return load_public_keys(json.loads(text))
    if isinstance(source, Mapping):
        entries = source.get("keys")
        if isinstance(entries, builtins.list):
            return [k for e in entries for k in load_public_keys(e)]
        return [PublicKey.from_json(source)]
    if isinstance(source, Iterable):
        return [k for item in source for k in load_public_keys(item)]
    raise ValueError("public keys are PEM, a key entry or the /api/v2/keys/public document")


def verify(answer_or_signed: object, public_keys: object) -> Verification:
    """Check a signed answer (or its ``signed`` object) offline against ``public_keys``
    (anything :func:`load_public_keys` reads). Never raises on a bad answer."""
    return verify_signed(signed_of(answer_or_signed), load_public_keys(public_keys))


@dataclass(frozen=True)
class Audit:
    """The outcome of checking the log: ``valid``, what failed (``reason``), and the
    verified head to keep for the next check (None if the head did not verify)."""

    valid: bool
    reason: str
    head: dict[str, Any] | None = None


def audit_log(
    head: Mapping[str, Any],
    public_keys: object,
    *,
    results: Iterable[tuple[object, Mapping[str, Any]]] = (),
    previous: Mapping[str, Any] | None = None,
    consistency: Mapping[str, Any] | None = None,
) -> Audit:
    """Check, offline, a signed tree ``head``; each ``(signed, inclusion proof)`` of
    ``results``: its signature and that its canonical bytes are a leaf of the tree
    ``head`` signs; and, with a ``previous`` head, that the log only grew since
    (``consistency``: the proof from ``previous``'s size to ``head``'s; not needed
    when a size is 0 or both are equal).

    A result missing from the log, a log rewritten or shrunk between two heads, a
    head or result not signed by one of ``public_keys`` each fail with one reason.
    """
    keys = load_public_keys(public_keys)
    if not verify_head(head, keys):
        return Audit(False, "the log head's signature does not verify under the public keys")
    for signed, proof in results:
        checked = verify(signed, keys)
        if not checked.valid:
            return Audit(False, f"result {checked.serial}: {checked.reason}")
        result = signed_of(signed)
        assert isinstance(result, Mapping)
        leaf = canonical(dict(result["result"]))
        if not check_inclusion(proof, head, leaf):
            return Audit(
                False,
                f"result {checked.serial} is not in the log of tree size {head['tree_size']}",
            )
    if previous is not None:
        if not verify_head(previous, keys):
            return Audit(False, "the saved head's signature does not verify under the public keys")
        m, n = previous["tree_size"], head["tree_size"]
        if n < m:
            return Audit(False, f"the log shrank from tree size {m} to {n}")
        if m == n and previous["root_hash"] != head["root_hash"]:
            return Audit(False, f"the log was rewritten: two roots for tree size {n}")
        if 0 < m < n and (
            consistency is None or not check_consistency(consistency, previous, head)
        ):
            return Audit(False, f"the log was rewritten between tree sizes {m} and {n}")
    return Audit(True, "ok", dict(head))


class Client:
    """Random numbers from a QuantumRNG server over HTTP(S).

    ``verify`` is True (system CAs), False, a CA bundle path or an
    ``ssl.SSLContext``.

    Thread-safe (one ``httpx.Client``, rebuilt in a forked child).
    ``last_source`` holds the ``source`` (provenance) of the latest JSON answer.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        verify: bool | str | ssl.SSLContext = True,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("QRNG_API_KEY")
        self._timeout = timeout
        self._verify = _tls(verify)
        self._transport = transport
        self._lock = threading.Lock()
        self._http_client: httpx.Client | None = None
        self._pid = 0
        self.last_source: dict[str, Any] | None = None
        self.last_signed: dict[str, Any] | None = None

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"Client({self.base_url!r}, api_key={key})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        with self._lock:
            if self._http_client is not None and self._pid == os.getpid():
                self._http_client.close()
            self._http_client = None

    @property
    def _http(self) -> httpx.Client:
        pid = os.getpid()
        with self._lock:
            if self._http_client is None or self._pid != pid:
                try:
                    import httpx
                except ImportError:
                    raise errors.ConfigError(
                        "the QuantumRNG client needs httpx: pip install 'quantumrng[client]'"
                    ) from None
                headers = {"User-Agent": "quantumrng-client"}
                if self._api_key:
                    headers["Authorization"] = f"Bearer {self._api_key}"
                # a client inherited through fork shares sockets with the parent:
                # abandon it without closing them
                self._http_client = httpx.Client(
                    base_url=self.base_url,
                    headers=headers,
                    timeout=self._timeout,
                    verify=self._verify,
                    transport=self._transport,
                )
                self._pid = pid
            return self._http_client

    # -- transport ----------------------------------------------------------------

    def _call(self, send: Callable[[httpx.Client], Any], path: str) -> Any:
        import httpx

        try:
            return send(self._http)
        except httpx.TimeoutException:
            raise Unavailable(f"{self.base_url}{path} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach {self.base_url}{path}: {type(exc).__name__}") from None

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        def send(http: httpx.Client) -> Any:
            response = http.get(path, params=_query(params))
            return _json(response)

        return self._call(send, path)

    def _data(self, path: str, params: Mapping[str, Any], signed: bool = False) -> Any:
        body = self._get(path, {**params, "signed": "true"} if signed else params)
        if not isinstance(body, dict) or "data" not in body:
            _malformed(path)
        source = body.get("source")
        self.last_source = source if isinstance(source, dict) else None
        self.last_signed = None
        if signed:
            block = body.get("signed")
            result = block.get("result") if isinstance(block, dict) else None
            if (
                not isinstance(result, dict)
                or result.get("data") != body["data"]
                or result.get("provenance") != source
            ):
                _malformed(path)
            self.last_signed = block
        return body["data"]

    # -- random values ------------------------------------------------------------

    def bytes(self, n: int, mode: str = "drbg") -> builtins.bytes:
        """Return ``n`` random bytes, read as a raw stream."""
        _count(n, 0)
        if n == 0:
            return b""
        path = "/api/v2/bytes"

        def send(http: httpx.Client) -> builtins.bytes:
            params = _query({"n": n, "format": "raw", "mode": mode})
            with http.stream("GET", path, params=params) as response:
                if response.status_code != 200:
                    response.read()
                    _json(response)
                    _malformed(path)
                out = bytearray()
                for piece in response.iter_bytes(READ_CHUNK):
                    out += piece
                    if len(out) > n:
                        break
            if len(out) != n:
                _malformed(path)
            return builtins.bytes(out)

        data: builtins.bytes = self._call(send, path)
        self.last_source = None
        return data

    def signed_bytes(self, n: int, mode: str = "drbg") -> tuple[builtins.bytes, dict[str, Any]]:
        """Return ``n`` random bytes and the ``signed`` object that covers them.

        The bytes come base64 in a signed JSON answer; they are returned only
        if they are exactly what the signed result holds. Check the signature
        with :func:`verify` against a pinned key before trusting them.
        """
        _count(n)
        params = {"n": n, "format": "base64", "mode": mode}
        data = self._data("/api/v2/bytes", params, signed=True)
        try:
            raw = base64.b64decode(data, validate=True) if isinstance(data, str) else None
        except ValueError:
            raw = None
        if raw is None or len(raw) != n or self.last_signed is None:
            _malformed("/api/v2/bytes")
        return raw, self.last_signed

    def bits(self, n: int, mode: str = "drbg", *, signed: bool = False) -> str:
        """Return ``n`` random bits as a string of ``0`` and ``1``."""
        _count(n)
        params = {"n": n, "format": "string", "mode": mode}
        data = self._data("/api/v2/bits", params, signed)
        if not isinstance(data, str) or len(data) != n or data.strip("01"):
            _malformed("/api/v2/bits")
        return data

    def integers(
        self, n: int, min: int, max: int, mode: str = "drbg", *, signed: bool = False
    ) -> builtins.list[int]:
        """Return ``n`` uniform integers in [min, max], any size of bound.

        With ``signed`` the answer's ``signed`` object is in :attr:`last_signed`
        (the same holds for every method but :meth:`bytes`).
        """
        _count(n)
        params = {"n": n, "min": min, "max": max, "mode": mode}
        data = self._data("/api/v2/integers", params, signed)
        values = _ints(data, n, "/api/v2/integers")
        if any(not min <= v <= max for v in values):
            _malformed("/api/v2/integers")
        return values

    def floats(self, n: int, mode: str = "drbg", *, signed: bool = False) -> builtins.list[float]:
        """Return ``n`` uniform floats in [0, 1)."""
        _count(n)
        data = self._data("/api/v2/floats", {"n": n, "mode": mode}, signed)
        values = _floats(data, n, "floats")
        if any(not 0.0 <= v < 1.0 for v in values):
            _malformed("/api/v2/floats")
        return values

    def gaussians(
        self,
        n: int,
        mean: float = 0.0,
        stddev: float = 1.0,
        mode: str = "drbg",
        *,
        signed: bool = False,
    ) -> builtins.list[float]:
        """Return ``n`` normally distributed floats."""
        _count(n)
        params = {"n": n, "mean": mean, "stddev": stddev, "mode": mode}
        return _floats(self._data("/api/v2/gaussians", params, signed), n, "gaussians")

    def uuids(
        self, n: int, mode: str = "drbg", *, signed: bool = False
    ) -> builtins.list[uuid.UUID]:
        """Return ``n`` random version 4 UUIDs."""
        _count(n)
        data = self._data("/api/v2/uuids", {"n": n, "mode": mode}, signed)
        if not isinstance(data, builtins.list) or len(data) != n:
            _malformed("/api/v2/uuids")
        try:
            values = [uuid.UUID(str(v)) for v in data]
        except ValueError:
            _malformed("/api/v2/uuids")
        if any(v.version != 4 for v in values):
            _malformed("/api/v2/uuids")
        return values

    def strings(
        self,
        n: int,
        length: int = 16,
        alphabet: str = "alnum",
        mode: str = "drbg",
        *,
        signed: bool = False,
    ) -> builtins.list[str]:
        """Return ``n`` random strings of ``length`` characters over ``alphabet``.

        ``alphabet`` is a named alphabet of the server (``alnum``, ``hex``, ...)
        or the characters themselves.
        """
        _count(n)
        params = {"n": n, "length": length, "alphabet": alphabet, "mode": mode}
        data = self._data("/api/v2/strings", params, signed)
        if (
            not isinstance(data, builtins.list)
            or len(data) != n
            or not all(isinstance(s, str) and len(s) == length for s in data)
        ):
            _malformed("/api/v2/strings")
        return data

    def shuffle(
        self, min: int, max: int, mode: str = "drbg", *, signed: bool = False
    ) -> builtins.list[int]:
        """Return every integer of [min, max] once, in random order."""
        data = self._data("/api/v2/shuffle", {"min": min, "max": max, "mode": mode}, signed)
        values = _ints(data, max - min + 1, "/api/v2/shuffle")
        if sorted(values) != builtins.list(range(min, max + 1)):
            _malformed("/api/v2/shuffle")
        return values

    # -- about the server -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Return the server's status: pool levels, harvests, reseeds (no secret)."""
        return _mapping(self._get("/api/v2/status"), "/api/v2/status")

    def usage(self) -> dict[str, Any]:
        """Return this client's limits and what is left today (None: unlimited)."""
        return _mapping(self._get("/api/v2/usage"), "/api/v2/usage")

    # -- signed results and the transparency log -------------------------------------

    def public_keys(self) -> builtins.list[PublicKey]:
        """The service's public keys with their periods (``GET /api/v2/keys/public``).

        Fetched from the service itself: pin them (save them once, pass them to
        :func:`verify` and :meth:`audit`) rather than trust each fetch.
        """
        path = "/api/v2/keys/public"
        try:
            return load_public_keys(_mapping(self._get(path), path))
        except ValueError:
            _malformed(path)

    def result(self, serial: int) -> dict[str, Any]:
        """The stored signed result ``serial``: ``{"signed", "log_index"}``."""
        path = f"/api/v2/results/{int(serial)}"
        return _mapping(self._get(path), path)

    def verify_remote(self, answer_or_signed: object) -> dict[str, Any]:
        """The service's own verdict (``POST /api/v2/verify``); :func:`verify` needs no
        network."""
        path = "/api/v2/verify"

        def send(http: httpx.Client) -> Any:
            return _json(http.post(path, json=answer_or_signed))

        return _mapping(self._call(send, path), path)

    def log_head(self) -> dict[str, Any]:
        """The log's latest signed tree head (unverified: see :func:`audit_log`)."""
        return _mapping(self._get("/api/v2/log/head"), "/api/v2/log/head")

    def inclusion_proof(self, serial: int, tree_size: int | None = None) -> dict[str, Any]:
        """The RFC 9162 inclusion proof of result ``serial`` (in ``tree_size``)."""
        path = f"/api/v2/log/proof/{int(serial)}"
        params = None if tree_size is None else {"tree_size": tree_size}
        return _mapping(self._get(path, params), path)

    def consistency_proof(self, first: int, second: int) -> dict[str, Any]:
        """The RFC 9162 consistency proof between tree sizes ``first`` and ``second``."""
        path = "/api/v2/log/consistency"
        return _mapping(self._get(path, {"first": first, "second": second}), path)

    def audit(
        self,
        results: Iterable[object] = (),
        *,
        previous: Mapping[str, Any] | None = None,
        public_keys: object = None,
        wait: float = PROOF_WAIT_SECONDS,
    ) -> Audit:
        """Fetch the log's head and the proofs, then :func:`audit_log` them: each of
        ``results`` (signed answers or objects) signed and in the log, the log
        consistent with ``previous`` (a head this client verified before).

        ``public_keys`` default to :meth:`public_keys` (better pinned). A result
        newer than the latest head is waited for, ``wait`` seconds at most.
        """
        keys = load_public_keys(public_keys) if public_keys is not None else self.public_keys()
        signed = [signed_of(r) for r in results]
        deadline = time.monotonic() + wait
        while True:
            head = self.log_head()
            try:
                if signed and _size(head) == 0:
                    raise NotFound("the log has no signed head over results yet")
                proofs = [self.inclusion_proof(_serial(s), _size(head)) for s in signed]
                break
            except NotFound:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(PROOF_RETRY_SECONDS)
        consistency = None
        if previous is not None and 0 < _size(previous) < _size(head):
            consistency = self.consistency_proof(_size(previous), _size(head))
        return audit_log(
            head,
            keys,
            results=zip(signed, proofs, strict=True),
            previous=previous,
            consistency=consistency,
        )


def _serial(signed: object) -> int:
    result = signed.get("result") if isinstance(signed, Mapping) else None
    serial = result.get("serial") if isinstance(result, Mapping) else None
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 1:
        raise errors.InvalidRequest("a signed result needs a positive integer serial")
    return serial


def _size(head: Mapping[str, Any]) -> int:
    size = head.get("tree_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        _malformed("/api/v2/log/head")
    return size


def _tls(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    if not isinstance(verify, str):
        return verify
    try:
        return ssl.create_default_context(cafile=verify)
    except (OSError, ssl.SSLError) as exc:
        raise errors.ConfigError(f"cannot load the CA bundle {verify}: {exc}") from None


def _query(params: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (params or {}).items():
        out[k] = repr(v) if isinstance(v, float) else str(v)
    return out


def _json(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        raise error_from_response(response.status_code, body, response.headers)
    if body is None:
        _malformed(response.url.path)
    return body


def _count(n: int, minimum: int = 1) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise errors.InvalidRequest(f"n must be an integer of at least {minimum}")


def _ints(data: object, n: int, what: str) -> builtins.list[int]:
    """Integers as sent: JSON numbers, or decimal strings beyond 2^53."""
    if not isinstance(data, builtins.list) or len(data) != n:
        _malformed(what)
    out: builtins.list[int] = []
    for v in data:
        if isinstance(v, int) and not isinstance(v, bool):
            out.append(v)
        elif isinstance(v, str) and v.lstrip("-").isdigit() and v.isascii():
            out.append(int(v))
        else:
            _malformed(what)
    return out


def _floats(data: object, n: int, what: str) -> builtins.list[float]:
    if not isinstance(data, builtins.list) or len(data) != n:
        _malformed(what)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in data):
        _malformed(what)
    return [float(v) for v in data]


def _mapping(body: object, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        _malformed(what)
    return body


class RemoteRandom(BytesRandom):
    """A ``random.Random`` drawing from a QuantumRNG server.

    Bytes are fetched ``chunk_bytes`` at a time from ``/api/v2/bytes``
    (``format=raw``) and each is used once; bytes used are zeroed. A forked
    child drops the buffer it inherited, so parent and child never share
    output. Like ``random.SystemRandom`` it has no state to seed or save.
    """

    def __init__(
        self, client: Client | None = None, *, chunk_bytes: int = 4096, mode: str = "drbg"
    ) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        self.client = client if client is not None else Client()
        self._chunk = chunk_bytes
        self._mode = mode
        self._buf_lock = threading.Lock()
        self._buf = ZeroingBuffer()
        self._pid = os.getpid()
        super().__init__()

    def __repr__(self) -> str:
        return f"RemoteRandom({self.client!r})"

    def _bytes(self, n: int) -> builtins.bytes:
        with self._buf_lock:
            if self._pid != os.getpid():
                self._buf, self._pid = ZeroingBuffer(), os.getpid()
            if n > self._chunk:
                return self.client.bytes(n, self._mode)
            head = self._buf.take(n)
            if len(head) == n:
                return head
            self._buf.load(self.client.bytes(self._chunk, self._mode))
            return head + self._buf.take(n - len(head))
