"""RANDOM.ORG's Signed API (JSON-RPC Release 4, "Signed API"): the ``random`` object,
its signature, ``verifySignature`` and ``getResult``.

RANDOM.ORG signs the JSON of ``random`` with SHA-512 and RSA. This service signs
the RFC 8785 bytes of ``random`` (``signed.canonical``) with Ed25519 under its
current signing key (``signing.KeyRing``); ``signature`` is the base64 of the 64
bytes. ``verifySignature`` checks it against every key the deployment published
(``verifiable.PublishedKeys``), so tampering with any member of ``random`` makes it
false.

A draw is appended to the transparency log before it is answered (its serial is
``serialNumber``), with everything ``random`` holds: ``random`` is a pure function
of the logged result (:func:`random_object`), so ``getResult`` on any worker or node
rebuilds it from the ledger and signs it again. Ed25519 is deterministic: the
signature is the one first answered while the signing key is the same; after a
rotation it is a new signature by the new key, and both verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from anyio import to_thread
from cryptography.exceptions import InvalidSignature

from quantumrng.errors import QuantumRNGError, Unavailable
from quantumrng.server.service import Context
from quantumrng.server.verifiable import PublishedKeys, json_safe
from quantumrng.signed import canonical, hash_api_key, parse_rfc3339
from quantumrng.transparency.log import SignRequest

__all__ = ["LICENSE", "Signer", "completion_time", "hashed_api_key", "random_object"]

METHOD_PREFIX = "randomorg."  # the log's method of a RANDOM.ORG draw: prefix + RPC name
#: The members of ``random`` in RANDOM.ORG's order (each method has a subset).
FIELDS = (
    "method",
    "hashedApiKey",
    "n",
    "length",
    "min",
    "max",
    "replacement",
    "base",
    "decimalPlaces",
    "mean",
    "standardDeviation",
    "significantDigits",
    "characters",
    "size",
    "format",
    "pregeneratedRandomization",
    "data",
    "license",
    "licenseData",
    "userData",
    "ticketData",
    "completionTime",
    "serialNumber",
)
#: The ``license`` of every signed answer (RANDOM.ORG names the key's license type).
LICENSE: dict[str, Any] = {
    "type": "quantumrng",
    "text": "Random values drawn from this QuantumRNG service; signed with its Ed25519 key",
    "infoUrl": None,
}
MAX_USER_DATA_CHARS = 1_000  # userData, as JSON (RANDOM.ORG's limit)


def hashed_api_key(api_key: str) -> str:
    """``hashedApiKey``: base64 SHA-512 of the key, as RANDOM.ORG gives it."""
    return base64.b64encode(hashlib.sha512(api_key.encode()).digest()).decode("ascii")


def completion_time(timestamp: float) -> str:
    """``completionTime`` in RANDOM.ORG's form, ``YYYY-MM-DD HH:MM:SSZ`` (UTC)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def random_object(result: Mapping[str, Any]) -> dict[str, Any]:
    """RANDOM.ORG's ``random`` of a logged result (the ``result`` of its signed object)."""
    parameters = result["parameters"]
    members = {
        **parameters,
        "method": result["method"].removeprefix(METHOD_PREFIX),
        "data": result["data"],
        "license": LICENSE,
        "licenseData": None,
        "completionTime": completion_time(parse_rfc3339(result["completion_time"])),
        "serialNumber": result["serial"],
    }
    return {name: members[name] for name in FIELDS if name in members}


class Signer:
    """Signs, stores and verifies ``random`` objects over ``ctx``'s log, keys and pool."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._published = PublishedKeys(ctx)

    async def sign(
        self,
        method: str,
        echo: dict[str, Any],
        data: Any,
        source: dict[str, Any],
        api_key: str,
        extra: dict[str, Any],
    ) -> tuple[dict[str, Any], str]:
        """Log the draw, then build, sign and store its ``random``; return it and the
        signature. Raises ``Unavailable`` when the log or the store fails."""
        node = self._ctx.node
        if self._published.stale:
            await to_thread.run_sync(self._published.register)
        parameters = {**echo, **extra, "hashedApiKey": hashed_api_key(api_key)}
        logged = await node.log.sign(
            SignRequest(
                method=METHOD_PREFIX + method,
                parameters=json_safe(parameters),
                data=json_safe(data),
                provenance=source,
                hashed_api_key=hash_api_key(api_key),
            )
        )
        random = random_object(logged.signed["result"])
        return random, self._signature(random)

    def _signature(self, random: dict[str, Any]) -> str:
        key = self._ctx.node.signing_keys.current
        return base64.b64encode(key.sign(canonical(random))).decode("ascii")

    async def stored(self, serial: int) -> dict[str, Any] | None:
        """``{"random", "signature"}`` of a RANDOM.ORG draw by its serial, or None when
        the log has no such result (or it is past retention, or not a RANDOM.ORG draw)."""
        try:
            document = await to_thread.run_sync(self._ctx.node.log.result, serial)
        except QuantumRNGError:
            raise Unavailable("the result store is unavailable") from None
        if document is None:
            return None
        result = document["signed"]["result"]
        if not str(result.get("method", "")).startswith(METHOD_PREFIX):
            return None
        random = random_object(result)
        return {"random": random, "signature": self._signature(random)}

    async def verify(self, random: object, signature: object) -> bool:
        """True when ``signature`` is this deployment's over exactly ``random``."""
        if not isinstance(random, dict) or not isinstance(signature, str):
            return False
        try:
            raw = base64.b64decode(signature.encode("ascii"), validate=True)
            message = canonical(random)
        except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
            return False
        keys = await to_thread.run_sync(self._published.listed)
        for key in keys:
            try:
                key.key.verify(raw, message)
            except InvalidSignature:
                continue
            return True
        return False
