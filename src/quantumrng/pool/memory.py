"""In-memory pool engine (docs/ARCHITECTURE.md, pool): thread-safe, nothing persists; for tests.

Blocks wait in one FIFO queue per source kind, each tagged with a global
sequence number so an unfiltered take merges the queues oldest first.

Fork-safe like the other engines (``forksafe``): a forked child would hold a
copy of every block its parent may still hand out, so in the child the pool
starts empty (its records and leases, which are not output, are kept) and its lock is
replaced, since a parent thread may hold it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from quantumrng import forksafe
from quantumrng.block import Block
from quantumrng.errors import EntropyUnavailable, Unavailable
from quantumrng.pool._common import (
    LeaseState,
    check_holder,
    check_lease,
    check_limit,
    check_record_name,
    check_take,
    group_harvests,
    lease_lost,
    lease_millis,
)
from quantumrng.pool.base import Lease, LeaseInfo, PoolLevel
from quantumrng.provenance import Provenance

__all__ = ["MemoryPool"]

_Entry = tuple[int, str, bytes, int, bytes]  # (sequence, harvest id, data, credited bits, tag)


@dataclass(slots=True)
class _Harvest:
    provenance: Provenance
    left: int


class MemoryPool:
    """A :class:`~quantumrng.pool.base.Pool` held in this process's memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._queues: dict[str, deque[_Entry]] = {}
        self._harvests: OrderedDict[str, _Harvest] = OrderedDict()
        self._records: dict[str, bytes] = {}
        self._leases: dict[str, LeaseState] = {}  # on the monotonic clock
        self._closed = False
        forksafe.register(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"MemoryPool({state})"

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the entropy pool is closed")

    def put(self, blocks: Sequence[Block], *, fence: Lease | None = None) -> None:
        """Add blocks in one step (under the lock); with ``fence``, only while it is held."""
        groups = group_harvests(blocks)
        if fence is not None:
            check_lease(fence)
        with self._lock:
            self._check_open()
            if fence is not None and not self._holds(fence, time.monotonic()):
                raise lease_lost(fence)
            for hid, prov in groups.items():
                if hid not in self._harvests:
                    self._harvests[hid] = _Harvest(prov, 0)
            for block in blocks:
                hid = block.provenance.harvest_id
                harvest = self._harvests[hid]
                queue = self._queues.setdefault(harvest.provenance.source, deque())
                queue.append((next(self._seq), hid, block.data, block.credited_bits, block.tag))
                harvest.left += 1
            for hid in groups:
                self._harvests.move_to_end(hid)

    def take(self, n: int, *, source: str | None = None) -> list[Block]:
        """Remove and return the ``n`` oldest blocks (of ``source``), or none at all."""
        check_take(n, source)
        with self._lock:
            self._check_open()
            kinds = [source] if source is not None else list(self._queues)
            queues = [self._queues.get(kind, deque()) for kind in kinds]
            have = sum(len(q) for q in queues)
            if have < n:
                raise EntropyUnavailable(f"the pool holds {have} of the {n} blocks asked for")
            merged = heapq.merge(*(zip(q, itertools.repeat(i)) for i, q in enumerate(queues)))
            chosen = list(itertools.islice(merged, n))
            taken: list[Block] = []
            for (_seq, hid, data, bits, tag), i in chosen:
                queues[i].popleft()
                harvest = self._harvests[hid]
                taken.append(Block(data, bits, harvest.provenance, tag))
                harvest.left -= 1
                if harvest.left == 0:
                    del self._harvests[hid]
            for kind in kinds:
                if kind in self._queues and not self._queues[kind]:
                    del self._queues[kind]
            return taken

    def level(self) -> PoolLevel:
        """Return blocks, credited bits and blocks per source kind."""
        with self._lock:
            self._check_open()
            by_source = {kind: len(q) for kind, q in self._queues.items() if q}
            bits = sum(e[3] for q in self._queues.values() for e in q)
            return PoolLevel(
                blocks=sum(by_source.values()), credited_bits=bits, by_source=by_source
            )

    def recent(self, limit: int = 10) -> list[tuple[Provenance, int]]:
        """Return the most recently put harvests still in the pool, newest first."""
        check_limit(limit)
        with self._lock:
            self._check_open()
            newest = itertools.islice(reversed(self._harvests.values()), limit)
            return [(h.provenance, h.left) for h in newest]

    def discard(self, harvest_ids: Collection[str]) -> int:
        """Remove every block of these harvests (under the lock); return how many."""
        ids = set(harvest_ids)
        with self._lock:
            self._check_open()
            removed = 0
            for kind in list(self._queues):
                queue = self._queues[kind]
                kept = deque(e for e in queue if e[1] not in ids)
                removed += len(queue) - len(kept)
                if kept:
                    self._queues[kind] = kept
                else:
                    del self._queues[kind]
            for hid in ids:
                self._harvests.pop(hid, None)
            return removed

    def read_record(self, name: str) -> bytes | None:
        """Return the record ``name``, or None."""
        check_record_name(name)
        with self._lock:
            self._check_open()
            return self._records.get(name)

    def write_record(self, name: str, value: bytes | None) -> None:
        """Store or delete the record ``name``."""
        check_record_name(name, value)
        with self._lock:
            self._check_open()
            if value is None:
                self._records.pop(name, None)
            else:
                self._records[name] = value

    def _holds(self, lease: Lease, now: float) -> bool:
        return self._leases.get(lease.name, LeaseState()).holds(lease, now)

    def acquire_lease(self, name: str, holder: str, seconds: float) -> Lease | None:
        """Take or renew the lease ``name`` (under the lock); None while another holds it."""
        check_record_name(name)
        check_holder(holder)
        span = lease_millis(seconds) / 1000
        with self._lock:
            self._check_open()
            state = self._leases.get(name, LeaseState()).acquired(holder, time.monotonic(), span)
            if state is None:
                return None
            self._leases[name] = state
            return Lease(name, holder, state.token)

    def renew_lease(self, lease: Lease, seconds: float) -> bool:
        """Extend ``lease`` if still held as it says."""
        check_lease(lease)
        span = lease_millis(seconds) / 1000
        with self._lock:
            self._check_open()
            now = time.monotonic()
            if not self._holds(lease, now):
                return False
            self._leases[lease.name] = self._leases[lease.name].renewed(now, span)
            return True

    def release_lease(self, lease: Lease) -> None:
        """Give ``lease`` up if still held as it says (its token is kept)."""
        check_lease(lease)
        with self._lock:
            self._check_open()
            if self._holds(lease, time.monotonic()):
                self._leases[lease.name] = self._leases[lease.name].released()

    def lease_holder(self, name: str) -> LeaseInfo | None:
        """Who holds the lease ``name`` now, or None."""
        check_record_name(name)
        with self._lock:
            self._check_open()
            return self._leases.get(name, LeaseState()).info(name, time.monotonic())

    def after_fork_in_child(self) -> None:
        """Drop every block in a forked child: each is its parent's to hand out once."""
        self._lock = threading.Lock()
        self._queues.clear()
        self._harvests.clear()

    def close(self) -> None:
        """Drop every block (nothing persists); later calls raise ``Unavailable``."""
        with self._lock:
            self._closed = True
            self._queues.clear()
            self._harvests.clear()
            self._records.clear()
            self._leases.clear()
