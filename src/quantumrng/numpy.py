"""NumPy front end: a ``numpy.random.Generator`` whose bits come from QuantumRNG.

``generator()`` draws from the local engine (the library's default node, or
the node of ``settings``), ``generator(client=Client(...))`` from a server's
``/api/v2/bytes``. There is no seed: output is not reproducible, like
``random.SystemRandom``. For a reproducible stream seed numpy's own
``PCG64`` with bytes from us (``numpy.random.default_rng(int.from_bytes(token_bytes(32)))``).

How the bits reach numpy: numpy calls a bit generator's C functions once per
32 or 64 bits, inside its loops, with the GIL released. Those functions are
numba ``cfunc``\\s (compiled once, cached on disk) reading a buffer of
``block_bytes`` engine output front to back and zeroing each word as they
hand it out (invariant 7, the spirit of ``buffer.ZeroingBuffer``). When the
buffer runs dry they call back into Python once per block to refill it in
place from the engine or the service.

Errors are never swallowed (invariant 5): a refill that fails records its
exception and the C functions switch to throw-away output until numpy's call
returns. numpy takes the bit generator's ``lock`` around every draw, and
ours raises the recorded error as the call leaves it, so the values computed
from the throw-away output never reach the caller (arrays passed as ``out=``
or to ``shuffle`` are left overwritten). A forked child wipes the buffer it
inherited and refills from its own engine (``forksafe``).
"""

from __future__ import annotations

import ctypes
import functools
import math
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import numba
import numpy
from llvmlite import ir
from numba import types
from numba.extending import intrinsic
from numba.np.numpy_support import carray as _carray
from randomgen import UserBitGenerator

from quantumrng import forksafe

if TYPE_CHECKING:
    from quantumrng.client import Client
    from quantumrng.config import Settings
    from quantumrng.engine import Engine

__all__ = ["DEFAULT_BLOCK_BYTES", "QuantumBitGenerator", "bit_generator", "generator"]

DEFAULT_BLOCK_BYTES: Final = 1 << 18  # bytes per refill: one Python call per 256 KiB of draws
MAX_BLOCK_BYTES: Final = 1 << 30  # the server's default max_bytes

Fill = Callable[[memoryview], None]

# The state the C functions see: a uint64 array, this header then the buffer.
_POS: Final = 0  # next unread 32-bit word of the buffer
_END: Final = 1  # 32-bit words the buffer holds
_DISCARD: Final = 2  # nonzero after a failed refill: a counter for throw-away output
_REFILL: Final = 3  # address of the refill callback
_HEADER_WORDS: Final = 4  # uint64
_DATA: Final = 2 * _HEADER_WORDS  # the buffer's first 32-bit word

_REFILL_TYPE: Final = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_FEEDS: weakref.WeakValueDictionary[int, _Feed] = weakref.WeakValueDictionary()


def _refill_from_c(address: int | None) -> None:
    """The refill callback: numpy's loop ran out of buffered bits (GIL taken by ctypes)."""
    feed = _FEEDS.get(address or 0)
    if feed is not None:
        feed.refill()


_refill_callback: Final = _REFILL_TYPE(_refill_from_c)


# -- the C-level bit generator (numba) -------------------------------------------

carray: Any = _carray  # typed by numba, not by its stubs


def _call_refill_typing(typingctx: Any, address: Any, state: Any) -> Any:
    """Call the function at ``address`` with ``state``: the address is read from the
    state at run time, never compiled in, so the compiled code can be cached."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        target, argument = args
        function_type = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
        builder.call(builder.inttoptr(target, function_type.as_pointer()), [argument])
        return context.get_dummy_value()

    return types.void(types.uint64, types.voidptr), codegen


_call_refill: Any = intrinsic(_call_refill_typing)


def _throwaway(header: Any) -> Any:
    """Output after a failed refill: never returned to the caller (the lock raises),
    but varying (splitmix64 of a counter), so numpy's rejection loops still end."""
    counter = header[_DISCARD] + numpy.uint64(0x9E3779B97F4A7C15)
    header[_DISCARD] = counter
    z = (counter ^ (counter >> numpy.uint64(30))) * numpy.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> numpy.uint64(27))) * numpy.uint64(0x94D049BB133111EB)
    return z ^ (z >> numpy.uint64(31))


def _next32_slow(state: Any) -> Any:
    header = carray(state, _HEADER_WORDS, dtype=numpy.uint64)
    if header[_DISCARD] == 0:
        _call_refill(header[_REFILL], state)
    pos = numpy.int64(header[_POS])
    end = numpy.int64(header[_END])
    if pos >= end:
        if header[_DISCARD] == 0:
            header[_DISCARD] = 1
        return numpy.uint32(_throwaway_jit(header) >> numpy.uint64(32))
    words = carray(state, _DATA + end, dtype=numpy.uint32)
    value = words[_DATA + pos]
    words[_DATA + pos] = 0
    header[_POS] = pos + 1
    return value


def _next32(state: Any) -> Any:
    header = carray(state, _HEADER_WORDS, dtype=numpy.uint64)
    pos = numpy.int64(header[_POS])
    end = numpy.int64(header[_END])
    if pos < end:
        words = carray(state, _DATA + end, dtype=numpy.uint32)
        value = words[_DATA + pos]
        words[_DATA + pos] = 0
        header[_POS] = pos + 1
        return value
    return _next32_slow_jit(state)


def _next64(state: Any) -> Any:
    header = carray(state, _HEADER_WORDS, dtype=numpy.uint64)
    pos = numpy.int64(header[_POS])
    end = numpy.int64(header[_END])
    if pos + 2 <= end:
        words = carray(state, _DATA + end, dtype=numpy.uint32)
        low = numpy.uint64(words[_DATA + pos])
        high = numpy.uint64(words[_DATA + pos + 1])
        words[_DATA + pos] = 0
        words[_DATA + pos + 1] = 0
        header[_POS] = pos + 2
        return low | (high << numpy.uint64(32))
    low = numpy.uint64(_next32_jit(state))
    return low | (numpy.uint64(_next32_jit(state)) << numpy.uint64(32))


def _next_double(state: Any) -> Any:
    """53 bits to [0, 1), as numpy's own bit generators do."""
    return numpy.float64(_next64_jit(state) >> numpy.uint64(11)) * (1.0 / 9007199254740992.0)


_throwaway_jit = numba.njit(cache=True)(_throwaway)
_next32_slow_jit = numba.njit(cache=True)(_next32_slow)
_next32_jit = numba.njit(cache=True, inline="always")(_next32)
_next64_jit = numba.njit(cache=True, inline="always")(_next64)


@functools.cache
def _kernels() -> tuple[Any, Any, Any]:
    """Compile (or load from numba's cache) the three C functions, once per process."""
    next64 = numba.cfunc(types.uint64(types.voidptr), cache=True)(_next64)
    next32 = numba.cfunc(types.uint32(types.voidptr), cache=True)(_next32)
    next_double = numba.cfunc(types.double(types.voidptr), cache=True)(_next_double)
    return next64, next32, next_double


# -- the Python side ----------------------------------------------------------------


class _Feed:
    """The buffer the C functions read, its refills, and the lock numpy holds.

    numpy reads ``bit_generator.lock`` and enters it around each draw; on the
    way out it raises the error of a refill that failed inside the draw.
    """

    def __init__(self, fill: Fill, block_bytes: int) -> None:
        self._fill = fill
        self._block_bytes = block_bytes
        self._state = numpy.zeros(_HEADER_WORDS + block_bytes // 8, dtype=numpy.uint64)
        self._header = self._state[:_HEADER_WORDS]
        self._data = memoryview(self._state[_HEADER_WORDS:].data).cast("B")
        self._words = block_bytes // 4
        self._header[_POS] = self._header[_END] = self._words  # empty until the first draw
        self._header[_REFILL] = ctypes.cast(_refill_callback, ctypes.c_void_p).value or 0
        self._lock = threading.RLock()
        self._error: BaseException | None = None
        self.expires = math.inf  # -inf: stale (the engine reseeded or was wiped)
        self.bytes_drawn = 0
        self.address = int(self._state.ctypes.data)
        _FEEDS[self.address] = self
        forksafe.register(self)

    @property
    def bytes_used(self) -> int:
        """Bytes numpy has read from the buffer so far."""
        unread = int(self._header[_END]) - int(self._header[_POS])
        return self.bytes_drawn - 4 * max(unread, 0)

    def refill(self) -> None:
        """Fill the buffer from the byte source; on failure record the error (it is
        raised as numpy's call leaves the lock) and leave the buffer empty."""
        try:
            self._fill(self._data)
        except BaseException as exc:  # raised again by __exit__
            self._data[:] = bytes(len(self._data))
            self._error = exc
            self._header[_DISCARD] = 1
            return
        self.bytes_drawn += self._block_bytes
        self.expires = math.inf
        self._header[_END] = self._words
        self._header[_POS] = 0

    def _empty(self) -> None:
        self._data[:] = bytes(len(self._data))
        self._header[_POS] = self._header[_END] = self._words
        self._header[_DISCARD] = 0

    def clear(self) -> None:
        """Zero what is left (``Engine.wipe``); a draw in progress finishes first, and
        then finds the buffer stale and drops it."""
        self.expires = -math.inf
        if self._lock.acquire(blocking=False):
            try:
                self._empty()
            finally:
                self._lock.release()

    def __enter__(self) -> None:
        self._lock.acquire()
        if self.expires == -math.inf:  # read ahead under a seed since replaced or wiped
            self._empty()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            error, self._error = self._error, None
            if error is not None:
                self._empty()
                raise error
        finally:
            self._lock.release()

    def after_fork_in_child(self) -> None:
        """Wipe what the parent had read ahead (``forksafe``); the lock may be held."""
        self._lock = threading.RLock()
        self._error = None
        self._empty()

    def __del__(self) -> None:
        self._data[:] = bytes(len(self._data))

    def __repr__(self) -> str:  # never show the bytes
        return f"_Feed(block_bytes={self._block_bytes})"


class QuantumBitGenerator(UserBitGenerator):  # type: ignore[misc]
    """A numpy bit generator over QuantumRNG bytes; build it with :func:`bit_generator`.

    Unseedable and without a state to save: ``state`` raises ``NotImplementedError``.
    Draws through the ``ctypes``/``cffi`` interfaces bypass ``lock``: they are not
    thread-safe, and a refill error they meet is raised by the next numpy draw.
    Up to ``block_bytes`` are read ahead; over an engine the buffer follows the
    engine's thread buffers (``Engine.hold``): a reseed or a wipe makes what is left
    stale (dropped at the next draw), and a wipe zeroes it.
    """

    _feed: _Feed

    @property
    def lock(self) -> _Feed:
        """The lock numpy's ``Generator`` holds around every draw; it raises refill errors."""
        return self._feed

    @property
    def block_bytes(self) -> int:
        """Bytes fetched per refill."""
        return self._feed._block_bytes

    @property
    def bytes_drawn(self) -> int:
        """Bytes taken from the source so far (whole blocks)."""
        return self._feed.bytes_drawn

    @property
    def bytes_used(self) -> int:
        """Bytes handed to numpy so far; the rest of ``bytes_drawn`` is buffered."""
        return self._feed.bytes_used

    def random_raw(self, size: Any = None, output: bool = True) -> Any:
        """Return raw 64-bit words, the buffered bytes read as little-endian uint64."""
        with self._feed:
            return super().random_raw(size, output)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(block_bytes={self.block_bytes})"


def from_fill(fill: Fill, *, block_bytes: int = DEFAULT_BLOCK_BYTES) -> QuantumBitGenerator:
    """Return a bit generator reading ``fill``'s bytes in order, ``block_bytes`` a call.

    ``fill(view)`` must fill the whole memoryview or raise. Low level: for
    byte sources other than the engine and the client (tests, custom pipelines).
    """
    if not isinstance(block_bytes, int) or not 8 <= block_bytes <= MAX_BLOCK_BYTES:
        raise ValueError(f"block_bytes must be an integer in [8, {MAX_BLOCK_BYTES}]")
    if block_bytes % 8:
        raise ValueError("block_bytes must be a multiple of 8")
    next64, next32, next_double = _kernels()
    feed = _Feed(fill, block_bytes)
    bits: QuantumBitGenerator = QuantumBitGenerator.from_cfunc(
        next64, next64, next32, next_double, ctypes.c_void_p(feed.address)
    )
    bits._feed = feed
    return bits


def _source(
    client: Client | None, settings: Settings | None, engine: Engine | None
) -> tuple[Fill, Engine | None]:
    """The byte source: the service's byte stream, or an engine's DRBG (and the engine)."""
    if sum(x is not None for x in (client, settings, engine)) > 1:
        raise ValueError("give at most one of client, settings and engine")
    if client is not None:
        remote = client

        def fill_remote(view: memoryview) -> None:
            view[:] = remote.bytes(len(view))

        return fill_remote, None
    if engine is None:
        if settings is None:
            from quantumrng.library import default_engine

            engine = default_engine()
        else:
            from quantumrng.node import Node

            engine = Node(settings).engine
    return engine.random_into, engine


def bit_generator(
    *,
    client: Client | None = None,
    settings: Settings | None = None,
    engine: Engine | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> QuantumBitGenerator:
    """Return a numpy bit generator drawing ``block_bytes`` at a time from QuantumRNG.

    From ``client`` (a :class:`quantumrng.client.Client`) when given, else from
    ``engine``, else from a node built from ``settings``, else from the
    library's default engine. Not seedable, not reproducible.
    """
    fill, source_engine = _source(client, settings, engine)
    bits = from_fill(fill, block_bytes=block_bytes)
    if source_engine is not None:
        source_engine.hold(bits._feed)
    return bits


def generator(
    *,
    client: Client | None = None,
    settings: Settings | None = None,
    engine: Engine | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> numpy.random.Generator:
    """Return a ``numpy.random.Generator`` over :func:`bit_generator`'s bits.

    Errors of the engine or the service (``NotSeeded``, ``Unavailable``, ...)
    are raised by the draw that needed the bytes; nothing weaker is served.
    """
    bits = bit_generator(client=client, settings=settings, engine=engine, block_bytes=block_bytes)
    return numpy.random.Generator(bits)
