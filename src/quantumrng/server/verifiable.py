"""Signed answers over HTTP (API v2): signing, public keys, results, verification, the log.

- ``signed=true`` on a v2 randomness route: :func:`sign_answer` hands the
  answer to the node's transparency log (``TransparencyLog.sign``), which
  numbers it (global and per-key serials, gap-free), times it, signs its
  RFC 8785 bytes with the node's Ed25519 key and appends it; the answer gains
  ``signed`` and ``log_index``. A log that cannot sign is a 503 and the drawn
  value is never sent (its bytes go back to the quota).
- ``GET /keys/public``: this node's keys and every key the deployment's nodes
  published (sealed under the node key, so a store writer cannot add one),
  each with its period; briefly cacheable.
- ``GET /results/{serial}``: a stored signed result (RANDOM.ORG's ``getResult``),
  404 when unknown or pruned after ``result_retention_days``. A result drawn
  with an API key is that key's: only the same key (or an ``admin`` key) reads
  it, as RANDOM.ORG asks; one drawn without a key is anyone's. The reader needs
  the scope the result was drawn under (its ``mode``), so under required auth
  every read needs a key.
- ``POST /verify``: ``{"valid", "reason", "key_id", "serial"}`` for a signed
  object or a whole signed answer, checked offline against the keys above.
- ``GET /log/head``, ``/log/proof/{serial}``, ``/log/consistency``: the log's
  signed tree head and RFC 9162 proofs (hex), as the log computes them.

Public keys, verification and the log are public whatever ``require_auth``
says: an auditor holds no key, and none of them serves randomness.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from quantumrng.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuantumRNGError,
    Unavailable,
    ValidationError,
)
from quantumrng.server.access import presented_key
from quantumrng.server.params import Param, parse_path, parse_query
from quantumrng.server.responses import NO_STORE, json_response
from quantumrng.server.routing import Api, Endpoint
from quantumrng.server.service import Context
from quantumrng.signed import RESULT_FIELDS, PublicKey, hash_api_key, verify_signed
from quantumrng.transparency.log import SignRequest

if TYPE_CHECKING:
    from quantumrng.server.access import Admission
    from quantumrng.server.randomness import Signer

__all__ = [
    "KEYS_CACHE_SECONDS",
    "SIGNED_SCHEMA",
    "PublishedKeys",
    "api",
    "json_safe",
    "merge_keys",
    "sealed_name",
    "signed_envelope",
    "signer",
    "verify_limit",
]

log = logging.getLogger(__name__)

MAX_SAFE_INTEGER = 2**53 - 1  # beyond this an integer is signed as a decimal string
KEYS_CACHE_SECONDS = 5.0  # how long a node (and a cache) keeps the merged key list
IMMUTABLE = {"cache-control": "public, max-age=31536000, immutable"}
SEALED_KEY = "signing-key:"  # pool record of a published key, sealed under the node key
SIGNING_UNAVAILABLE = "the transparency log cannot sign now; nothing was served, try again"

SIGNED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Ed25519 over the RFC 8785 canonical bytes of `result`.",
    "required": ["result", "signature", "algorithm"],
    "properties": {
        "result": {
            "type": "object",
            "required": sorted(RESULT_FIELDS),
            "additionalProperties": False,
            "properties": {
                "method": {"type": "string"},
                "parameters": {"type": "object"},
                "data": {},
                "provenance": {"$ref": "#/components/schemas/Source"},
                "completion_time": {"type": "string", "format": "date-time"},
                "serial": {"type": "integer", "minimum": 1},
                "key_serial": {"type": "integer", "minimum": 1},
                "hashed_api_key": {"type": "string"},
                "key_id": {"type": "string"},
            },
        },
        "signature": {"type": "string", "contentEncoding": "base64"},
        "algorithm": {"type": "string", "enum": ["Ed25519"]},
    },
}
_HEX_LIST = {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}
_HEX = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_STORED_RESULT = {
    "type": "object",
    "required": ["signed", "log_index"],
    "properties": {"signed": SIGNED_SCHEMA, "log_index": {"type": "integer", "minimum": 0}},
}


def signed_envelope(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A v2 answer's schema with the ``signed`` and ``log_index`` of ``signed=true``."""
    properties = dict(schema.get("properties", {}))
    properties["signed"] = SIGNED_SCHEMA
    properties["log_index"] = {"type": "integer", "minimum": 0}
    return {**schema, "properties": properties}


def json_safe(value: Any) -> Any:
    """``value`` with every integer beyond ±(2^53-1) as a decimal string, as v2 writes
    its data, so that RFC 8785 (I-JSON numbers) can encode it."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _api_key_hash(request: Request, admission: Admission) -> str:
    """``hashed_api_key`` of the key the request was admitted with ("" for none).

    Only a verified key admits a request (``Admission.key``); its secret is
    the one the request presented, hashed here and never kept.
    """
    if admission.key is None:
        return hash_api_key(None)
    return hash_api_key(presented_key(request.scope.get("headers", ())))


def sealed_name(key: PublicKey) -> str:
    """The pool record that seals ``key``'s entry, named by the SHA-256 of the raw key
    in hex (record names are lower case; key ids are not)."""
    return SEALED_KEY + hashlib.sha256(key.key.public_bytes_raw()).hexdigest()


class PublishedKeys:
    """The public keys a signature may be checked against: this node's, published on
    first use, merged with every key the deployment's nodes published.

    Each node publishes its keys in the ledger store (``register_key``) and, sealed
    under the node key, as the pool record :func:`sealed_name`. The store is
    not trusted (docs/ARCHITECTURE.md): an entry of the store is listed only when
    its sealed record says the same, so a store writer can neither add a key nor
    change a key's period. The merged list is kept ``KEYS_CACHE_SECONDS`` unless
    this node's keys change (a rotation its ring followed): they are then
    published and listed at once.
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self._registered: tuple[tuple[str, float | None], ...] | None = None
        self._merged: list[PublicKey] = []
        self._until = 0.0

    @staticmethod
    def _marks(own: list[PublicKey]) -> tuple[tuple[str, float | None], ...]:
        return tuple((k.key_id, k.not_after) for k in own)

    def _own(self) -> list[PublicKey]:
        return list(self._ctx.node.signing_keys.public_keys)

    def _register(self, own: list[PublicKey]) -> None:
        marks = self._marks(own)
        if marks == self._registered:
            return
        node = self._ctx.node
        for key in own:
            document = json.dumps(key.to_json(), sort_keys=True).encode()
            node.pool.write_record(sealed_name(key), document)  # the seal first
            node.log_store.register_key(key.key_id, document)
        self._registered = marks

    def _sealed(self, document: bytes) -> PublicKey | None:
        """The key of a store entry whose sealed record matches it, else None (logged)."""
        try:
            entry = PublicKey.from_json(json.loads(document))
            sealed = self._ctx.node.pool.read_record(sealed_name(entry))
        except ValueError:
            log.warning("a published public key entry is unreadable; not listed")
            return None
        except Unavailable:
            log.warning("a published public key's seal does not verify; not listed")
            return None
        if sealed != document:
            log.warning("a published public key entry is not sealed as it reads; not listed")
            return None
        return entry

    def listed(self) -> list[PublicKey]:
        """The merged list (blocking: reads the stores when the cached one is old)."""
        with self._lock:
            now = time.monotonic()
            own = self._own()
            if now < self._until and self._marks(own) == self._registered:
                return self._merged
            self._register(own)
            published = [self._sealed(d) for d in self._ctx.node.log_store.public_keys()]
            self._merged = merge_keys([*own, *(k for k in published if k is not None)])
            self._until = now + KEYS_CACHE_SECONDS
            return self._merged

    @property
    def stale(self) -> bool:
        """True until this node's current keys are published."""
        return self._marks(self._own()) != self._registered

    def register(self) -> None:
        """Publish this node's keys now if they changed (blocking)."""
        with self._lock:
            self._register(self._own())


def merge_keys(keys: Iterable[PublicKey]) -> list[PublicKey]:
    """One entry per key id, in first-seen order; an ended period wins over an open
    one (a rotation only ever ends a period), the earliest start and end kept."""
    merged: dict[str, PublicKey] = {}
    for key in keys:
        seen = merged.get(key.key_id)
        if seen is None:
            merged[key.key_id] = key
            continue
        ends = [k.not_after for k in (seen, key) if k.not_after is not None]
        merged[key.key_id] = PublicKey(
            seen.key, min(seen.not_before, key.not_before), min(ends) if ends else None
        )
    return list(merged.values())


def signer(ctx: Context) -> Signer:
    """The ``signed=true`` step of ``ctx``'s randomness routes (``Shape.signer``): the
    answer's body with ``signed`` and ``log_index``, signed, numbered and appended by
    the node's transparency log. Raises ``Unavailable`` (503) when the log cannot sign."""
    published = PublishedKeys(ctx)

    async def sign_answer(
        request: Request,
        admission: Admission,
        method: str,
        parameters: dict[str, Any],
        body: dict[str, Any],
    ) -> dict[str, Any]:
        signing = SignRequest(
            method=method,
            parameters=json_safe(parameters),
            data=body["data"],
            provenance=body["source"],
            hashed_api_key=_api_key_hash(request, admission),
        )
        try:
            if published.stale:  # first use, or a rotation the ring followed
                await to_thread.run_sync(published.register)
            result = await ctx.node.log.sign(signing)
        except QuantumRNGError:
            raise
        except Exception as exc:  # a store's own error: fail closed, never serve it unsigned
            log.error("signing failed: %s", type(exc).__name__)
            raise Unavailable(SIGNING_UNAVAILABLE) from None
        return {**body, "signed": result.signed, "log_index": result.leaf_index}

    return sign_answer


# -- routes ----------------------------------------------------------------------------


def verify_limit(ctx: Context) -> int:
    """The largest body ``POST /verify`` reads: twice ``max_json_bytes``. Larger
    answers verify offline (``qrng verify``, the client)."""
    return 2 * ctx.settings.max_json_bytes


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body must be at most {limit} bytes; verify larger offline")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body must be at most {limit} bytes; verify larger offline")
    return bytes(body)


def _signed_of(document: object) -> object:
    """The signed object of a whole answer (``{"signed": ...}``), else the document."""
    if isinstance(document, Mapping) and "signed" in document and "result" not in document:
        return document["signed"]
    return document


def _log_call(call: Any, *args: Any) -> Any:
    """Run a read of the log: unknown serials and sizes are 404, bad ranges 422."""
    try:
        return call(*args)
    except QuantumRNGError:
        raise
    except (KeyError, LookupError) as exc:
        raise NotFound(_message(exc, "not in the log")) from None
    except ValueError as exc:
        raise ValidationError(_message(exc, "not a valid range of the log")) from None


def _message(exc: BaseException, fallback: str) -> str:
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
    return text or fallback


def api(ctx: Context) -> Api:
    """The family's routes, below ``/api/v2``."""
    access = ctx.access
    published = PublishedKeys(ctx)
    limit = verify_limit(ctx)
    serial_path = Param("serial", "int", "The result's global serial.", minimum=1, location="path")

    async def public_keys(request: Request) -> Response:
        parse_query(request.query_params, ())
        keys = await to_thread.run_sync(published.listed)
        headers = {"cache-control": f"public, max-age={int(KEYS_CACHE_SECONDS)}"}
        return json_response({"keys": [k.to_json() for k in keys]}, headers=headers)

    async def result(request: Request) -> Response:
        parse_query(request.query_params, ())
        serial: int = parse_path(request.path_params, (serial_path,))["serial"]
        stored = await to_thread.run_sync(_log_call, ctx.node.log.result, serial)
        if stored is None:
            raise NotFound(f"no stored result has serial {serial} (unknown or past retention)")
        signed = stored["signed"]["result"]
        mode = signed.get("parameters", {}).get("mode", "drbg")
        _, key = access.authorize(request, mode if mode in ("drbg", "raw") else "drbg")
        owner = signed.get("hashed_api_key", "")
        if owner and not (key is not None and key.allows("admin")):
            presented = presented_key(request.scope.get("headers", ()))
            if key is None or hash_api_key(presented) != owner:
                raise PermissionDenied("this result was drawn with another API key")
        return json_response(stored, headers=NO_STORE)

    async def verify(request: Request) -> Response:
        parse_query(request.query_params, ())
        raw = await _read_body(request, limit)
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidRequest(
                "the body must be JSON: a signed answer or its signed object"
            ) from None
        keys = await to_thread.run_sync(published.listed)
        outcome = verify_signed(_signed_of(document), keys)
        return json_response(outcome.to_json(), headers=NO_STORE)

    async def head(request: Request) -> Response:
        parse_query(request.query_params, ())
        body = await to_thread.run_sync(_log_call, ctx.node.log.head)
        return json_response(body, headers={"cache-control": "public, max-age=1"})

    tree_size = Param(
        "tree_size", "int", "The tree size to prove in (default: the current head's).", minimum=1
    )

    async def proof(request: Request) -> Response:
        size: int | None = parse_query(request.query_params, (tree_size,))["tree_size"]
        serial: int = parse_path(request.path_params, (serial_path,))["serial"]
        body = await to_thread.run_sync(_log_call, ctx.node.log.inclusion_proof, serial, size)
        headers = IMMUTABLE if size is not None else {"cache-control": "public, max-age=1"}
        return json_response(body, headers=headers)

    first = Param("first", "int", "The smaller tree size.", required=True, minimum=1)
    second = Param("second", "int", "The larger tree size.", required=True, minimum=1)

    async def consistency(request: Request) -> Response:
        args = parse_query(request.query_params, (first, second))
        if args["first"] > args["second"]:
            raise ValidationError("first must not exceed second")
        body = await to_thread.run_sync(
            _log_call, ctx.node.log.consistency_proof, args["first"], args["second"]
        )
        return json_response(body, headers=IMMUTABLE)

    obj = {"type": "object"}
    endpoints = (
        Endpoint(
            "/keys/public",
            public_keys,
            "v2_public_keys",
            "The service's Ed25519 public keys (PEM and JWK), current and past, with the "
            "periods they signed in.",
            "verifiable",
            content={
                "application/json": {
                    **obj,
                    "required": ["keys"],
                    "properties": {"keys": {"type": "array", "items": obj}},
                }
            },
            errors=(400, 503),
        ),
        Endpoint(
            "/results/{serial}",
            result,
            "v2_result",
            "A stored signed result by its serial (kept result_retention_days at least).",
            "verifiable",
            params=(serial_path,),
            content={"application/json": _STORED_RESULT},
            errors=(400, 401, 403, 404, 422, 503),
            description="A result drawn with an API key is read with the same key (or an "
            "admin key); one drawn without a key by anyone.",
            secured=True,
            key_required=access.auth_required,
        ),
        Endpoint(
            "/verify",
            verify,
            "v2_verify",
            "Check a signed answer (or its `signed` object) against the service's keys.",
            "verifiable",
            content={
                "application/json": {
                    **obj,
                    "required": ["valid", "reason", "key_id", "serial"],
                    "properties": {
                        "valid": {"type": "boolean"},
                        "reason": {"type": "string"},
                        "key_id": {"type": ["string", "null"]},
                        "serial": {"type": ["integer", "null"]},
                    },
                }
            },
            errors=(400, 413, 503),
            description=f"The body is at most {limit} bytes; larger answers verify offline.",
            methods=("POST",),
            head=False,
        ),
        Endpoint(
            "/log/head",
            head,
            "v2_log_head",
            "The transparency log's latest signed tree head (RFC 9162).",
            "verifiable",
            content={
                "application/json": {
                    **obj,
                    "required": ["tree_size", "root_hash", "timestamp", "key_id", "signature"],
                    "properties": {"tree_size": {"type": "integer"}, "root_hash": _HEX},
                }
            },
            errors=(404, 503),
        ),
        Endpoint(
            "/log/proof/{serial}",
            proof,
            "v2_log_proof",
            "RFC 9162 inclusion proof of a signed result in the log.",
            "verifiable",
            params=(tree_size, serial_path),
            content={
                "application/json": {
                    **obj,
                    "required": ["leaf_index", "tree_size", "leaf_hash", "audit_path"],
                    "properties": {"leaf_hash": _HEX, "audit_path": _HEX_LIST},
                }
            },
            errors=(400, 404, 422, 503),
        ),
        Endpoint(
            "/log/consistency",
            consistency,
            "v2_log_consistency",
            "RFC 9162 consistency proof between two tree sizes of the log.",
            "verifiable",
            params=(first, second),
            content={
                "application/json": {
                    **obj,
                    "required": ["first", "second", "proof"],
                    "properties": {"proof": _HEX_LIST},
                }
            },
            errors=(400, 404, 422, 503),
        ),
    )
    return Api("/api/v2", endpoints)
