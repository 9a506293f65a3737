"""Clients of a QuantumRNG server's v2 API (``Client``, ``AsyncClient``), and
``RemoteRandom`` on top of ``Client``.

Needs ``httpx`` (``pip install quantumrng[client]``), imported on first use
so the package works without it. The key comes from ``api_key`` or the
``QRNG_API_KEY`` environment variable and is sent as ``Authorization:
Bearer``. Server errors, ``{"error": {"code", "message"}}``, come back as
the :mod:`quantumrng.errors` class of that code (by HTTP status when the
code is unknown); a server that cannot be reached is ``Unavailable``. An
answer of the wrong length or shape raises too: it is never padded or used.

Both clients run the same operations: each is written once, without I/O, as a
generator that yields the :class:`Request` (or :class:`Sleep`) it needs and
parses the :class:`Reply` it is sent; ``Client`` drives it with blocking
``httpx.Client`` calls and ``time.sleep``, ``AsyncClient`` with one
``httpx.AsyncClient`` and ``asyncio.sleep``. So the two differ only in how
they send, and share the retry policy (:class:`RetryPolicy`): a 429 or 503 is
sent again after its ``Retry-After`` (RFC 9110 §10.2.3), or after an
exponential backoff with jitter when it names none, at most ``retries`` times,
and never after a wait longer than ``max_retry_wait`` (the error is raised at
once instead). A request that could not connect is sent again the same way; one
that may have reached the server (a read timeout, a dropped answer) is not.

Signed answers (``signed=True``) leave their ``signed`` object in
``last_signed``. Everything that checks them is offline and needs only
the service's public keys (``GET /api/v2/keys/public``, best pinned once):
:func:`verify` checks a signature (``quantumrng.signed.verify_signed``),
:func:`audit_log` checks a signed tree head, each result's RFC 9162 inclusion
proof and the consistency of the log with a head seen before
(``quantumrng.transparency.verify``); :meth:`Client.audit` fetches what it needs.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import collections
import contextlib
import inspect
import json
import math
import os
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Concatenate, NoReturn, ParamSpec, TypeVar

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
    "AsyncClient",
    "Audit",
    "Client",
    "RemoteRandom",
    "Reply",
    "Request",
    "RetryPolicy",
    "Sleep",
    "audit_log",
    "load_public_keys",
    "parse_retry_after",
    "signed_of",
    "verify",
]

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_URL = "http://127.0.0.1:5000"
DEFAULT_TIMEOUT = 30.0  # seconds per network operation (connect, read, write)
DEFAULT_RETRIES = 3  # times a 429, a 503 or a failed connection is tried again
DEFAULT_MAX_RETRY_WAIT = 10.0  # seconds: a longer Retry-After is raised at once
DEFAULT_BACKOFF = 0.25  # seconds before the first retry when no Retry-After is given
RETRY_STATUSES = frozenset({429, 503})
READ_CHUNK = 1 << 16  # bytes per read of a raw stream
PROOF_WAIT_SECONDS = 10.0  # longest an audit waits for a head that covers a new result
PROOF_RETRY_SECONDS = 0.25
_KEPT_HEADERS = ("www-authenticate", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """The seconds a ``Retry-After`` value asks to wait (RFC 9110 §10.2.3): delay-seconds,
    or an HTTP-date less ``now`` (Unix time; a date past is 0). None when absent or
    malformed."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # asctime dates carry no zone: HTTP dates are UTC
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def error_from_response(status: int, body: object, headers: Mapping[str, str]) -> QuantumRNGError:
    """Return the error a server's error answer stands for."""
    code = message = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code, message = body["error"].get("code"), body["error"].get("message")
    cls = errors.error_class(status, code)
    if not isinstance(message, str):
        message = f"the server answered HTTP {status}"
    retry_after = parse_retry_after(headers.get("retry-after"), time.time())
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


# -- the operations, without I/O: what both clients send and how they read it -----------


@dataclass(frozen=True)
class Request:
    """One HTTP request of an operation, relative to the client's base URL.

    ``limit``: read a raw body of at most ``limit`` bytes (one byte more tells
    a too long answer). ``idempotent``: safe to send again (every GET, and
    ``POST /verify``, which only computes).
    """

    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    limit: int | None = None
    idempotent: bool = True


@dataclass(frozen=True)
class Reply:
    """What the server answered: status, headers (case-insensitive lookups) and body."""

    status: int
    headers: Mapping[str, str]
    content: builtins.bytes
    path: str


@dataclass(frozen=True)
class Failure:
    """A request that got no answer; ``sent``: it may have reached the server."""

    message: str
    sent: bool


@dataclass(frozen=True)
class Sleep:
    """A pause an operation asks its driver for (a retry's wait, an audit's poll)."""

    seconds: float


#: An operation: yields requests and sleeps, is sent each request's outcome, returns T.
Op = Generator[Request | Sleep, Reply | Failure | None, T]


@dataclass(frozen=True)
class RetryPolicy:
    """When to send a request again, the same for both clients.

    A 429 or 503, or a connection that could not be made, is retried at most
    ``retries`` times. The wait is the answer's ``Retry-After`` (up to 10%
    more, never less, so clients told the same second do not return together);
    without one it is ``backoff * 2**attempt``, of which a random half is
    jitter. A wait above ``max_retry_wait`` is never slept: the error is raised
    at once (a daily quota's reset can be hours away).
    """

    retries: int = DEFAULT_RETRIES
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    backoff: float = DEFAULT_BACKOFF

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError("retries must be a non-negative integer")
        if not (math.isfinite(self.max_retry_wait) and self.max_retry_wait >= 0):
            raise ValueError("max_retry_wait must be a non-negative number of seconds")
        if not (math.isfinite(self.backoff) and self.backoff >= 0):
            raise ValueError("backoff must be a non-negative number of seconds")

    def delay(
        self, attempt: int, outcome: Reply | Failure, *, now: float, jitter: float
    ) -> float | None:
        """Seconds to wait before retry number ``attempt + 1`` after ``outcome``, or None
        to give up; ``now`` is Unix time (for an HTTP-date), ``jitter`` in [0, 1)."""
        if attempt >= self.retries:
            return None
        if isinstance(outcome, Failure):
            if outcome.sent:
                return None
            asked = None
        elif outcome.status in RETRY_STATUSES:
            asked = parse_retry_after(outcome.headers.get("retry-after"), now)
        else:
            return None
        if asked is None:
            step = self.backoff * 2.0**attempt
            wait = step / 2 + step / 2 * jitter
            return min(wait, self.max_retry_wait)
        if asked > self.max_retry_wait:
            return None
        return min(asked * (1.0 + 0.1 * jitter), self.max_retry_wait)


def _exchange(client: _Base, request: Request) -> Op[Reply]:
    """Send ``request`` until it is answered or :attr:`_Base.retry` gives up; return the
    last answer (an error answer included). Raises ``Unavailable`` when none came."""
    attempt = 0
    while True:
        outcome = yield request
        assert outcome is not None
        wait = (
            client.retry.delay(attempt, outcome, now=time.time(), jitter=random.random())
            if request.idempotent
            else None
        )
        if wait is None:
            if isinstance(outcome, Failure):
                raise Unavailable(outcome.message)
            return outcome
        attempt += 1
        yield Sleep(wait)


def _get(client: _Base, path: str, params: Mapping[str, Any] | None = None) -> Op[Any]:
    return _json((yield from _exchange(client, Request("GET", path, _query(params)))))


def _data(client: _Base, path: str, params: Mapping[str, Any], signed: bool = False) -> Op[Any]:
    body = yield from _get(client, path, {**params, "signed": "true"} if signed else params)
    if not isinstance(body, dict) or "data" not in body:
        _malformed(path)
    source = body.get("source")
    client.last_source = source if isinstance(source, dict) else None
    client.last_signed = None
    if signed:
        block = body.get("signed")
        result = block.get("result") if isinstance(block, dict) else None
        if (
            not isinstance(result, dict)
            or result.get("data") != body["data"]
            or result.get("provenance") != source
        ):
            _malformed(path)
        client.last_signed = block
    return body["data"]


def _bytes(client: _Base, n: int, mode: str = "drbg") -> Op[builtins.bytes]:
    """Return ``n`` random bytes, read as a raw stream."""
    _count(n, 0)
    if n == 0:
        return b""
    path = "/api/v2/bytes"
    params = _query({"n": n, "format": "raw", "mode": mode})
    reply = yield from _exchange(client, Request("GET", path, params, limit=n))
    if reply.status != 200:
        _json(reply)
        _malformed(path)
    if len(reply.content) != n:
        _malformed(path)
    client.last_source = None
    return reply.content


def _signed_bytes(
    client: _Base, n: int, mode: str = "drbg"
) -> Op[tuple[builtins.bytes, dict[str, Any]]]:
    """Return ``n`` random bytes and the ``signed`` object that covers them.

    The bytes come base64 in a signed JSON answer; they are returned only
    if they are exactly what the signed result holds. Check the signature
    with :func:`verify` against a pinned key before trusting them.
    """
    _count(n)
    params = {"n": n, "format": "base64", "mode": mode}
    data = yield from _data(client, "/api/v2/bytes", params, signed=True)
    try:
        raw = base64.b64decode(data, validate=True) if isinstance(data, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != n or client.last_signed is None:
        _malformed("/api/v2/bytes")
    return raw, client.last_signed


def _bits(client: _Base, n: int, mode: str = "drbg", *, signed: bool = False) -> Op[str]:
    """Return ``n`` random bits as a string of ``0`` and ``1``."""
    _count(n)
    params = {"n": n, "format": "string", "mode": mode}
    data = yield from _data(client, "/api/v2/bits", params, signed)
    if not isinstance(data, str) or len(data) != n or data.strip("01"):
        _malformed("/api/v2/bits")
    return data


def _integers(
    client: _Base, n: int, min: int, max: int, mode: str = "drbg", *, signed: bool = False
) -> Op[list[int]]:
    """Return ``n`` uniform integers in [min, max], any size of bound.

    With ``signed`` the answer's ``signed`` object is in ``last_signed``
    (the same holds for every method but ``bytes``).
    """
    _count(n)
    params = {"n": n, "min": min, "max": max, "mode": mode}
    data = yield from _data(client, "/api/v2/integers", params, signed)
    values = _ints(data, n, "/api/v2/integers")
    if any(not min <= v <= max for v in values):
        _malformed("/api/v2/integers")
    return values


def _floats(client: _Base, n: int, mode: str = "drbg", *, signed: bool = False) -> Op[list[float]]:
    """Return ``n`` uniform floats in [0, 1)."""
    _count(n)
    data = yield from _data(client, "/api/v2/floats", {"n": n, "mode": mode}, signed)
    values = _float_list(data, n, "/api/v2/floats")
    if any(not 0.0 <= v < 1.0 for v in values):
        _malformed("/api/v2/floats")
    return values


def _gaussians(
    client: _Base,
    n: int,
    mean: float = 0.0,
    stddev: float = 1.0,
    mode: str = "drbg",
    *,
    signed: bool = False,
) -> Op[list[float]]:
    """Return ``n`` normally distributed floats."""
    _count(n)
    params = {"n": n, "mean": mean, "stddev": stddev, "mode": mode}
    data = yield from _data(client, "/api/v2/gaussians", params, signed)
    return _float_list(data, n, "/api/v2/gaussians")


def _uuids(
    client: _Base, n: int, mode: str = "drbg", *, signed: bool = False
) -> Op[list[uuid.UUID]]:
    """Return ``n`` random version 4 UUIDs."""
    _count(n)
    data = yield from _data(client, "/api/v2/uuids", {"n": n, "mode": mode}, signed)
    if not isinstance(data, list) or len(data) != n:
        _malformed("/api/v2/uuids")
    try:
        values = [uuid.UUID(str(v)) for v in data]
    except ValueError:
        _malformed("/api/v2/uuids")
    if any(v.version != 4 for v in values):
        _malformed("/api/v2/uuids")
    return values


def _strings(
    client: _Base,
    n: int,
    length: int = 16,
    alphabet: str = "alnum",
    mode: str = "drbg",
    *,
    signed: bool = False,
) -> Op[list[str]]:
    """Return ``n`` random strings of ``length`` characters over ``alphabet``.

    ``alphabet`` is a named alphabet of the server (``alnum``, ``hex``, ...)
    or the characters themselves.
    """
    _count(n)
    params = {"n": n, "length": length, "alphabet": alphabet, "mode": mode}
    data = yield from _data(client, "/api/v2/strings", params, signed)
    if (
        not isinstance(data, list)
        or len(data) != n
        or not all(isinstance(s, str) and len(s) == length for s in data)
    ):
        _malformed("/api/v2/strings")
    return data


def _shuffle(
    client: _Base, min: int, max: int, mode: str = "drbg", *, signed: bool = False
) -> Op[list[int]]:
    """Return every integer of [min, max] once, in random order."""
    params = {"min": min, "max": max, "mode": mode}
    data = yield from _data(client, "/api/v2/shuffle", params, signed)
    values = _ints(data, max - min + 1, "/api/v2/shuffle")
    if sorted(values) != list(range(min, max + 1)):
        _malformed("/api/v2/shuffle")
    return values


def _status(client: _Base) -> Op[dict[str, Any]]:
    """Return the server's status: pool levels, harvests, reseeds (no secret)."""
    return _mapping((yield from _get(client, "/api/v2/status")), "/api/v2/status")


def _usage(client: _Base) -> Op[dict[str, Any]]:
    """Return this client's limits and what is left today (None: unlimited)."""
    return _mapping((yield from _get(client, "/api/v2/usage")), "/api/v2/usage")


def _public_keys(client: _Base) -> Op[list[PublicKey]]:
    """The service's public keys with their periods (``GET /api/v2/keys/public``).

    Fetched from the service itself: pin them (save them once, pass them to
    :func:`verify` and ``audit``) rather than trust each fetch.
    """
    path = "/api/v2/keys/public"
    body = yield from _get(client, path)
    try:
        return load_public_keys(_mapping(body, path))
    except ValueError:
        _malformed(path)


def _result(client: _Base, serial: int) -> Op[dict[str, Any]]:
    """The stored signed result ``serial``: ``{"signed", "log_index"}``."""
    path = f"/api/v2/results/{int(serial)}"
    return _mapping((yield from _get(client, path)), path)


def _verify_remote(client: _Base, answer_or_signed: object) -> Op[dict[str, Any]]:
    """The service's own verdict (``POST /api/v2/verify``); :func:`verify` needs no
    network."""
    path = "/api/v2/verify"
    reply = yield from _exchange(client, Request("POST", path, json=answer_or_signed))
    return _mapping(_json(reply), path)


def _log_head(client: _Base) -> Op[dict[str, Any]]:
    """The log's latest signed tree head (unverified: see :func:`audit_log`)."""
    return _mapping((yield from _get(client, "/api/v2/log/head")), "/api/v2/log/head")


def _inclusion_proof(
    client: _Base, serial: int, tree_size: int | None = None
) -> Op[dict[str, Any]]:
    """The RFC 9162 inclusion proof of result ``serial`` (in ``tree_size``)."""
    path = f"/api/v2/log/proof/{int(serial)}"
    params = None if tree_size is None else {"tree_size": tree_size}
    return _mapping((yield from _get(client, path, params)), path)


def _consistency_proof(client: _Base, first: int, second: int) -> Op[dict[str, Any]]:
    """The RFC 9162 consistency proof between tree sizes ``first`` and ``second``."""
    path = "/api/v2/log/consistency"
    return _mapping((yield from _get(client, path, {"first": first, "second": second})), path)


def _audit(
    client: _Base,
    results: Iterable[object] = (),
    *,
    previous: Mapping[str, Any] | None = None,
    public_keys: object = None,
    wait: float = PROOF_WAIT_SECONDS,
) -> Op[Audit]:
    """Fetch the log's head and the proofs, then :func:`audit_log` them: each of
    ``results`` (signed answers or objects) signed and in the log, the log
    consistent with ``previous`` (a head this client verified before).

    ``public_keys`` default to ``public_keys()`` (better pinned). A result
    newer than the latest head is waited for, ``wait`` seconds at most.
    """
    if public_keys is not None:
        keys = load_public_keys(public_keys)
    else:
        keys = yield from _public_keys(client)
    signed = [signed_of(r) for r in results]
    deadline = time.monotonic() + wait
    while True:
        head = yield from _log_head(client)
        try:
            if signed and _size(head) == 0:
                raise NotFound("the log has no signed head over results yet")
            proofs = []
            for s in signed:
                proofs.append((yield from _inclusion_proof(client, _serial(s), _size(head))))
            break
        except NotFound:
            if time.monotonic() >= deadline:
                raise
            yield Sleep(PROOF_RETRY_SECONDS)
    consistency = None
    if previous is not None and 0 < _size(previous) < _size(head):
        consistency = yield from _consistency_proof(client, _size(previous), _size(head))
    return audit_log(
        head,
        keys,
        results=zip(signed, proofs, strict=True),
        previous=previous,
        consistency=consistency,
    )


# -- the two clients: the same operations, sent blocking or awaited ----------------------


def _method_signature(op: Callable[..., Any]) -> inspect.Signature:
    sig = inspect.signature(op)
    params = list(sig.parameters.values())
    return sig.replace(
        parameters=[params[0].replace(name="self"), *params[1:]],
        return_annotation=inspect.Signature.empty,
    )


def _named(method: Callable[..., Any], op: Callable[..., Any], owner: str) -> None:
    name = op.__name__.removeprefix("_")
    method.__name__ = name
    method.__qualname__ = f"{owner}.{name}"
    method.__doc__ = op.__doc__
    method.__module__ = op.__module__
    method.__signature__ = _method_signature(op)  # type: ignore[attr-defined]


def _blocking(op: Callable[Concatenate[_Base, P], Op[T]]) -> Callable[Concatenate[Client, P], T]:
    """``Client``'s method running ``op``."""

    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(op(self, *args, **kwargs))

    _named(method, op, "Client")
    return method


def _awaiting(
    op: Callable[Concatenate[_Base, P], Op[T]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    """``AsyncClient``'s coroutine method running ``op``."""

    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(op(self, *args, **kwargs))

    _named(method, op, "AsyncClient")
    return method


def _failure(exc: Exception, url: str) -> Failure:
    """The :class:`Failure` an httpx transport error stands for."""
    import httpx

    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return Failure(f"cannot reach {url}: {type(exc).__name__}", sent=False)
    if isinstance(exc, httpx.TimeoutException):
        return Failure(f"{url} did not answer in time", sent=True)
    return Failure(f"cannot reach {url}: {type(exc).__name__}", sent=True)


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise errors.ConfigError(
            "the QuantumRNG client needs httpx: pip install 'quantumrng[client]'"
        ) from None
    return httpx


class _Base:
    """What both clients hold: the server, the key, the retry policy, the last answer's
    provenance and signed object."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float,
        verify: bool | str | ssl.SSLContext,
        retries: int,
        max_retry_wait: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get("QRNG_API_KEY")
        self._timeout = timeout
        self._verify = _tls(verify)
        self.retry = RetryPolicy(retries, max_retry_wait)
        self.last_source: dict[str, Any] | None = None
        self.last_signed: dict[str, Any] | None = None

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"{type(self).__name__}({self.base_url!r}, api_key={key})"

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "quantumrng-client"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers


class Client(_Base):
    """Random numbers from a QuantumRNG server over HTTP(S).

    ``verify`` is True (system CAs), False, a CA bundle path or an
    ``ssl.SSLContext``. ``retries`` and ``max_retry_wait`` set the
    :class:`RetryPolicy` (default: 3 retries, no wait above 10 s), as for
    :class:`AsyncClient`: a program drawing through :class:`RemoteRandom` rides out
    a moment's rate limit or an empty pool instead of failing mid-draw, and the
    wait stays bounded; ``retries=0`` raises at the first refusal.

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
        retries: int = DEFAULT_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
    ) -> None:
        super().__init__(base_url, api_key, timeout, verify, retries, max_retry_wait)
        self._transport = transport
        self._lock = threading.Lock()
        self._http_client: httpx.Client | None = None
        self._pid = 0

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
                httpx = _import_httpx()
                # a client inherited through fork shares sockets with the parent:
                # abandon it without closing them
                self._http_client = httpx.Client(
                    base_url=self.base_url,
                    headers=self._headers(),
                    timeout=self._timeout,
                    verify=self._verify,
                    transport=self._transport,
                )
                self._pid = pid
            assert self._http_client is not None
            return self._http_client

    def _run(self, op: Op[T]) -> T:
        """Drive ``op``: send its requests, sleep its sleeps, return its value."""
        outcome: Reply | Failure | None = None
        try:
            while True:
                step = op.send(outcome)
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    outcome = None
                else:
                    outcome = self._send(step)
        except StopIteration as stop:
            value: T = stop.value
            return value

    def _send(self, request: Request) -> Reply | Failure:
        import httpx

        http = self._http
        try:
            if request.limit is None:
                r = http.request(
                    request.method, request.path, params=request.params, json=request.json
                )
                return Reply(r.status_code, r.headers, r.content, request.path)
            with http.stream(request.method, request.path, params=request.params) as r:
                if r.status_code != 200:
                    return Reply(r.status_code, r.headers, r.read(), request.path)
                out = bytearray()
                for piece in r.iter_bytes(READ_CHUNK):
                    out += piece
                    if len(out) > request.limit:
                        break
                return _raw_reply(r.status_code, r.headers, out, request.path)
        except httpx.HTTPError as exc:
            return _failure(exc, self.base_url + request.path)

    bytes = _blocking(_bytes)
    signed_bytes = _blocking(_signed_bytes)
    bits = _blocking(_bits)
    integers = _blocking(_integers)
    floats = _blocking(_floats)
    gaussians = _blocking(_gaussians)
    uuids = _blocking(_uuids)
    strings = _blocking(_strings)
    shuffle = _blocking(_shuffle)
    status = _blocking(_status)
    usage = _blocking(_usage)
    public_keys = _blocking(_public_keys)
    result = _blocking(_result)
    verify_remote = _blocking(_verify_remote)
    log_head = _blocking(_log_head)
    inclusion_proof = _blocking(_inclusion_proof)
    consistency_proof = _blocking(_consistency_proof)
    audit = _blocking(_audit)


class AsyncClient(_Base):
    """:class:`Client`'s methods as coroutines, on one ``httpx.AsyncClient`` (its
    connections reused across calls and concurrent tasks). Use ``async with`` or
    ``await aclose()``.

    ``retries`` and ``max_retry_wait``: the :class:`RetryPolicy`, as for ``Client``.
    ``prefetch``: bytes that :meth:`read` keeps fetched ahead (0: none). A refill
    of ``prefetch`` bytes (mode ``prefetch_mode``) starts as a background task
    when fewer than half are left; bytes are zeroed in the buffer as they are
    read (the answer's immutable copy is only freed: docs/ARCHITECTURE.md,
    "Secrets in memory"); a refill that failed raises from the next :meth:`read`,
    never replaced by anything; :meth:`aclose` cancels a refill and zeroes the rest.

    ``last_source`` and ``last_signed`` are the latest answer's: with concurrent
    calls, use ``signed_bytes`` or one client per task to tie them to a call.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        verify: bool | str | ssl.SSLContext = True,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = DEFAULT_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        prefetch: int = 0,
        prefetch_mode: str = "drbg",
    ) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError("prefetch must be a non-negative number of bytes")
        super().__init__(base_url, api_key, timeout, verify, retries, max_retry_wait)
        self._transport = transport
        self._http_client: httpx.AsyncClient | None = None
        self._closed = False
        self._prefetch = prefetch
        self._prefetch_mode = prefetch_mode
        self._buffers: collections.deque[ZeroingBuffer] = collections.deque()
        self._level = 0
        self._refill_task: asyncio.Task[None] | None = None
        self._refill_error: BaseException | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop a refill, zero the prefetched bytes and close the connections."""
        self._closed = True
        task, self._refill_task = self._refill_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wipe()
        if self._http_client is not None:
            await self._http_client.aclose()
            self._http_client = None

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._http_client is None:
            httpx = _import_httpx()
            self._http_client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers(),
                timeout=self._timeout,
                verify=self._verify,
                transport=self._transport,
            )
        return self._http_client

    async def _run(self, op: Op[T]) -> T:
        """Drive ``op``: send its requests, sleep its sleeps, return its value."""
        outcome: Reply | Failure | None = None
        try:
            while True:
                step = op.send(outcome)
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    outcome = None
                else:
                    outcome = await self._send(step)
        except StopIteration as stop:
            value: T = stop.value
            return value

    async def _send(self, request: Request) -> Reply | Failure:
        import httpx

        http = self._http
        try:
            if request.limit is None:
                r = await http.request(
                    request.method, request.path, params=request.params, json=request.json
                )
                return Reply(r.status_code, r.headers, r.content, request.path)
            async with http.stream(request.method, request.path, params=request.params) as r:
                if r.status_code != 200:
                    return Reply(r.status_code, r.headers, await r.aread(), request.path)
                out = bytearray()
                async for piece in r.aiter_bytes(READ_CHUNK):
                    out += piece
                    if len(out) > request.limit:
                        break
                return _raw_reply(r.status_code, r.headers, out, request.path)
        except httpx.HTTPError as exc:
            return _failure(exc, self.base_url + request.path)

    bytes = _awaiting(_bytes)
    signed_bytes = _awaiting(_signed_bytes)
    bits = _awaiting(_bits)
    integers = _awaiting(_integers)
    floats = _awaiting(_floats)
    gaussians = _awaiting(_gaussians)
    uuids = _awaiting(_uuids)
    strings = _awaiting(_strings)
    shuffle = _awaiting(_shuffle)
    status = _awaiting(_status)
    usage = _awaiting(_usage)
    public_keys = _awaiting(_public_keys)
    result = _awaiting(_result)
    verify_remote = _awaiting(_verify_remote)
    log_head = _awaiting(_log_head)
    inclusion_proof = _awaiting(_inclusion_proof)
    consistency_proof = _awaiting(_consistency_proof)
    audit = _awaiting(_audit)

    # -- prefetched bytes -------------------------------------------------------------

    @property
    def prefetched(self) -> int:
        """Bytes fetched ahead and not yet read."""
        return self._level

    async def read(self, n: int) -> builtins.bytes:
        """Return ``n`` random bytes: from the prefetch buffer, each used once, or
        with ``prefetch=0`` (or ``n`` above it) from a request of their own."""
        _count(n, 0)
        if self._closed:
            raise RuntimeError("the client is closed")
        self._raise_refill_error()
        if n == 0:
            return b""
        if n > self._prefetch:
            return await self.bytes(n, self._prefetch_mode)
        while self._level < n:
            await asyncio.wait([self._refilling()])  # a cancelled reader leaves it running
            self._raise_refill_error()
            if self._closed:
                raise RuntimeError("the client is closed")
        out = self._take(n)
        if self._level * 2 < self._prefetch:
            self._refilling()
        if self._refill_task is not None and not self._refill_task.done():
            await asyncio.sleep(0)  # a read served from the buffer lets the refill go on
        return out

    def _raise_refill_error(self) -> None:
        error, self._refill_error = self._refill_error, None
        if error is not None:
            raise error

    def _refilling(self) -> asyncio.Task[None]:
        """The running refill, else a new one."""
        if self._refill_task is None or self._refill_task.done():
            self._refill_task = asyncio.create_task(self._refill())
        return self._refill_task

    async def _refill(self) -> None:
        try:
            data = await self._run(_bytes(self, self._prefetch, self._prefetch_mode))
        except Exception as exc:  # surfaces on the next read
            self._refill_error = exc
            return
        buf = ZeroingBuffer()
        buf.load(data)
        self._buffers.append(buf)
        self._level += len(data)

    def _take(self, n: int) -> builtins.bytes:
        parts = []
        while n:
            buf = self._buffers[0]
            piece = buf.take(n)
            parts.append(piece)
            n -= len(piece)
            self._level -= len(piece)
            if not buf.left:
                self._buffers.popleft()
        return b"".join(parts)

    def _wipe(self) -> None:
        for buf in self._buffers:
            buf.clear()
        self._buffers.clear()
        self._level = 0


def _raw_reply(status: int, headers: Mapping[str, str], out: bytearray, path: str) -> Reply:
    """A raw body as bytes, the read buffer zeroed."""
    reply = Reply(status, headers, builtins.bytes(out), path)
    out[:] = builtins.bytes(len(out))
    return reply


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


def _json(reply: Reply) -> Any:
    try:
        body = json.loads(reply.content)
    except ValueError:
        body = None
    if reply.status >= 400:
        raise error_from_response(reply.status, body, reply.headers)
    if body is None:
        _malformed(reply.path)
    return body


def _count(n: int, minimum: int = 1) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise errors.InvalidRequest(f"n must be an integer of at least {minimum}")


def _ints(data: object, n: int, what: str) -> list[int]:
    """Integers as sent: JSON numbers, or decimal strings beyond 2^53."""
    if not isinstance(data, list) or len(data) != n:
        _malformed(what)
    out: list[int] = []
    for v in data:
        if isinstance(v, int) and not isinstance(v, bool):
            out.append(v)
        elif isinstance(v, str) and v.lstrip("-").isdigit() and v.isascii():
            out.append(int(v))
        else:
            _malformed(what)
    return out


def _float_list(data: object, n: int, what: str) -> list[float]:
    if not isinstance(data, list) or len(data) != n:
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
