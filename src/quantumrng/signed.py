"""Signed results: what is signed, how it is encoded, and how anyone checks it offline.

A signed answer carries ``signed = {"result": {...}, "signature": ..., "algorithm":
"Ed25519"}``. The signature is Ed25519 (RFC 8032) over exactly the RFC 8785
(JSON Canonicalization Scheme) bytes of ``result``; those bytes are also the
result's leaf in the transparency log. ``result`` holds :data:`RESULT_FIELDS`
and nothing else:

- ``method``, ``parameters``: the route and the arguments it was asked with;
- ``data``: the value answered, as in the unsigned answer;
- ``provenance``: the answer's ``source`` (the entropy behind it);
- ``completion_time``: RFC 3339 UTC, microseconds;
- ``serial``: global, gap-free from 1; ``key_serial``: gap-free from 1 per API key,
  so a client holding serials 1..n of its key sees that none was drawn and withheld;
- ``hashed_api_key``: lowercase hex SHA-256 of the API key ("" without a key);
- ``key_id``: the signing key's RFC 7638 JWK thumbprint.

This module is pure (``cryptography``, ``rfc8785`` and ``orjson`` only) so that the
client and ``qrng verify`` check a result with nothing but the service's public key.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "ALGORITHM",
    "RESULT_FIELDS",
    "PublicKey",
    "Verification",
    "b64url",
    "canonical",
    "hash_api_key",
    "key_id",
    "parse_rfc3339",
    "rfc3339",
    "verify_signed",
]

ALGORITHM = "Ed25519"
RESULT_FIELDS = frozenset(
    {
        "method",
        "parameters",
        "data",
        "provenance",
        "completion_time",
        "serial",
        "key_serial",
        "hashed_api_key",
        "key_id",
    }
)
SIGNATURE_BYTES = 64


_FAST = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_BMP_END = "\uffff"


class _Outside(Exception):
    """A value outside what :func:`_fast` is proven equal to ``rfc8785`` on."""


def _jcs_float(number: float) -> orjson.Fragment:
    """RFC 8785 §3.2.2.3 (ECMAScript Number::toString) of a finite float whose
    shortest round-trip form has no exponent (1e-4 <= |x| < 1e16): Python's
    ``repr`` digits without a trailing ".0", "0" for ±0, as ``rfc8785`` writes it."""
    if number == 0:
        return orjson.Fragment(b"0")
    text = repr(number)
    if "e" in text or "n" in text:  # exponent form, inf, nan: rfc8785 decides
        raise _Outside
    return orjson.Fragment((text[:-2] if text.endswith(".0") else text).encode())


def _fast_ready(value: Any) -> Any:
    """``value`` for ``orjson`` with floats as their JCS text, or :class:`_Outside`.

    In: dict (str keys without characters beyond U+FFFF, whose UTF-16 order is
    then their code point order, as ``OPT_SORT_KEYS`` sorts them), list, tuple,
    exact str, int, bool, None, float. Containers without floats are returned
    as they are (no copy).
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return _jcs_float(value)
    if kind is dict:
        copy: dict[str, Any] | None = None
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) > _BMP_END):
                raise _Outside
            ready = _fast_ready(item)
            if ready is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = ready
        return value if copy is None else copy
    if kind is list or kind is tuple:
        items: list[Any] | None = None
        for i, item in enumerate(value):
            ready = _fast_ready(item)
            if ready is not item:
                if items is None:
                    items = list(value)
                items[i] = ready
        return value if items is None else items
    raise _Outside


def canonical(value: Any) -> bytes:
    """The RFC 8785 canonical bytes of a JSON value.

    Values of plain JSON types are written by ``orjson`` (sorted keys, 53-bit
    integers; its string escapes are JCS's, §3.2.2.2) with floats spliced in
    as ``rfc8785`` writes them; anything else (big integers, exponent-form
    floats, subclasses, keys beyond the BMP, lone surrogates) goes to
    ``rfc8785`` itself, so the bytes are always that package's.
    Raises ``ValueError`` for what JCS cannot encode (integers beyond ±(2^53-1),
    NaN, infinities).
    """
    try:
        return orjson.dumps(_fast_ready(value), option=_FAST)
    except (_Outside, orjson.JSONEncodeError, RecursionError):
        pass
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"not canonicalizable: {exc}") from None


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2), as JWKs write keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rfc3339(timestamp: float) -> str:
    """``timestamp`` (Unix seconds) as RFC 3339 UTC with microseconds."""
    when = datetime.fromtimestamp(timestamp, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> float:
    """Unix seconds of an RFC 3339 time; ``ValueError`` if it is not one with a zone."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("an RFC 3339 time needs a zone")
    return when.timestamp()


def hash_api_key(api_key: str | None) -> str:
    """``hashed_api_key``: lowercase hex SHA-256 of the key, "" without one."""
    return "" if not api_key else hashlib.sha256(api_key.encode()).hexdigest()


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """The key's RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    members = {"crv": "Ed25519", "kty": "OKP", "x": b64url(_raw(public))}
    return b64url(hashlib.sha256(canonical(members)).digest())


@dataclass(frozen=True)
class PublicKey:
    """A service public key and the period it signed in (``not_after`` None: current)."""

    key: Ed25519PublicKey
    not_before: float
    not_after: float | None = None

    @functools.cached_property
    def key_id(self) -> str:
        """RFC 7638 thumbprint (computed once: every signed result names it)."""
        return key_id(self.key)

    def valid_at(self, timestamp: float) -> bool:
        """True when the key signed at ``timestamp``."""
        return self.not_before <= timestamp and (
            self.not_after is None or timestamp <= self.not_after
        )

    def jwk(self) -> dict[str, str]:
        """The key as an RFC 8037 JWK."""
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(_raw(self.key)),
            "kid": self.key_id,
            "use": "sig",
            "alg": "EdDSA",
        }

    def pem(self) -> str:
        """The key as a PEM SubjectPublicKeyInfo."""
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def to_json(self) -> dict[str, Any]:
        """What ``GET /api/v2/keys/public`` lists for this key."""
        return {
            "key_id": self.key_id,
            "algorithm": ALGORITHM,
            "not_before": rfc3339(self.not_before),
            "not_after": None if self.not_after is None else rfc3339(self.not_after),
            "pem": self.pem(),
            "jwk": self.jwk(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PublicKey:
        """Read :meth:`to_json` (its ``jwk`` or its ``pem``); ``ValueError`` otherwise."""
        try:
            jwk = data.get("jwk")
            if isinstance(jwk, Mapping):
                if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                    raise ValueError("not an Ed25519 JWK")
                key = Ed25519PublicKey.from_public_bytes(_b64url_decode(str(jwk["x"])))
            else:
                loaded = serialization.load_pem_public_key(str(data["pem"]).encode())
                if not isinstance(loaded, Ed25519PublicKey):
                    raise ValueError("not an Ed25519 public key")
                key = loaded
            not_after = data.get("not_after")
            return cls(
                key,
                parse_rfc3339(str(data["not_before"])),
                None if not_after is None else parse_rfc3339(str(not_after)),
            )
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"not a public key entry: {exc}") from None

    @classmethod
    def from_pem(cls, pem: bytes) -> PublicKey:
        """A bare PEM public key, valid at any time (for ``qrng verify --public-key``)."""
        loaded = serialization.load_pem_public_key(pem)
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return cls(loaded, -math.inf)


@dataclass(frozen=True)
class Verification:
    """The outcome of checking a signed result."""

    valid: bool
    reason: str  # "ok", or what failed
    key_id: str | None = None
    serial: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The body of ``POST /api/v2/verify``."""
        return {
            "valid": self.valid,
            "reason": self.reason,
            "key_id": self.key_id,
            "serial": self.serial,
        }


def verify_signed(signed: object, keys: Iterable[PublicKey]) -> Verification:
    """Check a ``signed`` object against the service's public ``keys``.

    Valid only when ``result`` has exactly :data:`RESULT_FIELDS`, names a
    known key that was current at ``completion_time``, and the signature
    verifies over the canonical bytes of ``result``. Never raises on bad input.
    """
    if not isinstance(signed, Mapping):
        return Verification(False, "signed must be an object")
    result = signed.get("result")
    if not isinstance(result, Mapping):
        return Verification(False, "signed.result must be an object")
    kid = result.get("key_id")
    serial = result.get("serial")
    kid = kid if isinstance(kid, str) else None
    serial = serial if isinstance(serial, int) and not isinstance(serial, bool) else None

    def refused(reason: str) -> Verification:
        return Verification(False, reason, kid, serial)

    if set(result) != RESULT_FIELDS:
        return refused("signed.result must hold exactly " + ", ".join(sorted(RESULT_FIELDS)))
    if signed.get("algorithm", ALGORITHM) != ALGORITHM:
        return refused(f"algorithm must be {ALGORITHM}")
    encoded = signed.get("signature")
    if not isinstance(encoded, str):
        return refused("signed.signature must be a base64 string")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII string
        return refused("signed.signature is not base64")
    if len(signature) != SIGNATURE_BYTES:
        return refused(f"signed.signature must be {SIGNATURE_BYTES} bytes")
    if serial is None or serial < 1:
        return refused("serial must be a positive integer")
    when = result.get("completion_time")
    try:
        completed = parse_rfc3339(when) if isinstance(when, str) else None
    except ValueError:
        completed = None
    if completed is None:
        return refused("completion_time must be an RFC 3339 time")
    key = next((k for k in keys if k.key_id == kid), None)
    if key is None:
        return refused("signed by an unknown key")
    if not key.valid_at(completed):
        return refused("the key was not current at completion_time")
    try:
        message = canonical(dict(result))
    except ValueError as exc:
        return refused(str(exc))
    try:
        key.key.verify(signature, message)
    except InvalidSignature:
        return refused("the signature does not match the result")
    return Verification(True, "ok", kid, serial)
