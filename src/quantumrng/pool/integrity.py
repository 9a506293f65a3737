"""Block integrity: a node key outside the store, a MAC sealed on ``put`` and checked on ``take``.

Whoever can write the pool's store (the SQLite file, the Redis keys) must not
choose what is served raw or seeds the DRBG. :class:`TaggedPool` wraps a pool
engine: ``put`` seals every block with a tag, ``take`` checks it and drops
(counts, logs once per take, never serves) any block whose tag does not verify.

The tag (:func:`seal`) is a 16-byte random nonce followed by
HMAC-SHA256 (RFC 2104, FIPS 198-1) under the node key of::

    label || nonce || data (64 bytes) || credited_bits (4 bytes, big-endian)
          || canonical provenance (pool._common.dump_provenance, UTF-8)

Every field but the last has a fixed length, so the encoding is unambiguous;
the label separates this use of the key from any other. The MAC binds the
credit and the provenance too: a store writer can neither raise a block's
credit nor relabel simulator blocks as ``ibm``. Without the key nobody can
make a tag that verifies (a different key fails every block).

Records (the source assessment and failure state, ``read_record`` /
``write_record``) are sealed the same way: the stored value is followed by
HMAC-SHA256 under the node key of ``RECORD_LABEL || name || 0x00 || value``,
so a store writer cannot raise a source's assessed credit or forge a state;
a record that does not verify raises ``Unavailable`` (fail closed). An older
valid record of the same name can be put back (a rollback); it is dated, and
status shows its date.

Leases (who may put, ``acquire_lease`` ...) pass through unsealed. A lease
decides who writes, never what is served: every block a fenced put stores is
still sealed here under the node key, and a block put by a store writer fails
its tag whatever the lease says. A forged or deleted lease can only stop
harvesting (no leader, or one that does not exist) or let two nodes harvest
at once (paying twice for the source); the same writer can delete the blocks
anyway.

What a store writer can still do:

- delete blocks, or the whole store: denial of service (503), never weaker output;
- read blocks before they are taken: a reader of the store learns raw output
  (the DRBG's seed also takes OS entropy the store never sees);
- copy a valid row: the same block could be served twice. This process keeps
  the nonces of its last :data:`REPLAY_WINDOW` taken blocks and drops a block
  seen again (counted as ``replayed``); a copy taken by another process or
  node is not detected.
"""

from __future__ import annotations

import collections
import hmac
import logging
import secrets
import struct
import threading
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from quantumrng import forksafe
from quantumrng.block import BLOCK_BYTES, Block
from quantumrng.errors import ConfigError, EntropyUnavailable, Unavailable
from quantumrng.keyfiles import create_secret_file, read_secret_file
from quantumrng.pool._common import check_take, dump_provenance, group_harvests
from quantumrng.pool.base import Lease, LeaseInfo, Pool, PoolLevel
from quantumrng.provenance import Provenance

__all__ = [
    "KEY_BYTES",
    "MAX_DROPPED_PER_TAKE",
    "REPLAY_WINDOW",
    "TAG_BYTES",
    "TaggedPool",
    "decrypt_record",
    "encrypt_record",
    "load_or_create_key",
    "seal",
    "verify",
]

log = logging.getLogger(__name__)

KEY_BYTES = 32  # HMAC-SHA256 key: the hash's output size (RFC 2104 §3)
NONCE_BYTES = 16
TAG_BYTES = NONCE_BYTES + 32
LABEL = b"quantumrng pool block tag v1\x00"
RECORD_LABEL = b"quantumrng pool record tag v1\x00"
RECORD_MAC_BYTES = 32
MAX_DROPPED_PER_TAKE = 64  # blocks one take drops before it gives up (503)
REPLAY_WINDOW = 16_384  # nonces of recently taken blocks this process remembers

_CREDIT = struct.Struct(">I")


def _message(nonce: bytes, data: bytes, credited_bits: int, provenance: Provenance) -> bytes:
    return b"".join(
        (LABEL, nonce, data, _CREDIT.pack(credited_bits), dump_provenance(provenance).encode())
    )


def seal(key: bytes, block: Block) -> bytes:
    """Return a fresh tag for ``block``: a random nonce and the MAC over it and the block."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    mac = hmac.digest(
        key, _message(nonce, block.data, block.credited_bits, block.provenance), "sha256"
    )
    return nonce + mac


def verify(key: bytes, block: Block) -> str | None:
    """Return None when ``block.tag`` verifies under ``key``, else why not (no bytes)."""
    tag = block.tag
    if not tag:
        return "missing tag"
    if len(tag) != TAG_BYTES:
        return "bad tag"
    bits = block.credited_bits
    if len(block.data) != BLOCK_BYTES or not 0 <= bits <= 8 * BLOCK_BYTES:
        return "malformed block"
    nonce, mac = tag[:NONCE_BYTES], tag[NONCE_BYTES:]
    expected = hmac.digest(key, _message(nonce, block.data, bits, block.provenance), "sha256")
    return None if hmac.compare_digest(mac, expected) else "bad tag"


_GCM_NONCE_BYTES = 12


def _record_cipher(key: bytes, purpose: bytes) -> AESGCM:
    return AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=purpose).derive(key))


def encrypt_record(key: bytes, purpose: bytes, value: bytes, bound: bytes) -> bytes:
    """``value`` encrypted for a pool record: AES-256-GCM under a key derived from the
    node key with HKDF-SHA256 (RFC 5869, ``info`` = ``purpose``), bound to ``bound``
    (associated data); a fresh 12-byte nonce first. For secrets the store must hold but
    never learn (the beacon's next value, the drand chain key)."""
    nonce = secrets.token_bytes(_GCM_NONCE_BYTES)
    return nonce + _record_cipher(key, purpose).encrypt(nonce, value, bound)


def decrypt_record(key: bytes, purpose: bytes, sealed: bytes, bound: bytes) -> bytes | None:
    """What :func:`encrypt_record` encrypted, or None when ``sealed`` was not made under
    this key, purpose and ``bound``, or was altered."""
    try:
        return _record_cipher(key, purpose).decrypt(
            sealed[:_GCM_NONCE_BYTES], sealed[_GCM_NONCE_BYTES:], bound
        )
    except (InvalidTag, ValueError):
        return None


def load_or_create_key(path: Path) -> bytes:
    """Return the node key in ``path``, creating the file (mode 0600) first if it is missing.

    A file that is not exactly :data:`KEY_BYTES` bytes is a ``ConfigError``
    naming the file, never its contents. A Redis pool shared by several
    nodes needs the same key file on each.
    """
    path = Path(path)
    if not path.exists() and create_secret_file(path, secrets.token_bytes(KEY_BYTES), "pool key"):
        log.info("created the pool key file %s", path)
    key = read_secret_file(path, "pool key")
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"the pool key file {path} does not hold a {KEY_BYTES}-byte key "
            "(restore it; a new key drops every block in the pool)"
        )
    return key


class TaggedPool:
    """A :class:`~quantumrng.pool.base.Pool` sealing blocks on ``put``, checking them on ``take``.

    Blocks leave ``take`` without their tag. A block that fails the check was
    already removed by the engine's take; it is dropped, counted
    (:attr:`integrity_failures`) and replaced by another take, up to
    :data:`MAX_DROPPED_PER_TAKE` drops, after which the take raises
    ``EntropyUnavailable`` (503) and the good blocks it held are dropped too.
    """

    def __init__(self, engine: Pool, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ConfigError(f"the pool key must be {KEY_BYTES} bytes")
        self.engine = engine
        self._key = key
        self._lock = threading.Lock()
        self._failures: collections.Counter[str] = collections.Counter()
        self._seen: set[bytes] = set()
        self._order: collections.deque[bytes] = collections.deque()
        forksafe.register(self)

    def __repr__(self) -> str:  # never show the key
        return f"TaggedPool({self.engine!r})"

    @property
    def integrity_failures(self) -> int:
        """Blocks this process dropped because their tag did not verify."""
        with self._lock:
            return sum(self._failures.values())

    def failures_by_reason(self) -> dict[str, int]:
        """Dropped blocks by reason: ``missing tag``, ``bad tag``, ``malformed block``, ..."""
        with self._lock:
            return dict(self._failures)

    def after_fork_in_child(self) -> None:
        """A parent thread may have held the lock; the nonces seen stay remembered."""
        self._lock = threading.Lock()

    def put(self, blocks: Sequence[Block], *, fence: Lease | None = None) -> None:
        """Seal each block with a fresh tag and add them all in one engine ``put`` (fenced
        by the engine when ``fence`` is given)."""
        group_harvests(blocks)  # the engine's checks, before sealing reads the fields
        self.engine.put([replace(b, tag=seal(self._key, b)) for b in blocks], fence=fence)

    def take(self, n: int, *, source: str | None = None) -> list[Block]:
        """Remove ``n`` blocks (of ``source``) whose tags verify, oldest first; see the class."""
        check_take(n, source)
        good: list[Block] = []
        dropped: collections.Counter[str] = collections.Counter()
        try:
            while len(good) < n:
                if dropped.total() >= MAX_DROPPED_PER_TAKE:
                    raise EntropyUnavailable(
                        "the pool holds no blocks that pass the integrity check"
                    )
                for block in self.engine.take(n - len(good), source=source):
                    why = self._check(block, source)
                    if why is None:
                        good.append(replace(block, tag=b""))
                    else:
                        dropped[why] += 1
        finally:
            if dropped:
                self._dropped(dropped)
        return good

    def _check(self, block: Block, source: str | None) -> str | None:
        why = verify(self._key, block)
        if why is None and source is not None and block.provenance.source != source:
            why = "wrong source"
        if why is not None:
            return why
        nonce = block.tag[:NONCE_BYTES]
        with self._lock:
            if nonce in self._seen:
                return "replayed"
            self._seen.add(nonce)
            self._order.append(nonce)
            if len(self._order) > REPLAY_WINDOW:
                self._seen.discard(self._order.popleft())
        return None

    def _dropped(self, dropped: collections.Counter[str]) -> None:
        with self._lock:
            self._failures.update(dropped)
        reasons = ", ".join(f"{why}: {count}" for why, count in sorted(dropped.items()))
        log.warning(
            "the entropy pool returned %d block(s) or record(s) that failed the integrity "
            "check (%s); dropped, never served",
            dropped.total(),
            reasons,
        )

    def level(self) -> PoolLevel:
        """The engine's level (it counts blocks a take may yet drop)."""
        return self.engine.level()

    def recent(self, limit: int = 10) -> list[tuple[Provenance, int]]:
        """The engine's newest harvests (unchecked: shown, never served)."""
        return self.engine.recent(limit)

    def discard(self, harvest_ids: Collection[str]) -> int:
        """Remove every block of these harvests (the engine's ``discard``)."""
        return self.engine.discard(harvest_ids)

    def _record_mac(self, name: str, value: bytes) -> bytes:
        return hmac.digest(self._key, RECORD_LABEL + name.encode() + b"\x00" + value, "sha256")

    def read_record(self, name: str) -> bytes | None:
        """Return the record ``name`` if its MAC verifies, None if there is none;
        raise ``Unavailable`` (and count it) when it does not verify."""
        stored = self.engine.read_record(name)
        if stored is None:
            return None
        value, mac = stored[:-RECORD_MAC_BYTES], stored[-RECORD_MAC_BYTES:]
        if len(stored) < RECORD_MAC_BYTES or not hmac.compare_digest(
            mac, self._record_mac(name, value)
        ):
            self._dropped(collections.Counter({"bad record tag": 1}))
            raise Unavailable(f"the pool's {name.split(':')[0]} record failed the integrity check")
        return value

    def write_record(self, name: str, value: bytes | None) -> None:
        """Store ``value`` under ``name`` sealed with its MAC; ``None`` deletes it."""
        if value is None:
            self.engine.write_record(name, None)
            return
        self.engine.write_record(name, value + self._record_mac(name, value))

    def acquire_lease(self, name: str, holder: str, seconds: float) -> Lease | None:
        """The engine's ``acquire_lease`` (leases are not sealed: see the module)."""
        return self.engine.acquire_lease(name, holder, seconds)

    def renew_lease(self, lease: Lease, seconds: float) -> bool:
        """The engine's ``renew_lease``."""
        return self.engine.renew_lease(lease, seconds)

    def release_lease(self, lease: Lease) -> None:
        """The engine's ``release_lease``."""
        self.engine.release_lease(lease)

    def lease_holder(self, name: str) -> LeaseInfo | None:
        """The engine's ``lease_holder`` (shown in status, never trusted to serve)."""
        return self.engine.lease_holder(name)

    def close(self) -> None:
        """Close the engine."""
        self.engine.close()
