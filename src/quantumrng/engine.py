"""The engine: a CTR_DRBG seeded from the quantum pool, plus raw pool output.

Seed material (SP 800-90A §8.6.3, §9.1) is one conditioned pool block, 32
bytes of OS entropy and a personalization string (host, pid, thread, time):
the quantum provider, who saw the raw bits, cannot predict output without
the OS entropy, and a reader of the pool file cannot without the OS entropy
either. The DRBG is reseeded after ``reseed_bytes`` of output or
``reseed_seconds``, on a prediction-resistance request, and in every forked
child. With no block of the configured source in the pool it raises
``NotSeeded``: there is no fallback generator.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from quantumrng import forksafe
from quantumrng.block import BLOCK_BYTES, Block
from quantumrng.buffer import ZeroingBuffer
from quantumrng.drbg import MAX_BYTES_PER_REQUEST, CtrDrbg
from quantumrng.errors import EntropyUnavailable, NotSeeded
from quantumrng.pool.base import Pool
from quantumrng.provenance import Provenance

__all__ = ["BUFFER_BYTES", "Engine", "SeedInfo"]

BUFFER_BYTES = 1 << 16  # one DRBG request; small reads are served from it
SMALL_REQUEST_BYTES = 4096  # requests up to this size come from the buffer
SCRATCH_BYTES = 1 << 20  # larger requests up to this size are built in a reused buffer
OS_ENTROPY_BYTES = 32  # security strength of AES-256 CTR_DRBG
NONCE_BYTES = 16  # SP 800-90A §8.6.7: at least half the security strength

_T = TypeVar("_T")
_ZEROS = memoryview(bytes(BUFFER_BYTES))
_SCRATCH_ZEROS = memoryview(bytes(SCRATCH_BYTES))


@dataclass(frozen=True, slots=True)
class SeedInfo:
    """Public facts about the current seed: where it came from, no secret."""

    provenance: Provenance
    credited_bits: int
    seeded_at: float  # seconds since the Unix epoch
    reseeds: int  # seedings of this engine so far, the first included


class Engine:
    """Thread-safe random bytes from a pool-seeded CTR_DRBG, and raw pool bytes.

    ``source`` restricts seeding and raw output to blocks of one source kind.
    ``refill`` is called, without the lock held, when the pool has no block
    to seed from (the CLI harvests synchronously there); it may raise.
    """

    def __init__(
        self,
        pool: Pool,
        *,
        source: str | None = None,
        reseed_bytes: int = 1 << 30,
        reseed_seconds: float = 300.0,
        refill: Callable[[], object] | None = None,
    ) -> None:
        if reseed_bytes < 1 or not 0 < reseed_seconds < math.inf:
            # a zero budget would make every request reseed again, draining the pool
            raise ValueError("reseed_bytes and reseed_seconds must be positive and finite")
        self._pool = pool
        self._source = source
        self._reseed_bytes = reseed_bytes
        self._reseed_seconds = reseed_seconds
        self._refill = refill
        self._lock = threading.Lock()
        self._local = threading.local()  # each thread's _ThreadBuffer
        self._buffers: weakref.WeakSet[_ThreadBuffer] = weakref.WeakSet()
        self._generation = 0  # bumped at each seeding and wipe: older buffers are stale
        self._scratch = memoryview(bytearray(SCRATCH_BYTES))
        self._scratch_lock = threading.Lock()
        self._drbg: CtrDrbg | None = None
        self._seed: SeedInfo | None = None
        self._reseeds = 0
        self._since_reseed = 0
        self._seeded_mono = 0.0
        self._bytes_out = 0
        self._raw_out = 0
        forksafe.register(self)

    # -- state ---------------------------------------------------------------

    @property
    def seeded(self) -> bool:
        """True when the DRBG holds seed material."""
        return self._drbg is not None

    @property
    def seed_info(self) -> SeedInfo | None:
        """Provenance of the current seed, or None before the first seeding."""
        return self._seed

    def stats(self) -> dict[str, object]:
        """Return counters for status pages; nothing secret."""
        seed = self._seed
        return {
            "seeded": self.seeded,
            "reseeds": self._reseeds,
            "bytes_since_reseed": self._since_reseed,
            "drbg_bytes": self._bytes_out,
            "raw_bytes": self._raw_out,
            "seed": None
            if seed is None
            else {
                "provenance": seed.provenance.to_dict(),
                "credited_bits": seed.credited_bits,
                "seeded_at": seed.seeded_at,
            },
        }

    def wipe(self) -> None:
        """Drop the DRBG state and make all buffered output stale; the next read reseeds.

        The calling thread's buffer is zeroed now; another thread's is zeroed
        when that thread next reads (zeroing it under its feet could hand out
        zeros), or when the thread ends.
        """
        with self._lock:
            self._wipe_locked()
        buffer = getattr(self._local, "buffer", None)
        if buffer is not None:
            buffer.clear()

    def _wipe_locked(self) -> None:
        if self._drbg is not None:
            self._drbg.wipe()
        self._drbg = None
        self._generation += 1

    def after_fork_in_child(self) -> None:
        """Wipe the DRBG and every buffer: only the forking thread survives a fork,
        so zeroing other threads' buffers is safe here (``forksafe``)."""
        self._lock = threading.Lock()
        self._scratch_lock = threading.Lock()
        self._scratch[:] = _SCRATCH_ZEROS
        for buffer in list(self._buffers):
            buffer.clear()
        self._wipe_locked()

    # -- seeding ---------------------------------------------------------------

    def _take_block(self) -> Block:
        try:
            return self._pool.take(1, source=self._source)[0]
        except EntropyUnavailable:
            if self._refill is None:
                raise
        self._refill()
        return self._pool.take(1, source=self._source)[0]

    def _personalization(self) -> bytes:
        return (
            f"quantumrng|{socket.gethostname()}|{os.getpid()}|"
            f"{threading.get_ident()}|{time.time_ns()}"
        ).encode()

    def reseed(self) -> None:
        """Reseed now from a fresh pool block and OS entropy (SP 800-90A §9.2)."""
        try:
            block = self._take_block()
        except EntropyUnavailable:
            raise NotSeeded(
                "no entropy in the pool to seed the DRBG: run `qrng harvest` or wait "
                "for the harvester"
            ) from None
        with self._lock:
            self._install_locked(block)

    def _install_locked(self, block: Block) -> None:
        entropy = block.data + os.urandom(OS_ENTROPY_BYTES)
        if self._drbg is None:
            self._drbg = CtrDrbg(entropy, os.urandom(NONCE_BYTES), self._personalization())
        else:
            self._drbg.reseed(entropy, self._personalization())
        self._reseeds += 1
        self._since_reseed = 0
        self._seeded_mono = time.monotonic()
        self._seed = SeedInfo(block.provenance, block.credited_bits, time.time(), self._reseeds)
        self._generation += 1

    def _due_locked(self) -> bool:
        return (
            self._since_reseed >= self._reseed_bytes
            or time.monotonic() - self._seeded_mono >= self._reseed_seconds
        )

    def _request(self, fill: Callable[[CtrDrbg], _T], size: int) -> _T:
        """Run one SP 800-90A generate request of ``size`` bytes, reseeding first
        (outside the lock, since it may harvest) when the DRBG is missing or due."""
        while True:
            with self._lock:
                drbg = self._drbg
                if drbg is not None and not self._due_locked():
                    result = fill(drbg)
                    self._since_reseed += size
                    self._bytes_out += size
                    return result
            self.reseed()

    # -- output ----------------------------------------------------------------

    def random_bytes(self, n: int, *, prediction_resistance: bool = False) -> bytes:
        """Return ``n`` bytes of DRBG output.

        Requests up to 4 KiB are cut from the calling thread's 64 KiB buffer
        of DRBG output (no lock on this hot path), whose bytes are zeroed as
        they are handed out; a buffer filled before the latest seeding is
        not used. With ``prediction_resistance`` the DRBG is reseeded from a
        fresh pool block and OS entropy first, and the buffer is bypassed.
        """
        if 0 <= n <= SMALL_REQUEST_BYTES and not prediction_resistance:
            buffer: _ThreadBuffer | None = getattr(self._local, "buffer", None)
            if buffer is not None and buffer.generation == self._generation:
                pos = buffer.pos
                end = pos + n
                if end <= BUFFER_BYTES:
                    view = buffer.view
                    out = view[pos:end].tobytes()
                    view[pos:end] = _ZEROS[:n]
                    buffer.pos = end
                    return out
            return self._from_fresh_buffer(n)
        if n < 0:
            raise ValueError("n must be non-negative")
        if prediction_resistance:
            self.reseed()
        if n > SCRATCH_BYTES:
            buf = bytearray(n)
            self.random_into(buf)
            return bytes(buf)
        with self._scratch_lock:  # one allocation, as os.urandom makes
            view = self._scratch[:n]
            try:
                self.random_into(view)
                return view.tobytes()
            finally:
                view[:] = _SCRATCH_ZEROS[:n]

    def _from_fresh_buffer(self, n: int) -> bytes:
        buffer: _ThreadBuffer | None = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = _ThreadBuffer()
            with self._lock:
                self._buffers.add(buffer)
        elif buffer.generation != self._generation:
            buffer.clear()  # output of an older seed: never served, not kept either
        return self._request(partial(self._refill_locked, buffer=buffer, n=n), BUFFER_BYTES)

    def _refill_locked(self, drbg: CtrDrbg, buffer: _ThreadBuffer, n: int) -> bytes:
        view = buffer.view
        drbg.generate_into(view)
        buffer.generation = self._generation
        out = view[:n].tobytes()
        view[:n] = _ZEROS[:n]
        buffer.pos = n
        return out

    def random_into(self, out: bytearray | memoryview) -> None:
        """Fill ``out`` with DRBG output, one SP 800-90A request per 64 KiB."""
        view = memoryview(out).cast("B")
        start = 0
        for size in _request_sizes(len(view)):
            chunk = view[start : start + size]
            self._request(partial(CtrDrbg.generate_into, out=chunk), size)
            start += size

    def stream(self, n: int, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """Yield ``n`` bytes of DRBG output in chunks of at most ``chunk_bytes``."""
        left = n
        while left > 0:
            size = min(chunk_bytes, left)
            yield self.random_bytes(size)
            left -= size

    def raw_bytes(self, n: int) -> tuple[bytes, list[Provenance], int]:
        """Return ``n`` bytes of conditioned pool entropy, never used elsewhere.

        Returns the bytes, the provenance of the harvests behind them and the
        credited min-entropy of the blocks taken. Raises
        ``EntropyUnavailable`` (503) when the pool holds too few blocks.
        """
        if n < 0:
            raise ValueError("n must be non-negative")
        if n == 0:
            return b"", [], 0
        blocks = self._pool.take(-(-n // BLOCK_BYTES), source=self._source)
        data = b"".join(b.data for b in blocks)[:n]
        seen: dict[str, Provenance] = {}
        for b in blocks:
            seen.setdefault(b.provenance.harvest_id, b.provenance)
        with self._lock:
            self._raw_out += n
        return data, list(seen.values()), sum(b.credited_bits for b in blocks)


def _request_sizes(n: int) -> list[int]:
    """Split ``n`` bytes into SP 800-90A requests of at most 64 KiB."""
    full, rest = divmod(n, MAX_BYTES_PER_REQUEST)
    return [MAX_BYTES_PER_REQUEST] * full + ([rest] if rest else [])


class _ThreadBuffer(ZeroingBuffer):
    """One thread's 64 KiB of DRBG output, tagged with the seeding it came from."""

    __slots__ = ("generation",)

    def __init__(self) -> None:
        super().__init__(BUFFER_BYTES)
        self.generation = -1
