"""The engine: a CTR_DRBG seeded from the quantum pool, plus raw pool output.

Seed material (SP 800-90A §8.6.3, §9.1) is one conditioned pool block, 32
bytes of OS entropy and a personalization string (host, pid, thread, time):
the quantum provider, who saw the raw bits, cannot predict output without
the OS entropy, and a reader of the pool file cannot without the OS entropy
either. The entropy input is assembled in a ``bytearray`` that is zeroed once
the DRBG has taken it (``drbg`` says what else is and is not wiped). With no
block of the configured source in the pool seeding raises ``NotSeeded``: there
is no fallback generator.

Power-on self-test: before its first seeding the engine runs the CTR_DRBG
known-answer tests, use df and no df (:func:`quantumrng.selftest.power_on_selftest`,
once per process); if one fails every seeding raises ``SelfTestFailure`` (503)
and nothing is served.

Reseeding: after ``reseed_bytes`` of output or ``reseed_seconds``, whichever
comes first, on every generate call of a prediction-resistance request, and in
every forked child (wiped there). Buffered output obeys the same budget: a
thread's buffer is served only while the seed it came from is the current one
and no reseed is due. A seeding, a wipe and the byte budget running out make
every buffer stale; the time budget is checked on every read. So a slow reader
never gets bytes of an old seed once a reseed is due: its next read reseeds,
and raises ``NotSeeded`` if the pool is dry.

Prediction resistance (``prediction_resistance=True``): before every SP 800-90A
generate call of the request, at most 64 KiB each, the DRBG is reseeded
(§9.2) with fresh entropy input, one pool block never used elsewhere (64
conditioned bytes) and 32 new bytes of ``os.urandom``, with a new
personalization string as additional input; the reseed and the generate call
run under one lock hold, so no other request comes between them.
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
from typing import Protocol, TypeVar

from quantumrng import forksafe, selftest
from quantumrng.block import BLOCK_BYTES, Block
from quantumrng.buffer import ZeroingBuffer
from quantumrng.drbg import MAX_BYTES_PER_REQUEST, CtrDrbg
from quantumrng.errors import EntropyUnavailable, NotSeeded
from quantumrng.pool.base import Pool
from quantumrng.provenance import Provenance

__all__ = ["BUFFER_BYTES", "Engine", "ReadAhead", "SeedInfo"]

BUFFER_BYTES = 1 << 16  # one DRBG request; small reads are served from it
SMALL_REQUEST_BYTES = 4096  # requests up to this size come from the buffer
SCRATCH_BYTES = 1 << 20  # larger requests up to this size are built in a reused buffer
OS_ENTROPY_BYTES = 32  # security strength of AES-256 CTR_DRBG
NONCE_BYTES = 16  # SP 800-90A §8.6.7: at least half the security strength

_T = TypeVar("_T")
_ZEROS = memoryview(bytes(BUFFER_BYTES))
_SCRATCH_ZEROS = memoryview(bytes(SCRATCH_BYTES))
# zeros of each small read's size, made on first use (slicing _ZEROS per read costs more)
_SMALL_ZEROS: list[memoryview | None] = [None] * (SMALL_REQUEST_BYTES + 1)
_clock = time.monotonic  # the reseed clock (one global lookup on the hot path)


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
    ``gate`` is called before every seeding and may raise to refuse it: the
    node passes its source's failure state (SP 800-90B §4.3), so a stopped
    source seeds nothing and the DRBG stops when its reseed budget is spent.
    """

    def __init__(
        self,
        pool: Pool,
        *,
        source: str | None = None,
        reseed_bytes: int = 1 << 30,
        reseed_seconds: float = 300.0,
        refill: Callable[[], object] | None = None,
        gate: Callable[[], object] | None = None,
    ) -> None:
        if reseed_bytes < 1 or not 0 < reseed_seconds < math.inf:
            # a zero budget would make every request reseed again, draining the pool
            raise ValueError("reseed_bytes and reseed_seconds must be positive and finite")
        self._pool = pool
        self._source = source
        self._reseed_bytes = reseed_bytes
        self._reseed_seconds = reseed_seconds
        self._refill = refill
        self._gate = gate
        self._lock = threading.Lock()
        self._local = threading.local()  # each thread's _ThreadBuffer
        self._buffers: weakref.WeakSet[ReadAhead] = weakref.WeakSet()
        self._deadline = -math.inf  # _clock() at which the current seed is due
        self._scratch = memoryview(bytearray(SCRATCH_BYTES))
        self._scratch_lock = threading.Lock()
        self._drbg: CtrDrbg | None = None
        self._seed: SeedInfo | None = None
        self._reseeds = 0
        self._since_reseed = 0
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

    def counters(self) -> tuple[int, int, int, bool]:
        """Return (reseeds, DRBG bytes, raw bytes, seeded): :meth:`stats`' numbers,
        cheap enough to publish at every request's end."""
        return self._reseeds, self._bytes_out, self._raw_out, self._drbg is not None

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

    def hold(self, buffer: ReadAhead) -> None:
        """Hold output read ahead outside the engine (``quantumrng.numpy``'s buffer) to
        the thread buffers' rules: a seeding, a wipe or the byte budget running out sets
        its ``expires`` to -inf (stale), and a wipe or a fork calls its ``clear``."""
        with self._lock:
            self._buffers.add(buffer)

    def wipe(self) -> None:
        """Zero the DRBG state and every thread's unread buffered output; the next
        read reseeds.

        Every buffer is marked stale before any is zeroed, and a clear bumps
        the buffer's fill count before it zeroes; a small read checks that
        count again after copying, so a read racing the wipe throws its copy
        away instead of serving zeros.
        """
        with self._lock:
            self._wipe_locked()
            for buffer in list(self._buffers):
                buffer.clear()

    def _wipe_locked(self) -> None:
        self._stale_locked()
        if self._drbg is not None:
            self._drbg.wipe()
        self._drbg = None

    def _stale_locked(self) -> None:
        """Make every thread's buffered output stale: its next small read refills."""
        for buffer in list(self._buffers):
            buffer.expires = -math.inf

    def after_fork_in_child(self) -> None:
        """Wipe the DRBG and every buffer (``forksafe``). A parent thread may have held
        any lock: ours are replaced, and the DRBG is wiped by its own fork hook (called
        here too, whichever runs first), never through its lock."""
        self._lock = threading.Lock()
        self._scratch_lock = threading.Lock()
        self._scratch[:] = _SCRATCH_ZEROS
        self._stale_locked()
        if self._drbg is not None:
            self._drbg.after_fork_in_child()
        self._drbg = None
        for buffer in list(self._buffers):
            buffer.clear()

    # -- seeding ---------------------------------------------------------------

    def _take_block(self) -> Block:
        """One pool block to seed from, after the power-on self-test; ``NotSeeded``
        when the pool (refilled once if the engine can) has none."""
        selftest.power_on_selftest()  # SelfTestFailure: never seeded, nothing served
        if self._gate is not None:
            self._gate()  # e.g. SourceFailed: the source is stopped
        try:
            try:
                return self._pool.take(1, source=self._source)[0]
            except EntropyUnavailable:
                if self._refill is None:
                    raise
            self._refill()
            return self._pool.take(1, source=self._source)[0]
        except EntropyUnavailable:
            raise NotSeeded(
                "no entropy in the pool to seed the DRBG: run `qrng harvest` or wait "
                "for the harvester"
            ) from None

    def _personalization(self) -> bytes:
        return (
            f"quantumrng|{socket.gethostname()}|{os.getpid()}|"
            f"{threading.get_ident()}|{time.time_ns()}"
        ).encode()

    def reseed(self) -> None:
        """Reseed now from a fresh pool block and OS entropy (SP 800-90A §9.2).

        Raises ``SelfTestFailure`` if the power-on self-test failed and
        ``NotSeeded`` when the pool has no block.
        """
        block = self._take_block()
        with self._lock:
            self._install_locked(block)

    def _install_locked(self, block: Block) -> None:
        data = block.data
        entropy = bytearray(len(data) + OS_ENTROPY_BYTES)
        view = memoryview(entropy)  # a bytearray's slice assignment copies the value first
        try:
            view[: len(data)] = data
            view[len(data) :] = os.urandom(OS_ENTROPY_BYTES)
            if self._drbg is None:
                self._drbg = CtrDrbg(entropy, os.urandom(NONCE_BYTES), self._personalization())
            else:
                self._drbg.reseed(entropy, self._personalization())
        except BaseException:
            self._wipe_locked()
            raise
        finally:
            view[:] = _ZEROS[: len(entropy)]
        self._reseeds += 1
        self._since_reseed = 0
        self._deadline = _clock() + self._reseed_seconds
        self._seed = SeedInfo(block.provenance, block.credited_bits, time.time(), self._reseeds)
        self._stale_locked()

    def _due_locked(self) -> bool:
        return self._since_reseed >= self._reseed_bytes or _clock() >= self._deadline

    def _request(self, fill: Callable[[CtrDrbg], _T], size: int, *, fresh: bool = False) -> _T:
        """Run one SP 800-90A generate request of ``size`` bytes.

        The DRBG is reseeded first when it is missing or due, or always with
        ``fresh`` (prediction resistance): the block is taken outside the lock
        (it may harvest), then reseed and generate run under one lock hold. A
        DRBG that has dropped its state (a request failed in it) is replaced
        from a new block.
        """
        block = self._take_block() if fresh else None
        while True:
            with self._lock:
                installed = block is not None
                if block is not None:
                    self._install_locked(block)
                    block = None
                drbg = self._drbg
                if drbg is not None and (installed or not self._due_locked()):
                    try:
                        result = fill(drbg)
                    except NotSeeded:  # it dropped its state (a failed request) or is spent
                        self._wipe_locked()
                    else:
                        before = self._since_reseed
                        self._since_reseed = before + size
                        self._bytes_out += size
                        if before < self._reseed_bytes <= before + size:
                            self._stale_locked()  # the byte budget ran out: buffers too
                        return result
            block = self._take_block()

    # -- output ----------------------------------------------------------------

    def random_bytes(self, n: int, *, prediction_resistance: bool = False) -> bytes:
        """Return ``n`` bytes of DRBG output.

        Requests up to 4 KiB are cut from the calling thread's 64 KiB buffer
        of DRBG output (no lock on this hot path): the read position moves
        past the bytes before they are copied, and they are zeroed as they
        are handed out. A buffer filled under an older seed, or once a reseed
        is due, is not used: the read reseeds. With ``prediction_resistance``
        the buffer is bypassed and every 64 KiB generate call of the request
        is preceded by a reseed from a fresh pool block and OS entropy.
        """
        if 0 <= n <= SMALL_REQUEST_BYTES and not prediction_resistance:
            try:
                buffer: _ThreadBuffer = self._local.buffer
            except AttributeError:
                return self._refill_and_read(n)
            zeros = _SMALL_ZEROS[n]  # also refuses a length that is no integer, before a claim
            if zeros is None:
                zeros = _SMALL_ZEROS[n] = _ZEROS[:n]
            fills = buffer.fills
            pos = buffer.pos
            end = pos + n
            if end <= BUFFER_BYTES:
                # Claim the bytes before any call: in CPython no thread switch, signal
                # handler or finalizer runs between reading pos and this store (no call,
                # no backward jump), so a re-entrant read starts after them.
                buffer.pos = end
                view = buffer.view
                out = view[pos:end].tobytes()
                view[pos:end] = zeros
                # Served only if the buffer was not cleared or refilled under the copy,
                # and holds output of the current seed with no reseed due.
                if buffer.fills == fills and _clock() < buffer.expires:
                    return out
            return self._refill_and_read(n)
        if n < 0:
            raise ValueError("n must be non-negative")
        if n > SCRATCH_BYTES:
            buf = bytearray(n)
            self.random_into(buf, prediction_resistance=prediction_resistance)
            return bytes(buf)
        with self._scratch_lock:  # one allocation, as os.urandom makes
            view = self._scratch[:n]
            try:
                self.random_into(view, prediction_resistance=prediction_resistance)
                return view.tobytes()
            finally:
                view[:] = _SCRATCH_ZEROS[:n]

    def _refill_and_read(self, n: int) -> bytes:
        """The small-read slow path: drop what is left in the thread's buffer (spent,
        stale, due or raced), refill it with one generate request and read from it."""
        buffer: _ThreadBuffer | None = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = _ThreadBuffer()
            with self._lock:
                self._buffers.add(buffer)
        else:
            buffer.clear()  # what is left is never served, and not kept either
        return self._request(partial(self._refill_locked, buffer=buffer, n=n), BUFFER_BYTES)

    def _refill_locked(self, drbg: CtrDrbg, buffer: _ThreadBuffer, n: int) -> bytes:
        view = buffer.view  # cleared by the caller: a read racing the refill sees fills moved
        try:
            drbg.generate_into(view)
        except BaseException:
            buffer.pos = 0  # whatever the failed request wrote: zeroed, never served
            buffer.clear()
            raise
        buffer.expires = self._deadline
        buffer.pos = n
        out = view[:n].tobytes()
        view[:n] = _ZEROS[:n]
        return out

    def random_into(
        self, out: bytearray | memoryview, *, prediction_resistance: bool = False
    ) -> None:
        """Fill ``out`` with DRBG output, one SP 800-90A request per 64 KiB; with
        ``prediction_resistance`` each request is preceded by a fresh reseed."""
        view = memoryview(out).cast("B")
        start = 0
        for size in _request_sizes(len(view)):
            chunk = view[start : start + size]
            fill = partial(CtrDrbg.generate_into, out=chunk)
            self._request(fill, size, fresh=prediction_resistance)
            start += size

    def stream(
        self, n: int, chunk_bytes: int = 1 << 20, *, prediction_resistance: bool = False
    ) -> Iterator[bytes]:
        """Yield ``n`` bytes of DRBG output in chunks of at most ``chunk_bytes``."""
        left = n
        while left > 0:
            size = min(chunk_bytes, left)
            yield self.random_bytes(size, prediction_resistance=prediction_resistance)
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


class ReadAhead(Protocol):
    """Output read ahead from the engine: stale when ``expires`` is -inf; ``clear`` zeroes it."""

    expires: float

    def clear(self) -> None: ...


class _ThreadBuffer(ZeroingBuffer):
    """One thread's 64 KiB of DRBG output, served until ``expires`` (``_clock()``).

    Only its thread reads it. Under the engine's lock a refill sets
    ``expires`` to its seed's deadline, and a seeding, a wipe or the byte
    budget running out sets it to -inf (stale); ``Engine.wipe`` also clears it,
    from any thread. ``fills`` counts clears (every refill starts with one)
    and is bumped before the bytes change, so a read that copied while another
    thread or a re-entrant call cleared or refilled the buffer sees it moved
    and drops its copy.
    """

    __slots__ = ("expires", "fills")

    def __init__(self) -> None:
        self.expires = -math.inf
        self.fills = 0
        super().__init__(BUFFER_BYTES)

    def clear(self) -> None:
        """Zero what is left and mark it empty; a read in flight drops its copy."""
        self.fills += 1
        if self.pos < BUFFER_BYTES:
            super().clear()
