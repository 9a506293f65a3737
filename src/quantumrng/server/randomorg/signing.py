"""RANDOM.ORG's Signed API (JSON-RPC Release 4, "Signed API"): the ``random`` object,
its signature, ``verifySignature`` and ``getResult``.

RANDOM.ORG signs the JSON of ``random`` with SHA-512 and RSA. This service signs
the RFC 8785 bytes of ``random`` (``signed.canonical``) with Ed25519 under its
current signing key (``signing.KeyRing``); ``signature`` is the base64 of the 64
bytes. ``verifySignature`` checks it against every key the deployment published
(``verifiable.PublishedKeys``), so tampering with any member of ``random`` makes it
false. Before it is signed the draw is appended to the transparency log (its
serial is ``serialNumber``, logged before it is sent), and the signed answer is
stored as the pool record ``randomorg:result:<serial>`` that every worker and node
reads for ``getResult``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
from anyio import to_thread
from cryptography.exceptions import InvalidSignature

from quantumrng.errors import QuantumRNGError, Unavailable
from quantumrng.server.service import Context
from quantumrng.server.verifiable import PublishedKeys, json_safe
from quantumrng.signed import canonical, hash_api_key, parse_rfc3339
from quantumrng.transparency.log import SignRequest

__all__ = ["LICENSE", "Signer", "completion_time", "hashed_api_key"]

RESULT_RECORD = "randomorg:result:"
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
        logged = await node.log.sign(
            SignRequest(
                method=f"randomorg.{method}",
                parameters=json_safe({**echo, **extra}),
                data=json_safe(data),
                provenance=source,
                hashed_api_key=hash_api_key(api_key),
            )
        )
        finished = parse_rfc3339(logged.signed["result"]["completion_time"])
        random = {
            "method": method,
            "hashedApiKey": hashed_api_key(api_key),
            **echo,
            "data": data,
            "license": LICENSE,
            "licenseData": None,
            "userData": extra.get("userData"),
            "ticketData": extra.get("ticketData"),
            "completionTime": completion_time(finished),
            "serialNumber": logged.serial,
        }
        key = node.signing_keys.current
        signature = base64.b64encode(key.sign(canonical(random))).decode("ascii")
        document = orjson.dumps({"random": random, "signature": signature})
        await to_thread.run_sync(
            node.pool.write_record, f"{RESULT_RECORD}{logged.serial}", document
        )
        return random, signature

    async def stored(self, serial: int) -> dict[str, Any] | None:
        """``{"random", "signature"}`` of a signed answer by its serial, or None."""
        try:
            raw = await to_thread.run_sync(
                self._ctx.node.pool.read_record, f"{RESULT_RECORD}{serial}"
            )
        except QuantumRNGError:
            raise Unavailable("the result store is unavailable") from None
        if raw is None:
            return None
        document: dict[str, Any] = orjson.loads(raw)
        return document

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
