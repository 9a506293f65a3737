"""The engine: seeding from the pool, reseed budget, fork safety, raw output."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from quantumrng import engine as engine_module
from quantumrng.engine import BUFFER_BYTES, Engine
from quantumrng.errors import EntropyUnavailable, NotSeeded
from quantumrng.pool import open_pool
from quantumrng.pool.base import Pool
from tests.blocks import make_blocks
from tests.conftest import make_settings


def test_engine_without_pool_entropy_fails_closed(memory_pool: Pool) -> None:
    engine = Engine(memory_pool, source="os")
    with pytest.raises(NotSeeded):
        engine.random_bytes(16)
    with pytest.raises(NotSeeded):
        engine.random_bytes(1 << 20)
    assert not engine.seeded


def test_engine_seeds_from_exactly_one_block(memory_pool: Pool) -> None:
    blocks = make_blocks(3)
    memory_pool.put(blocks)
    engine = Engine(memory_pool, source="os")
    out = engine.random_bytes(32)
    assert len(out) == 32
    assert memory_pool.level().blocks == 2
    info = engine.seed_info
    assert info is not None and info.provenance == blocks[0].provenance
    assert info.credited_bits == 512 and info.reseeds == 1


def test_engine_seeds_only_from_its_source(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(2, source="simulator", credited_bits=0))
    engine = Engine(memory_pool, source="os")
    with pytest.raises(NotSeeded):
        engine.random_bytes(8)
    assert memory_pool.level().blocks == 2


def test_same_pool_block_gives_different_output(memory_pool: Pool) -> None:
    """A reader of the pool cannot predict output: OS entropy is mixed in."""
    block = make_blocks(1)[0]
    memory_pool.put([block, block])
    a = Engine(memory_pool, source="os").random_bytes(64)
    b = Engine(memory_pool, source="os").random_bytes(64)
    assert a != b


def test_refill_called_when_pool_empty(memory_pool: Pool) -> None:
    calls = []

    def refill() -> None:
        calls.append(1)
        memory_pool.put(make_blocks(1))

    engine = Engine(memory_pool, source="os", refill=refill)
    assert len(engine.random_bytes(10)) == 10
    assert calls == [1]


@pytest.mark.parametrize("n", [0, 1, 63, 64, 4096, 4097, BUFFER_BYTES, BUFFER_BYTES + 1, 300_001])
def test_random_bytes_length(memory_pool: Pool, n: int) -> None:
    memory_pool.put(make_blocks(2))
    engine = Engine(memory_pool, source="os")
    assert len(engine.random_bytes(n)) == n


def test_negative_length_rejected(memory_pool: Pool) -> None:
    engine = Engine(memory_pool, source="os")
    with pytest.raises(ValueError):
        engine.random_bytes(-1)


@pytest.mark.parametrize("n", [3.0, "3", None])
def test_a_length_that_is_no_int_is_refused_and_leaves_the_buffer_usable(
    memory_pool: Pool, n: object
) -> None:
    memory_pool.put(make_blocks(1))
    engine = Engine(memory_pool, source="os")
    first = engine.random_bytes(16)
    with pytest.raises(TypeError):
        engine.random_bytes(n)  # type: ignore[arg-type]
    assert engine._local.buffer.pos == 16
    assert engine.random_bytes(16) != first


def test_consumed_buffer_is_wiped(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(1))
    engine = Engine(memory_pool, source="os")
    engine.random_bytes(100)
    view = engine._local.buffer.view
    assert bytes(view[:100]) == bytes(100)
    assert bytes(view[100:200]) != bytes(100)
    engine.wipe()
    assert bytes(view) == bytes(len(view))


def test_reseed_after_byte_budget(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(10))
    engine = Engine(memory_pool, source="os", reseed_bytes=100_000)
    engine.random_bytes(300_000)
    info = engine.seed_info
    assert info is not None and info.reseeds >= 3
    assert memory_pool.level().blocks == 10 - info.reseeds


def test_reseed_after_time_budget(memory_pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    memory_pool.put(make_blocks(3))
    now = [1000.0]
    monkeypatch.setattr(engine_module, "_clock", lambda: now[0])
    engine = Engine(memory_pool, source="os", reseed_seconds=60)
    engine.random_bytes(BUFFER_BYTES)
    now[0] += 61
    engine.random_bytes(BUFFER_BYTES)
    assert engine.seed_info is not None and engine.seed_info.reseeds == 2


def test_prediction_resistance_takes_a_fresh_block(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(4))
    engine = Engine(memory_pool, source="os")
    engine.random_bytes(16)
    engine.random_bytes(16, prediction_resistance=True)
    engine.random_bytes(16, prediction_resistance=True)
    assert memory_pool.level().blocks == 1
    memory_pool.take(1)
    with pytest.raises(NotSeeded):
        engine.random_bytes(16, prediction_resistance=True)


def test_wipe_forces_reseed(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(1))
    engine = Engine(memory_pool, source="os")
    engine.random_bytes(16)
    engine.wipe()
    assert not engine.seeded
    with pytest.raises(NotSeeded):
        engine.random_bytes(16)


def test_forked_child_reseeds_and_differs(tmp_path: Path) -> None:
    pool = open_pool(make_settings(tmp_path, pool="sqlite", source="os"))  # shared by processes
    pool.put(make_blocks(4))
    engine = Engine(pool, source="os")
    engine.random_bytes(16)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            out = engine.random_bytes(32)
            reseeds = engine.seed_info.reseeds if engine.seed_info else 0
            os.write(write_fd, out + bytes([reseeds]))
        finally:
            os._exit(0)
    os.close(write_fd)
    child = os.read(read_fd, 64)
    os.close(read_fd)
    os.waitpid(pid, 0)
    parent = engine.random_bytes(32)
    assert len(child) == 33
    assert child[:32] != parent
    assert child[32] == 2  # the child reseeded from its own block
    assert pool.level().blocks == 2
    pool.close()


def test_the_fork_hook_never_waits_for_a_lock_a_parent_thread_held(memory_pool: Pool) -> None:
    """In a child, the engine's hook may run before the DRBG's: it must not wipe the DRBG
    through a lock that a parent thread held at fork time."""
    memory_pool.put(make_blocks(1))
    engine = Engine(memory_pool, source="os")
    engine.random_bytes(16)
    drbg = engine._drbg
    assert drbg is not None
    done = threading.Event()

    def hook() -> None:
        engine.after_fork_in_child()
        done.set()

    with drbg._lock, engine._lock:  # as if a parent thread were inside a generate call
        threading.Thread(target=hook, daemon=True).start()
        assert done.wait(10)
    assert not engine.seeded and engine._local.buffer.left == 0
    with pytest.raises(NotSeeded):
        drbg.generate(1)


def test_threads_never_share_output(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(4))
    engine = Engine(memory_pool, source="os")
    chunks: list[bytes] = []
    lock = threading.Lock()

    def draw() -> None:
        local = [engine.random_bytes(16) for _ in range(2000)]
        with lock:
            chunks.extend(local)

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(chunks) == 16_000
    assert len(set(chunks)) == len(chunks)


def test_stream_yields_exact_total(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(1))
    engine = Engine(memory_pool, source="os")
    parts = list(engine.stream(2_500_000, chunk_bytes=1 << 20))
    assert [len(p) for p in parts] == [1 << 20, 1 << 20, 2_500_000 - (2 << 20)]


def test_raw_bytes_are_pool_blocks_exactly_once(memory_pool: Pool) -> None:
    blocks = make_blocks(3)
    memory_pool.put(blocks)
    engine = Engine(memory_pool, source="os")
    data, provenance, credited = engine.raw_bytes(100)
    assert data == (blocks[0].data + blocks[1].data)[:100]
    assert provenance == [blocks[0].provenance]
    assert credited == 1024
    data2, _, _ = engine.raw_bytes(64)
    assert data2 == blocks[2].data
    with pytest.raises(EntropyUnavailable):
        engine.raw_bytes(1)


def test_stats_hold_no_secret(memory_pool: Pool) -> None:
    blocks = make_blocks(1)
    memory_pool.put(blocks)
    engine = Engine(memory_pool, source="os")
    out = engine.random_bytes(64)
    text = repr(engine.stats()) + repr(engine.seed_info)
    for secret in (blocks[0].data, out):
        assert secret.hex() not in text
        assert repr(secret) not in text


def test_buffered_output_is_not_served_after_a_reseed(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(3))
    engine = Engine(memory_pool, source="os")
    engine.random_bytes(16)
    buffer = engine._local.buffer
    fills = buffer.fills
    engine.reseed()
    engine.random_bytes(16)
    assert buffer.fills > fills
    assert buffer.pos == 16  # refilled from the new seed


def test_a_finished_threads_buffer_is_zeroed(memory_pool: Pool) -> None:
    import gc

    memory_pool.put(make_blocks(1))
    engine = Engine(memory_pool, source="os")
    views = []

    def draw() -> None:
        engine.random_bytes(8)
        views.append(engine._local.buffer.view)

    thread = threading.Thread(target=draw)
    thread.start()
    thread.join()
    gc.collect()
    assert bytes(views[0]) == bytes(len(views[0]))


@pytest.mark.parametrize(
    "budget", [{"reseed_bytes": 0}, {"reseed_seconds": 0.0}, {"reseed_seconds": float("nan")}]
)
def test_a_zero_reseed_budget_is_refused(memory_pool: Pool, budget: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Engine(memory_pool, source="os", **budget)  # type: ignore[arg-type]
