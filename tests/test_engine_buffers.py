"""The engine's thread buffers: stale once a reseed is due, cleared by a wipe in every
thread, and never the source of the same bytes twice or of zeros."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from quantumrng import engine as engine_module
from quantumrng.buffer import ZeroingBuffer
from quantumrng.engine import BUFFER_BYTES, SMALL_REQUEST_BYTES, Engine, _ThreadBuffer
from quantumrng.errors import NotSeeded
from quantumrng.pool.base import Pool
from tests.blocks import make_blocks


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(engine_module, "_clock", clock)
    return clock


def windows(chunks: list[bytes], size: int = 16) -> Iterator[bytes]:
    """Every ``size``-byte window of every chunk."""
    for chunk in chunks:
        for i in range(len(chunk) - size + 1):
            yield chunk[i : i + size]


def assert_served_once(chunks: list[bytes]) -> None:
    """No 16-byte window appears twice anywhere, and none is all zeros (nor a whole chunk)."""
    assert all(any(chunk) for chunk in chunks if chunk)
    seen = list(windows(chunks))
    assert bytes(16) not in seen
    assert len(set(seen)) == len(seen)


# -- stale once a reseed is due ------------------------------------------------------


def test_a_buffer_goes_stale_when_the_time_budget_runs_out(memory_pool: Pool, clock: Clock) -> None:
    memory_pool.put(make_blocks(2))
    engine = Engine(memory_pool, source="os", reseed_seconds=60)
    engine.random_bytes(16)
    clock.now += 59.9
    engine.random_bytes(16)  # still the first seed, from the buffer
    assert engine.seed_info is not None and engine.seed_info.reseeds == 1
    clock.now += 0.1
    engine.random_bytes(16)
    assert engine.seed_info.reseeds == 2  # the small read reseeded
    assert engine._local.buffer.pos == 16  # and was served from a buffer of the new seed


def test_a_slow_reader_gets_not_seeded_never_old_bytes(memory_pool: Pool, clock: Clock) -> None:
    memory_pool.put(make_blocks(1))
    engine = Engine(memory_pool, source="os", reseed_seconds=60)
    engine.random_bytes(16)
    buffer = engine._local.buffer
    assert buffer.left == BUFFER_BYTES - 16
    clock.now += 3600
    for _ in range(2):
        with pytest.raises(NotSeeded):
            engine.random_bytes(16)
    assert bytes(buffer.view) == bytes(BUFFER_BYTES)  # the unread rest is gone, not kept
    memory_pool.put(make_blocks(1))
    assert len(engine.random_bytes(16)) == 16


def test_a_buffer_goes_stale_when_the_byte_budget_runs_out(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(3))
    engine = Engine(memory_pool, source="os", reseed_bytes=3 * BUFFER_BYTES)
    engine.random_bytes(16)  # this thread's buffer: the first 64 KiB of the budget
    engine.random_bytes(2 * BUFFER_BYTES)  # the rest of the budget, by a large read
    assert engine.seed_info is not None and engine.seed_info.reseeds == 1
    engine.random_bytes(16)  # the buffer still holds 64 KiB - 16, but the seed is spent
    assert engine.seed_info.reseeds == 2


def test_another_threads_buffer_goes_stale_when_the_byte_budget_runs_out(
    memory_pool: Pool,
) -> None:
    memory_pool.put(make_blocks(1))
    engine = Engine(memory_pool, source="os", reseed_bytes=2 * BUFFER_BYTES)
    ready, spent, done = threading.Event(), threading.Event(), threading.Event()
    result: list[object] = []

    def slow_reader() -> None:
        engine.random_bytes(16)
        ready.set()
        spent.wait()
        try:
            result.append(engine.random_bytes(16))
        except NotSeeded as exc:
            result.append(exc)
        done.set()

    thread = threading.Thread(target=slow_reader)
    thread.start()
    ready.wait()
    engine.random_bytes(BUFFER_BYTES)  # uses up the budget; the pool is dry
    spent.set()
    done.wait()
    thread.join()
    assert isinstance(result[0], NotSeeded)


def test_a_reseed_makes_every_threads_buffer_stale(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(3))
    engine = Engine(memory_pool, source="os")
    buffers = []

    def read() -> None:
        engine.random_bytes(8)
        buffers.append(engine._local.buffer)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    engine.random_bytes(8)
    buffers.append(engine._local.buffer)
    engine.reseed()
    assert [b.expires for b in buffers] == [-float("inf")] * 2


# -- wipe ------------------------------------------------------------------------------


def test_wipe_zeroes_every_threads_unread_output(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(2))
    engine = Engine(memory_pool, source="os")
    started, finish = threading.Event(), threading.Event()
    views = []

    def reader() -> None:
        engine.random_bytes(8)
        views.append(engine._local.buffer.view)
        started.set()
        finish.wait()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        started.wait()
        engine.random_bytes(8)
        views.append(engine._local.buffer.view)
        assert all(bytes(v[8:]) != bytes(BUFFER_BYTES - 8) for v in views)
        engine.wipe()
        assert all(bytes(v) == bytes(BUFFER_BYTES) for v in views)  # the live thread's too
    finally:
        finish.set()
        thread.join()
    assert not engine.seeded


# -- the fast path, interrupted after it claimed its bytes -----------------------------


class Interruptible(_ThreadBuffer):
    """A thread buffer that runs ``action`` once, the next time a read takes its view: in a
    small read that is after it claimed its bytes and before it copies them, where a signal
    handler, a finalizer or another thread could run."""

    __slots__ = ("action",)

    def __init__(self) -> None:
        self.action: Callable[[], object] | None = None
        super().__init__()

    @property  # type: ignore[override]
    def view(self) -> memoryview:
        action, self.action = self.action, None
        if action is not None:
            action()
        return ZeroingBuffer.view.__get__(self)  # type: ignore[attr-defined,no-any-return]

    @view.setter
    def view(self, value: memoryview) -> None:
        ZeroingBuffer.view.__set__(self, value)  # type: ignore[attr-defined]


def interruptible(engine: Engine) -> Interruptible:
    """Give the calling thread an interruptible buffer, filled by a first read."""
    buffer = Interruptible()
    engine._local.buffer = buffer
    engine._buffers.add(buffer)
    engine.random_bytes(16)
    assert buffer.pos == 16
    return buffer


@pytest.mark.parametrize("inner", [16, SMALL_REQUEST_BYTES])
def test_a_re_entrant_read_never_gets_the_same_bytes(memory_pool: Pool, inner: int) -> None:
    memory_pool.put(make_blocks(2))
    engine = Engine(memory_pool, source="os")
    buffer = interruptible(engine)
    buffer.pos = BUFFER_BYTES - 4000  # near the end: a 4 KiB read refills
    got: list[bytes] = []
    buffer.action = lambda: got.append(engine.random_bytes(inner))
    got.append(engine.random_bytes(64))
    assert [len(g) for g in got] == [inner, 64]
    got += [engine.random_bytes(64) for _ in range(BUFFER_BYTES // 64)]  # all that follows
    assert_served_once(got)


@pytest.mark.parametrize("refill", [True, False], ids=["pool-refilled", "pool-dry"])
def test_a_wipe_between_claim_and_copy_never_serves_zeros(memory_pool: Pool, refill: bool) -> None:
    memory_pool.put(make_blocks(1))
    engine = Engine(memory_pool, source="os")
    buffer = interruptible(engine)

    def wipe() -> None:
        engine.wipe()
        if refill:
            memory_pool.put(make_blocks(1))

    buffer.action = wipe
    if not refill:
        with pytest.raises(NotSeeded):
            engine.random_bytes(64)
        assert bytes(ZeroingBuffer.view.__get__(buffer)) == bytes(BUFFER_BYTES)  # type: ignore[attr-defined]
        return
    got = [engine.random_bytes(64)]
    assert engine.seed_info is not None and engine.seed_info.reseeds == 2
    got += [engine.random_bytes(64) for _ in range(BUFFER_BYTES // 64)]
    assert_served_once(got)


def test_threads_reading_while_another_wipes_and_reseeds_get_each_byte_once(
    memory_pool: Pool,
) -> None:
    memory_pool.put(make_blocks(1500))
    engine = Engine(memory_pool, source="os")
    stop = threading.Event()
    outputs: list[list[bytes]] = []
    errors: list[BaseException] = []

    def reader(seed: int) -> None:
        local: list[bytes] = []
        outputs.append(local)
        sizes = [16, 17, 31, 64, 100, 16]
        i = seed
        while not stop.is_set() or len(local) < 200:
            try:
                local.append(engine.random_bytes(sizes[i % len(sizes)]))
            except NotSeeded as exc:  # only if the pool ran dry: never expected here
                errors.append(exc)
                return
            i += 1
            if len(local) >= 3000:
                return

    def disturber() -> None:
        for i in range(120):
            if i % 3 == 0:
                engine.wipe()
            else:
                engine.reseed()
        stop.set()

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads as often as possible
    try:
        threads = [threading.Thread(target=reader, args=(s,)) for s in range(6)]
        threads.append(threading.Thread(target=disturber))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert errors == []
    chunks = [chunk for local in outputs for chunk in local]
    assert len(chunks) >= 6 * 200
    assert_served_once(chunks)
    assert engine.seed_info is not None and engine.seed_info.reseeds > 80
