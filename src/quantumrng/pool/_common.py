"""Checks and encodings shared by the pool engines (internal).

Every engine applies the same rules, so the contract tests hold for all:

- a block is :data:`~quantumrng.conditioning.BLOCK_BYTES` long and credits
  between 0 and 8 bits per byte; its integrity tag is opaque bytes of at most
  :data:`MAX_TAG_BYTES`, stored and returned as they came;
- all blocks of one harvest id in a ``put`` carry the same provenance; the
  provenance first recorded for a harvest id is kept while any of its blocks
  remain in the pool;
- "newest" harvests (``recent``) are the most recently put ones;
- a lease's name is a record name, its holder 1 to :data:`MAX_HOLDER_CHARS`
  printable characters, its time positive and at most :data:`MAX_LEASE_SECONDS`;
  a lease is valid from its last grant or renewal until its expiry, so a clock
  set back before the grant ends it instead of stretching it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from quantumrng.block import BLOCK_BYTES, Block
from quantumrng.errors import LeaseLost, Unavailable
from quantumrng.pool.base import Lease, LeaseInfo
from quantumrng.provenance import Provenance

__all__ = [
    "LeaseState",
    "MAX_HARVEST_ID_BYTES",
    "MAX_HOLDER_CHARS",
    "MAX_LEASE_SECONDS",
    "MAX_TAG_BYTES",
    "check_holder",
    "check_lease",
    "check_limit",
    "check_record_name",
    "check_take",
    "dump_provenance",
    "group_harvests",
    "lease_lost",
    "lease_millis",
    "load_provenance",
]

MAX_HARVEST_ID_BYTES = 256  # UTF-8 bytes; the Redis entry header stores the length in 16 bits
MAX_TAG_BYTES = 64  # an integrity tag (nonce + HMAC-SHA256) is 48
MAX_RECORD_BYTES = 1 << 20  # one stored record (an assessment is a few KiB)
_RECORD_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.:-")
MAX_HOLDER_CHARS = 256  # <node name (64)>:<pid>:<random suffix>
MAX_LEASE_SECONDS = 86_400.0


def check_take(n: int, source: str | None) -> None:
    """Reject a take of fewer than one block, or from a kind no block can have."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("n must be an int")
    if n < 1:
        raise ValueError("n must be at least 1")
    if source is not None and (not isinstance(source, str) or not source):
        raise ValueError("source must be None or a non-empty string")


def check_record_name(name: str, value: bytes | None = None) -> None:
    """Reject a record name that is not 1 to 128 characters of ``[a-z0-9_.:-]``, or a
    value that is not bytes (at most :data:`MAX_RECORD_BYTES`)."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= 128
        or any(c not in _RECORD_NAME_CHARS for c in name)
    ):
        raise ValueError("a record name must be 1 to 128 characters of a-z, 0-9, _ . : -")
    if value is not None and (not isinstance(value, bytes) or len(value) > MAX_RECORD_BYTES):
        raise ValueError(f"a record value must be bytes, at most {MAX_RECORD_BYTES}")


def check_holder(holder: str) -> None:
    """Reject a holder name that is not 1 to :data:`MAX_HOLDER_CHARS` printable characters."""
    if not isinstance(holder, str) or not 0 < len(holder) <= MAX_HOLDER_CHARS:
        raise ValueError(f"a lease holder must be 1 to {MAX_HOLDER_CHARS} characters")
    if not holder.isprintable():
        raise ValueError("a lease holder must be printable")


def lease_millis(seconds: float) -> int:
    """A lease time in whole milliseconds (at least 1), after checking it."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError("lease seconds must be a number")
    if not 0 < seconds <= MAX_LEASE_SECONDS or math.isnan(seconds):
        raise ValueError(f"lease seconds must be in (0, {MAX_LEASE_SECONDS:g}]")
    return max(1, round(seconds * 1000))


def check_lease(lease: Lease) -> None:
    """Reject anything that is not a well-formed :class:`Lease`."""
    if not isinstance(lease, Lease):
        raise TypeError("a lease must be a Lease")
    check_record_name(lease.name)
    check_holder(lease.holder)
    token = lease.token
    if isinstance(token, bool) or not isinstance(token, int) or token < 1:
        raise ValueError("a lease token must be a positive int")


@dataclass(frozen=True, slots=True)
class LeaseState:
    """A lease as the Python engines keep it, and the one rule of who holds it (the Redis
    engine's scripts follow the same rule on the server's clock).

    ``token`` is the last token granted, kept when the lease is released or
    expires, so tokens only grow; ``holder`` is "" when nobody holds it;
    ``granted`` and ``expires`` are the store's clock at the last grant or
    renewal and at its end. A lease counts only from its grant to its end,
    so a clock set back ends it rather than stretching it.
    """

    token: int = 0
    holder: str = ""
    granted: float = 0.0
    expires: float = 0.0

    def current(self, now: float) -> bool:
        """True while somebody holds the lease at ``now``."""
        return bool(self.holder) and self.granted <= now < self.expires

    def holds(self, lease: Lease, now: float) -> bool:
        """True while ``lease`` (its holder and token) is the current grant."""
        return self.current(now) and self.holder == lease.holder and self.token == lease.token

    def acquired(self, holder: str, now: float, span: float) -> LeaseState | None:
        """The state after ``holder`` asks for the lease for ``span`` seconds: renewed with
        the same token for the current holder, a new token for a new one; None while
        another holds it."""
        if not self.current(now):
            return LeaseState(self.token + 1, holder, now, now + span)
        return None if self.holder != holder else self.renewed(now, span)

    def renewed(self, now: float, span: float) -> LeaseState:
        """The state after the current grant is extended by ``span`` seconds from ``now``."""
        return replace(self, granted=now, expires=now + span)

    def released(self) -> LeaseState:
        """The state after the holder gives the lease up (its token is kept)."""
        return replace(self, holder="", expires=0.0)

    def info(self, name: str, now: float) -> LeaseInfo | None:
        """Who holds the lease ``name`` at ``now``, or None."""
        if not self.current(now):
            return None
        return LeaseInfo(name, self.holder, self.token, self.expires - now)


def lease_lost(fence: Lease) -> LeaseLost:
    """The error of a put refused because ``fence`` is no longer held."""
    return LeaseLost(
        f"the lease {fence.name} (token {fence.token}) is no longer held by {fence.holder}; "
        "nothing was stored"
    )


def check_limit(limit: int) -> None:
    """Reject a negative ``recent`` limit."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError("limit must be an int")
    if limit < 0:
        raise ValueError("limit must not be negative")


def group_harvests(blocks: Sequence[Block]) -> dict[str, Provenance]:
    """Validate ``blocks`` and return their harvests' provenance by id, in first-seen order."""
    groups: dict[str, Provenance] = {}
    for block in blocks:
        if not isinstance(block.data, bytes) or len(block.data) != BLOCK_BYTES:
            raise ValueError(f"a pool block must be {BLOCK_BYTES} bytes")
        bits = block.credited_bits
        if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= 8 * BLOCK_BYTES:
            raise ValueError(f"credited_bits must be an int in [0, {8 * BLOCK_BYTES}]")
        if not isinstance(block.tag, bytes) or len(block.tag) > MAX_TAG_BYTES:
            raise ValueError(f"a block's tag must be at most {MAX_TAG_BYTES} bytes")
        prov = block.provenance
        hid = prov.harvest_id
        if not isinstance(hid, str) or not 0 < len(hid.encode()) <= MAX_HARVEST_ID_BYTES:
            raise ValueError(f"harvest_id must be 1 to {MAX_HARVEST_ID_BYTES} bytes of text")
        if not isinstance(prov.source, str) or not prov.source:
            raise ValueError("provenance source must be a non-empty string")
        seen = groups.setdefault(hid, prov)
        if seen != prov:
            raise ValueError("blocks of one harvest id carry different provenance")
    return groups


def dump_provenance(prov: Provenance) -> str:
    """Encode a provenance as canonical JSON."""
    return json.dumps(prov.to_dict(), sort_keys=True, separators=(",", ":"))


def load_provenance(text: str | bytes, store: str) -> Provenance:
    """Decode what :func:`dump_provenance` wrote.

    Anything else (bytes that are not UTF-8, not JSON, not a provenance) is
    damage: ``Unavailable`` naming ``store``, never quoting what it holds.
    """
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        prov = Provenance.from_dict(data)
    except (TypeError, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise Unavailable(f"{store} holds provenance that does not decode") from None
    if not isinstance(prov.source, str) or not isinstance(prov.harvest_id, str):
        raise Unavailable(f"{store} holds provenance that does not decode")
    return prov
