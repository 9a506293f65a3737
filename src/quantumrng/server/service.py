"""What every route shares: the node, the access gate, and drawing randomness.

``draw`` runs a format function over one of the two byte sources (the two
modes of docs/ARCHITECTURE.md) and returns the result with the provenance of
the entropy behind it: for ``drbg`` the provenance of the DRBG's seed block,
for ``raw`` the harvests whose conditioned blocks were taken. Pool reads and
large requests run in a worker thread so the event loop never waits on them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from anyio import to_thread

from quantumrng.block import BLOCK_BYTES
from quantumrng.buffer import ZeroingBuffer
from quantumrng.config import Settings
from quantumrng.engine import Engine, SeedInfo
from quantumrng.errors import NotSeeded, PayloadTooLarge, Unavailable
from quantumrng.formats import RandomBytes
from quantumrng.provenance import QUANTUM_SOURCE_KINDS, Provenance
from quantumrng.rbg3 import XorMask
from quantumrng.witness import summary

if TYPE_CHECKING:
    from quantumrng.harvester import Harvester
    from quantumrng.node import Node
    from quantumrng.server.access import Access
    from quantumrng.server.metrics import Metrics

__all__ = [
    "MODES",
    "OFFLOAD_BYTES",
    "POOL_ANSWER_SECONDS",
    "Context",
    "draw",
    "BoundedRead",
    "raw_limit",
    "source_json",
    "within",
]

MODES = ("drbg", "raw")
OFFLOAD_BYTES = 1 << 16  # DRBG requests from this size run in a worker thread
POOL_ANSWER_SECONDS = 2.0  # longest /ready and /api/v2/status wait on the pool before 503
REFILL_BYTES = 4 * BLOCK_BYTES  # raw pool bytes taken per read beyond the expected amount

T = TypeVar("T")
A = TypeVar("A")


def source_json(kind: str, provenances: Iterable[Provenance], credited_bits: int) -> dict[str, Any]:
    """Return the JSON ``source`` of an answer: kind, harvests, entropy credit, and each
    harvest's physics witnesses when it ran any (``quantumrng.witness``)."""
    harvests = []
    for p in provenances:
        harvest: dict[str, Any] = {
            "harvest_id": p.harvest_id,
            "backend": p.backend,
            "job_id": p.job_id,
            "harvested_at": p.harvested_at,
            "qubits": p.qubits,
            "shots": p.shots,
        }
        if p.witness:
            harvest["witness"] = summary(p.witness)
            harvest["witnesses"] = [w.to_dict() for w in p.witness]
        harvests.append(harvest)
    return {
        "kind": kind,
        "quantum": kind in QUANTUM_SOURCE_KINDS,
        "credited_bits": credited_bits,
        "harvests": harvests,
    }


def raw_limit(settings: Settings) -> int:
    """Return the most bytes one raw request may ask: the pool's high-water mark.

    The harvester stops filling there, so a larger take could never be met:
    it is refused (413) rather than told to retry (503).
    """
    return settings.pool_high_water * BLOCK_BYTES


def within(nbytes: int, limit: int) -> int:
    """Return ``nbytes``, or raise 413 when it exceeds ``limit``."""
    if nbytes > limit:
        raise PayloadTooLarge(
            f"this request needs {nbytes} bytes of randomness; at most {limit} are served this way"
        )
    return nbytes


@dataclass
class Context:
    """The services one app's routes use, built once by ``create_app``."""

    settings: Settings
    node: Node
    access: Access
    metrics: Metrics
    harvester: Harvester | None = None  # set while this app runs the node's harvester
    _seed: SeedInfo | None = field(default=None, init=False, repr=False)
    _seed_source: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def engine(self) -> Engine:
        """The node's engine."""
        return self.node.engine

    def drbg_source(self) -> dict[str, Any]:
        """Return the ``source`` of DRBG output: its current seed's provenance."""
        seed = self.engine.seed_info
        if seed is None:  # an answer that read nothing (min == max) still names its source
            self.engine.reseed()
            seed = self.engine.seed_info
            if seed is None:
                raise NotSeeded("the DRBG lost its seed; try again")
        if seed is not self._seed:
            prov = seed.provenance
            source = source_json(prov.source, [prov], seed.credited_bits)
            source["seeded_at"] = seed.seeded_at
            source["reseeds"] = seed.reseeds
            self._seed, self._seed_source = seed, source
        return self._seed_source


class _RawReader:
    """A byte source over the raw pool: the expected bytes first, then a few blocks at a time.

    Pool entropy is rationed, so reads beyond the expectation (rejection
    sampling) take only ``REFILL_BYTES`` more; what is left unread is zeroed
    and never used again. Records the harvests and credit behind what it took.
    """

    def __init__(self, node: Node, expected: int) -> None:
        self._node = node
        self._mask = XorMask()  # this request's RBG3(XOR) DRBG
        self._next = max(expected, 1)
        self._buf = ZeroingBuffer()
        self.harvests: dict[str, Provenance] = {}
        self.credited_bits = 0
        self.nbytes = 0

    def __call__(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            if not self._buf.left:
                self._fill(n - len(out))
            out += self._buf.take(n - len(out))
        return bytes(out)

    def _fill(self, need: int) -> None:
        size = -(-max(need, self._next) // BLOCK_BYTES) * BLOCK_BYTES
        self._next = REFILL_BYTES
        data, provenances, credited = self._node.raw_bytes(size, self._mask)
        for p in provenances:
            self.harvests.setdefault(p.harvest_id, p)
        self.credited_bits += credited
        self.nbytes += size
        self._buf.load(data)

    def close(self) -> None:
        """Zero what was taken and not used; wipe the request's DRBG."""
        self._buf.clear()
        self._mask.close()


def _raw(
    ctx: Context, nbytes: int, produce: Callable[[RandomBytes, A], T], args: A
) -> tuple[T, _RawReader]:
    reader = _RawReader(ctx.node, nbytes)
    try:
        return produce(reader, args), reader
    finally:
        reader.close()


async def draw(
    ctx: Context, mode: str, nbytes: int, produce: Callable[[RandomBytes, A], T], args: A
) -> tuple[T, dict[str, Any]]:
    """Run ``produce(read, args)`` over the ``mode`` byte source; return its value and
    ``source``.

    ``nbytes`` is what ``produce`` is expected to read: it sizes the raw
    pool's first take and decides whether the work leaves the event loop.
    A raw request for more blocks than the pool's high-water mark could
    never be met and raises ``PayloadTooLarge`` (413), for every route.
    """
    if mode == "raw":
        ctx.node.check_raw()
        if -(-nbytes // BLOCK_BYTES) > ctx.settings.pool_high_water:
            limit = raw_limit(ctx.settings)
            raise PayloadTooLarge(
                f"raw requests are limited to the pool's high-water mark: {limit} bytes "
                f"(this one needs {nbytes}); mode=drbg has no such limit"
            )
        value, reader = await to_thread.run_sync(_raw, ctx, nbytes, produce, args)
        if ctx.harvester is not None:
            ctx.harvester.wake()
        ctx.metrics.served("raw", reader.nbytes)
        harvests = reader.harvests.values()
        kind = next(iter(harvests)).source if harvests else ctx.settings.source
        return value, source_json(kind, harvests, reader.credited_bits)
    read = ctx.engine.random_bytes
    if nbytes < OFFLOAD_BYTES:
        value = produce(read, args)
    else:
        value = await to_thread.run_sync(produce, read, args)
    ctx.metrics.served("drbg", nbytes)
    return value, ctx.drbg_source()


@dataclass(slots=True)
class _Flight(Generic[T]):
    """One read in flight: done when ``finished`` is set."""

    finished: threading.Event = field(default_factory=threading.Event)
    value: T | None = None
    error: BaseException | None = None


class BoundedRead(Generic[T]):
    """Runs ``read`` (which reads the pool) in a daemon thread and waits a bounded time.

    At most one read is in flight: while one hangs (a frozen Redis), later
    callers wait on it instead of starting more threads, so nothing piles up
    and no worker thread is held longer than ``timeout``. A read not done in
    time raises ``Unavailable`` (503) naming ``what``; a failed read raises
    its own error.
    """

    def __init__(self, read: Callable[[], T], what: str, timeout: float) -> None:
        self._read = read
        self.what = what
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pending: _Flight[T] | None = None

    def __call__(self) -> T:
        """Return what ``read`` returns, waiting at most ``timeout`` seconds (blocking)."""
        with self._lock:
            flight = self._pending
            if flight is None:
                flight = self._pending = _Flight()
                name = f"qrng-pool-read-{self.what}"
                threading.Thread(target=self._run, args=(flight,), name=name, daemon=True).start()
        if not flight.finished.wait(self.timeout):
            raise Unavailable(
                f"the entropy pool did not answer in time; {self.what} is unavailable"
            )
        if flight.error is not None:
            raise flight.error
        return flight.value  # type: ignore[return-value]

    def _run(self, flight: _Flight[T]) -> None:
        try:
            flight.value = self._read()
        except BaseException as exc:  # handed to every caller waiting on this flight
            flight.error = exc
        finally:
            with self._lock:
                self._pending = None
            flight.finished.set()
