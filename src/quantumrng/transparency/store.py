"""The ``LedgerStore`` interface: signed results, log leaves, tree nodes, heads, pulses.

One store per deployment, beside the pool (``open_ledger``): the SQLite file
``<data_dir>/ledger.sqlite3``, Redis under the pool's ``{redis_key}`` hash tag,
or memory. It is the log's only state, so it survives restarts and is shared
by every worker and node.

Appends are the one write that must be atomic: :meth:`LedgerStore.append`
gives ``make`` the counters as they are (next global serial, next log index,
next serial of each API key), ``make`` numbers and signs its entries from
them, and the store writes them all in one step only if the counters are
still those (else it calls ``make`` again with the new ones). Serials and log
indexes are therefore gap-free and each is given once, whatever the number of
processes and nodes: a result is never signed with a serial that is not
stored, and never stored without its leaf.

Tree nodes: ``node(level, index)`` is the hash of the complete subtree of
``2**level`` leaves starting at leaf ``index * 2**level`` (RFC 9162 §2.1.1).
Level 0 (leaf hashes) is written by ``append``; the log writes the levels above
as subtrees complete (:meth:`put_nodes`); node hashes never change once written.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from quantumrng.transparency.merkle import leaf_hash

__all__ = [
    "ANONYMOUS",
    "Counters",
    "Entry",
    "LedgerStore",
    "MemoryLedger",
    "PulseExists",
    "check_numbering",
]

ANONYMOUS = ""  # the key hash of requests without an API key


class PulseExists(ValueError):
    """An append named a beacon pulse (chain, index) or time already stored."""


@dataclass(frozen=True, slots=True)
class Counters:
    """Where the next append starts, as the store read them just before it writes."""

    next_serial: int  # the global serial of the next result (from 1)
    next_leaf: int  # the log index of the next entry (from 0)
    key_serials: Mapping[str, int]  # next key serial of each key hash asked for (from 1)


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry: a signed result or a beacon pulse.

    ``leaf`` is exactly the bytes that were signed (the RFC 9162 leaf);
    ``document`` what a client gets back (a result's ``signed`` object, a
    pulse's JSON). Both are None once retention has pruned a result; its
    ``leaf_hash`` stays, so proofs still name it.
    """

    leaf_index: int
    kind: str  # "result" | "pulse"
    created_at: float
    leaf: bytes | None
    document: bytes | None
    serial: int | None = None  # results: global serial
    key_hash: str | None = None  # results: hashed API key (ANONYMOUS: none)
    key_serial: int | None = None  # results: serial among the key's results
    chain_index: int | None = None  # pulses
    pulse_index: int | None = None  # pulses
    time_ms: int | None = None  # pulses: the pulse's timeStamp, ms since the epoch
    leaf_hash: bytes = b""  # filled by the store: SHA-256(0x00 || leaf)

    def hashed(self) -> Entry:
        """This entry with its leaf hash filled in."""
        if self.leaf_hash or self.leaf is None:
            return self
        return replace(self, leaf_hash=leaf_hash(self.leaf))


def check_numbering(counters: Counters, entries: Sequence[Entry]) -> dict[str, int]:
    """Raise ``ValueError`` unless ``entries`` continue ``counters`` without a gap;
    return the next key serial of every key hash they use."""
    serial = counters.next_serial
    keys = dict(counters.key_serials)
    for offset, e in enumerate(entries):
        if e.leaf_index != counters.next_leaf + offset or e.leaf is None:
            raise ValueError("log indexes must continue the log, each entry with its leaf")
        if e.kind == "result":
            if e.key_hash is None or e.key_hash not in keys:
                raise ValueError("a result's key hash must be one the append asked for")
            if e.serial != serial or e.key_serial != keys[e.key_hash]:
                raise ValueError("serials must continue without a gap")
            serial += 1
            keys[e.key_hash] += 1
        elif e.kind == "pulse":
            if e.chain_index is None or e.pulse_index is None or e.time_ms is None:
                raise ValueError("a pulse entry names its chain, index and time")
        else:
            raise ValueError(f"unknown entry kind {e.kind!r}")
    return keys


@runtime_checkable
class LedgerStore(Protocol):
    """Where signed results and the transparency log live (see the module)."""

    def append(
        self, key_hashes: Collection[str], make: Callable[[Counters], Sequence[Entry]]
    ) -> list[Entry]:
        """Store what ``make(counters)`` returns, atomically, numbered from ``counters``.

        ``make`` may run more than once (another writer appended meanwhile)
        and must number its entries from the counters it is given
        (:func:`check_numbering`). Returns the stored entries with their leaf
        hashes. Raises :class:`PulseExists` (nothing stored) when a pulse's
        (chain, index) or time is taken, ``ValueError`` for bad numbering,
        ``quantumrng.errors.Unavailable`` when the store cannot be reached.
        """
        ...

    def size(self) -> int:
        """Entries in the log (its leaves)."""
        ...

    def entry(self, leaf_index: int) -> Entry | None:
        """The entry at ``leaf_index``, or None."""
        ...

    def result(self, serial: int) -> Entry | None:
        """The result with global ``serial`` (pruned: no leaf or document), or None."""
        ...

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes | None]:
        """Node hashes at ``(level, index)`` (level 0: leaf hashes); None where not stored."""
        ...

    def put_nodes(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        """Store complete-subtree hashes (level >= 1); existing ones are kept."""
        ...

    def put_head(self, tree_size: int, document: bytes) -> None:
        """Store a signed tree head for ``tree_size``; one already stored for it is kept."""
        ...

    def head(self, tree_size: int | None = None) -> bytes | None:
        """The signed tree head for ``tree_size``, or the largest one; None if none."""
        ...

    def pulse(self, chain_index: int, pulse_index: int) -> Entry | None:
        """The beacon pulse (chain, index), or None."""
        ...

    def last_pulse(self, chain_index: int | None = None) -> Entry | None:
        """The newest pulse (of ``chain_index``), or None."""
        ...

    def pulse_by_time(self, time_ms: int, relation: str) -> Entry | None:
        """The pulse with timeStamp ``time_ms`` (relation "at"), the newest before it
        ("before"), or the oldest after it ("after"); None if there is none."""
        ...

    def register_key(self, key_id: str, document: bytes) -> None:
        """Publish (or update) a public key entry for every node of the deployment."""
        ...

    def public_keys(self) -> list[bytes]:
        """Every published public key entry, in the order first published."""
        ...

    def prune(self, before: float) -> int:
        """Drop the leaf and document of results created before ``before`` (Unix seconds);
        return how many were dropped. Leaf hashes, serials and nodes stay."""
        ...

    def close(self) -> None:
        """Release connections; the contents stay."""
        ...


class MemoryLedger:
    """A ``LedgerStore`` in this process's memory (tests, ``pool = "memory"``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._serials: dict[int, int] = {}  # serial -> leaf index
        self._key_serials: dict[str, int] = {}
        self._next_serial = 1
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._heads: dict[int, bytes] = {}
        self._pulses: dict[tuple[int, int], int] = {}
        self._times: list[tuple[int, int]] = []  # (time_ms, leaf index), sorted
        self._keys: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"MemoryLedger(size={len(self._entries)})"

    def _counters(self, key_hashes: Iterable[str]) -> Counters:
        return Counters(
            self._next_serial,
            len(self._entries),
            {k: self._key_serials.get(k, 0) + 1 for k in key_hashes},
        )

    def append(
        self, key_hashes: Collection[str], make: Callable[[Counters], Sequence[Entry]]
    ) -> list[Entry]:
        with self._lock:
            counters = self._counters(key_hashes)
            entries = [e.hashed() for e in make(counters)]
            next_keys = check_numbering(counters, entries)
            times = {t for t, _ in self._times}
            for e in entries:
                if e.kind == "pulse" and (
                    (e.chain_index, e.pulse_index) in self._pulses or e.time_ms in times
                ):
                    raise PulseExists(f"pulse {e.chain_index}/{e.pulse_index} exists")
            for e in entries:
                self._entries.append(e)
                self._nodes[0, e.leaf_index] = e.leaf_hash
                if e.kind == "result" and e.serial is not None:
                    self._serials[e.serial] = e.leaf_index
                    self._next_serial = e.serial + 1
                elif e.chain_index is not None and e.pulse_index is not None:
                    assert e.time_ms is not None
                    self._pulses[e.chain_index, e.pulse_index] = e.leaf_index
                    bisect.insort(self._times, (e.time_ms, e.leaf_index))
            for key, following in next_keys.items():
                if following > 1:
                    self._key_serials[key] = following - 1
            return entries

    def size(self) -> int:
        with self._lock:
            return len(self._entries)

    def entry(self, leaf_index: int) -> Entry | None:
        with self._lock:
            return self._entries[leaf_index] if 0 <= leaf_index < len(self._entries) else None

    def result(self, serial: int) -> Entry | None:
        with self._lock:
            index = self._serials.get(serial)
            return None if index is None else self._entries[index]

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes | None]:
        with self._lock:
            return [self._nodes.get(k) for k in keys]

    def put_nodes(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        with self._lock:
            for key, value in nodes.items():
                if key[0] < 1:
                    raise ValueError("level 0 (leaf hashes) is written by append")
                self._nodes.setdefault(key, value)

    def put_head(self, tree_size: int, document: bytes) -> None:
        with self._lock:
            self._heads.setdefault(tree_size, document)

    def head(self, tree_size: int | None = None) -> bytes | None:
        with self._lock:
            if tree_size is None:
                return self._heads[max(self._heads)] if self._heads else None
            return self._heads.get(tree_size)

    def pulse(self, chain_index: int, pulse_index: int) -> Entry | None:
        with self._lock:
            index = self._pulses.get((chain_index, pulse_index))
            return None if index is None else self._entries[index]

    def last_pulse(self, chain_index: int | None = None) -> Entry | None:
        with self._lock:
            found = [
                (key, index)
                for key, index in self._pulses.items()
                if chain_index is None or key[0] == chain_index
            ]
            return self._entries[max(found)[1]] if found else None

    def pulse_by_time(self, time_ms: int, relation: str) -> Entry | None:
        with self._lock:
            times = self._times
            if relation == "at":
                i = bisect.bisect_left(times, (time_ms, -1))
                ok = i < len(times) and times[i][0] == time_ms
            elif relation == "before":
                i = bisect.bisect_left(times, (time_ms, -1)) - 1
                ok = i >= 0
            elif relation == "after":
                i = bisect.bisect_right(times, (time_ms, len(self._entries)))
                ok = i < len(times)
            else:
                raise ValueError("relation must be at, before or after")
            return self._entries[times[i][1]] if ok else None

    def register_key(self, key_id: str, document: bytes) -> None:
        with self._lock:
            self._keys[key_id] = document

    def public_keys(self) -> list[bytes]:
        with self._lock:
            return list(self._keys.values())

    def prune(self, before: float) -> int:
        with self._lock:
            dropped = 0
            for i, e in enumerate(self._entries):
                if e.kind == "result" and e.created_at < before and e.document is not None:
                    self._entries[i] = replace(e, leaf=None, document=None)
                    dropped += 1
            return dropped

    def close(self) -> None:
        pass
