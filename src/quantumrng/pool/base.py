"""The ``Pool`` interface: a persistent store of conditioned blocks.

A block is handed out exactly once: ``take`` removes what it returns in one
atomic step, across threads, processes and nodes, and a block taken is never
seen again, even after a crash. Blocks are secrets: no engine logs them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from quantumrng.block import Block
from quantumrng.provenance import Provenance

__all__ = ["Pool", "PoolLevel"]


@dataclass(frozen=True, slots=True)
class PoolLevel:
    """How much the pool holds, in blocks and credited bits, per source kind."""

    blocks: int
    credited_bits: int
    by_source: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class Pool(Protocol):
    """A store of conditioned blocks, each taken at most once."""

    def put(self, blocks: Sequence[Block]) -> None:
        """Add blocks (all of one harvest or several) in one transaction."""
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

    def close(self) -> None:
        """Release connections; the pool's contents stay where they are."""
        ...
