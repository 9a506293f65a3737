"""The NumPy front end: numpy sees the source's bytes in order, once, and its errors."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from quantumrng import numpy as qnumpy
from quantumrng.client import Client
from quantumrng.engine import Engine
from quantumrng.errors import NotSeeded, Unavailable
from quantumrng.pool import open_pool
from quantumrng.pool.memory import MemoryPool
from tests.blocks import make_blocks
from tests.conftest import make_settings
from tests.server.process import Server, free_port, run_server

P_FLOOR = 1e-4  # a sound generator fails a test below this once in 10,000 runs


class CountingStream:
    """A deterministic byte source: SHA-256 in counter mode, remembering what it gave."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.given = bytearray()
        self.fills = 0
        self.fail_after = fail_after

    def expected(self, n: int) -> bytes:
        out = bytearray()
        i = 0
        while len(out) < n:
            out += hashlib.sha256(i.to_bytes(8, "little")).digest()
            i += 1
        return bytes(out[:n])

    def fill(self, view: memoryview) -> None:
        if self.fail_after is not None and self.fills >= self.fail_after:
            raise Unavailable("the source stopped")
        self.fills += 1
        start = len(self.given)
        chunk = self.expected(start + len(view))[start:]
        view[:] = chunk
        self.given += chunk


def biased_fill(view: memoryview) -> None:
    """A flawed source: each byte the smaller of two uniform bytes."""
    a = numpy.frombuffer(os.urandom(len(view)), numpy.uint8)
    b = numpy.frombuffer(os.urandom(len(view)), numpy.uint8)
    view[:] = numpy.minimum(a, b).tobytes()


def urandom_fill(view: memoryview) -> None:
    view[:] = os.urandom(len(view))


@pytest.fixture
def engine() -> Engine:
    pool = MemoryPool()
    pool.put(make_blocks(8))
    return Engine(pool, source="os")


# -- the bits numpy sees ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(block_words=st.integers(1, 40), n=st.integers(0, 300))
def test_raw_words_are_the_source_bytes_in_order_across_refills(block_words: int, n: int) -> None:
    stream = CountingStream()
    bits = qnumpy.from_fill(stream.fill, block_bytes=8 * block_words)
    words = bits.random_raw(n)
    assert words.tobytes() == stream.expected(8 * n)
    assert numpy.array_equal(words, numpy.frombuffer(stream.expected(8 * n), "<u8"))


def test_32_and_64_bit_draws_share_one_stream_with_nothing_skipped() -> None:
    stream = CountingStream()
    bits = qnumpy.from_fill(stream.fill, block_bytes=16)
    interface = bits.ctypes
    got = b""
    for width in (32, 64, 64, 32, 32, 64, 32, 64, 64):
        if width == 32:
            got += int(interface.next_uint32(interface.state)).to_bytes(4, "little")
        else:
            got += int(interface.next_uint64(interface.state)).to_bytes(8, "little")
    assert got == stream.expected(len(got))


def test_doubles_are_the_top_53_bits_of_each_word() -> None:
    stream = CountingStream()
    values = numpy.random.Generator(qnumpy.from_fill(stream.fill, block_bytes=64)).random(50)
    words = numpy.frombuffer(stream.expected(8 * 50), "<u8")
    assert numpy.array_equal(values, (words >> numpy.uint64(11)) * (1.0 / 2**53))


def test_words_are_zeroed_in_the_buffer_as_numpy_reads_them() -> None:
    bits = qnumpy.from_fill(urandom_fill, block_bytes=1024)
    bits.random_raw(10)
    buffered = numpy.frombuffer(bits._feed._data, numpy.uint64)
    assert not buffered[:10].any()
    assert buffered[10:].all()  # the unread rest is still there, 118 random words


def test_engine_gives_whole_blocks_and_numpy_uses_what_it_drew(engine: Engine) -> None:
    bits = qnumpy.bit_generator(engine=engine, block_bytes=4096)
    before = engine.counters()[1]
    bits.random_raw(1000)  # 8000 bytes: two blocks, 192 bytes left in the second
    assert bits.bytes_used == 8000
    assert bits.bytes_drawn == 8192 == engine.counters()[1] - before
    bits.random_raw(24)
    assert (bits.bytes_used, bits.bytes_drawn) == (8192, 8192)
    bits.random_raw(1)
    assert bits.bytes_drawn == 12288 == engine.counters()[1] - before


def test_a_wipe_zeroes_what_is_buffered_and_the_next_draw_takes_fresh_output(
    engine: Engine,
) -> None:
    bits = qnumpy.bit_generator(engine=engine, block_bytes=4096)
    bits.random_raw(10)
    buffered = numpy.frombuffer(bits._feed._data, numpy.uint64)
    assert buffered[10:].all()
    engine.wipe()
    assert not buffered.any()  # zeroed at the wipe, not at the next draw
    drawn = bits.bytes_drawn
    assert bits.random_raw(1) != 0
    assert bits.bytes_drawn == drawn + 4096  # a new block from the reseeded engine


def test_a_reseed_makes_what_is_buffered_stale(engine: Engine) -> None:
    bits = qnumpy.bit_generator(engine=engine, block_bytes=4096)
    bits.random_raw(10)
    drawn = bits.bytes_drawn
    engine.reseed()
    bits.random_raw(1)
    assert bits.bytes_drawn == drawn + 4096  # the old seed's read-ahead was dropped
    bits.random_raw(1)
    assert bits.bytes_drawn == drawn + 4096


def test_threads_drawing_at_once_get_every_word_once() -> None:
    stream = CountingStream()
    rng = numpy.random.Generator(qnumpy.from_fill(stream.fill, block_bytes=512))
    drawn: list[numpy.ndarray] = []

    def draw() -> None:
        for _ in range(20):
            drawn.append(rng.integers(0, 2**64, 500, dtype=numpy.uint64))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    words = numpy.sort(numpy.concatenate(drawn))
    assert numpy.array_equal(
        words, numpy.sort(numpy.frombuffer(stream.expected(8 * 40_000), "<u8"))
    )


def test_there_is_no_state_to_save_or_seed() -> None:
    bits = qnumpy.from_fill(urandom_fill)
    with pytest.raises(NotImplementedError):
        _ = bits.state


@pytest.mark.parametrize("block_bytes", [0, 4, 12, 1 << 31])
def test_block_sizes_that_are_not_whole_words_are_refused(block_bytes: int) -> None:
    with pytest.raises(ValueError, match="block_bytes"):
        qnumpy.from_fill(urandom_fill, block_bytes=block_bytes)


def test_one_source_at_a_time(engine: Engine) -> None:
    with pytest.raises(ValueError, match="at most one"):
        qnumpy.generator(engine=engine, client=Client("http://127.0.0.1:1"))


# -- distribution -------------------------------------------------------------------------


def six_sided_chi_square(draw: Callable[[], numpy.ndarray]) -> float:
    counts = numpy.bincount(draw(), minlength=6)
    return float(stats.chisquare(counts).pvalue)


def uniform_ks(draw: Callable[[], numpy.ndarray]) -> float:
    return float(stats.kstest(draw(), "uniform").pvalue)


def test_engine_integers_and_floats_pass_chi_square_and_ks(engine: Engine) -> None:
    rng = qnumpy.generator(engine=engine)
    assert six_sided_chi_square(lambda: rng.integers(0, 6, 60_000)) > P_FLOOR
    assert uniform_ks(lambda: rng.random(20_000)) > P_FLOOR


def test_the_same_tests_reject_a_biased_source() -> None:
    rng = numpy.random.Generator(qnumpy.from_fill(biased_fill, block_bytes=4096))
    assert six_sided_chi_square(lambda: rng.integers(0, 6, 60_000)) < P_FLOOR
    assert uniform_ks(lambda: rng.random(20_000)) < P_FLOOR


# -- errors -------------------------------------------------------------------------------


def test_an_unseeded_engine_raises_not_seeded_and_serves_nothing() -> None:
    rng = qnumpy.generator(engine=Engine(MemoryPool(), source="os"))
    with pytest.raises(NotSeeded):
        rng.random(10)
    with pytest.raises(NotSeeded):  # again: the lock was released, nothing was kept
        rng.integers(0, 6)
    with pytest.raises(NotSeeded):
        rng.bit_generator.random_raw(1)


@pytest.mark.parametrize(
    "draw",
    [
        lambda rng: rng.random(5000),
        lambda rng: rng.integers(0, 6, 5000),
        lambda rng: rng.standard_normal(5000),
        lambda rng: rng.standard_gamma(0.5, 5000),
        lambda rng: rng.permutation(5000),
        lambda rng: rng.random(),
    ],
    ids=["random", "integers", "normal", "gamma", "permutation", "scalar"],
)
def test_a_failure_in_the_middle_of_a_draw_raises_from_that_draw(
    draw: Callable[[numpy.random.Generator], object],
) -> None:
    stream = CountingStream(fail_after=1)
    rng = numpy.random.Generator(qnumpy.from_fill(stream.fill, block_bytes=64))
    rng.bit_generator.random_raw(8)  # the one good block, used up
    with pytest.raises(Unavailable, match="stopped"):
        draw(rng)
    assert rng.bit_generator.lock._lock.acquire(blocking=False)


def test_a_source_that_recovers_serves_its_next_bytes_after_the_error() -> None:
    stream = CountingStream(fail_after=1)
    bits = qnumpy.from_fill(stream.fill, block_bytes=64)
    bits.random_raw(8)
    with pytest.raises(Unavailable):
        bits.random_raw(8)
    stream.fail_after = None
    assert bits.random_raw(8).tobytes() == stream.expected(128)[64:]


# -- fork ---------------------------------------------------------------------------------


def test_a_forked_child_wipes_the_parents_buffer_and_draws_its_own(tmp_path: Path) -> None:
    pool = open_pool(make_settings(tmp_path, pool="sqlite", source="os"))
    pool.put(make_blocks(4))
    bits = qnumpy.bit_generator(engine=Engine(pool, source="os"), block_bytes=4096)
    bits.random_raw(4)  # 508 words left in the buffer
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            inherited = bytes(bits._feed._data)
            os.write(write_fd, bytes([not any(inherited)]) + bits.random_raw(8).tobytes())
        finally:
            os._exit(0)
    os.close(write_fd)
    child = os.read(read_fd, 65)
    os.close(read_fd)
    os.waitpid(pid, 0)
    parent = bits.random_raw(8).tobytes()
    assert child[0] == 1  # the child found the buffer zeroed
    assert len(child[1:]) == 64 and child[1:] != parent
    pool.close()


# -- remote -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("numpy")) as running:
        yield running


def test_a_generator_over_the_service_draws_in_blocks(server: Server) -> None:
    with Client(server.base_url) as client:
        rng = qnumpy.generator(client=client, block_bytes=64 * 1024)
        values = rng.random(20_000)  # 160,000 bytes: three requests
        assert rng.bit_generator.bytes_drawn == 3 * 64 * 1024
        assert ((values >= 0) & (values < 1)).all()
        assert uniform_ks(lambda: values) > P_FLOOR
        assert six_sided_chi_square(lambda: rng.integers(0, 6, 30_000)) > P_FLOOR
        used = rng.bit_generator.bytes_used
        assert used >= 160_000 + 4 * 30_000  # 32 bits an integer, more when one is rejected
        assert rng.bit_generator.bytes_drawn == -(-used // (64 * 1024)) * 64 * 1024


def test_a_service_that_does_not_answer_raises_unavailable() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        rng = qnumpy.generator(client=client)
        with pytest.raises(Unavailable):
            rng.random(10)
