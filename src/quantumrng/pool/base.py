"""The ``Pool`` interface: a persistent store of conditioned blocks.

A block is handed out exactly once: ``take`` removes what it returns in one
atomic step, across threads, processes and nodes, and a block taken is never
seen again, even after a crash. Blocks are secrets: no engine logs them.

Leases (``acquire_lease`` ...) elect one writer among every process sharing the
store, e.g. one harvest leader per source. Each new holder gets a fencing token
greater than every earlier one of that lease, and ``put(blocks, fence=lease)``
stores nothing unless that holder still holds the lease with that token when
the put runs, checked in the put's own atomic step: a writer that paused past
its lease cannot write. Expiry is measured by the store's clock (Redis server
time; the machine's wall clock for SQLite).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from quantumrng.block import Block
from quantumrng.provenance import Provenance

__all__ = ["Lease", "LeaseInfo", "Pool", "PoolLevel"]


@dataclass(frozen=True, slots=True)
class PoolLevel:
    """How much the pool holds, in blocks and credited bits, per source kind."""

    blocks: int
    credited_bits: int
    by_source: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease held: its name, the holder's name and the fencing token it was granted."""

    name: str
    holder: str
    token: int


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """Who holds a lease now, with its token and the seconds left by the store's clock."""

    name: str
    holder: str
    token: int
    expires_in: float


@runtime_checkable
class Pool(Protocol):
    """A store of conditioned blocks, each taken at most once."""

    def put(self, blocks: Sequence[Block], *, fence: Lease | None = None) -> None:
        """Add blocks (all of one harvest or several) in one transaction.

        With ``fence``, raise :class:`quantumrng.errors.LeaseLost` and store
        nothing unless ``fence.holder`` holds the lease ``fence.name`` with
        ``fence.token`` at the moment of the put.
        """
        ...

    def take(self, n: int, *, source: str | None = None) -> list[Block]:
        """Remove and return exactly ``n`` blocks, oldest first.

        With ``source``, only blocks of that source kind are taken. Raises
        :class:`quantumrng.errors.EntropyUnavailable` and removes nothing
        when fewer than ``n`` are there; ``ValueError`` when ``n < 1``.
        """
        ...

    def level(self) -> PoolLevel:
        """Return the current fill level."""
        ...

    def discard(self, harvest_ids: Collection[str]) -> int:
        """Remove every block of these harvests in one step; return how many were removed.

        Quarantine (SP 800-90B §4.3): blocks harvested while the source was
        failing are never served. Unknown ids are ignored.
        """
        ...

    def read_record(self, name: str) -> bytes | None:
        """Return the record stored under ``name`` (assessment, source state), or None."""
        ...

    def write_record(self, name: str, value: bytes | None) -> None:
        """Store ``value`` under ``name`` durably, replacing any; ``None`` deletes it.

        Records live beside the blocks so that every process and node using
        this store sees the same assessment and failure state.
        """
        ...

    def recent(self, limit: int = 10) -> list[tuple[Provenance, int]]:
        """Return the provenance of the newest harvests still in the pool,
        each with the number of its blocks left, newest first."""
        ...

    def acquire_lease(self, name: str, holder: str, seconds: float) -> Lease | None:
        """Take the lease ``name`` for ``seconds`` unless another holder has it; None if so.

        A new holder gets a token greater than every earlier token of ``name``;
        the current holder acquiring again renews and keeps its token.
        """
        ...

    def renew_lease(self, lease: Lease, seconds: float) -> bool:
        """Extend ``lease`` to ``seconds`` from now; False (nothing changed) when it is no
        longer held by that holder with that token (expired or taken over)."""
        ...

    def release_lease(self, lease: Lease) -> None:
        """Give ``lease`` up at once if still held as ``lease`` says; else do nothing."""
        ...

    def lease_holder(self, name: str) -> LeaseInfo | None:
        """Who holds the lease ``name`` now, or None when nobody does."""
        ...

    def close(self) -> None:
        """Release connections; the pool's contents stay where they are."""
        ...
