"""Prediction resistance: fresh entropy (a pool block and OS entropy) before every SP 800-90A
generate call of the request, and seed material zeroed once the DRBG has it."""

from __future__ import annotations

from typing import Any

import pytest

from quantumrng.block import BLOCK_BYTES
from quantumrng.drbg import MAX_BYTES_PER_REQUEST, CtrDrbg
from quantumrng.engine import OS_ENTROPY_BYTES, Engine
from quantumrng.errors import NotSeeded
from quantumrng.pool.base import Pool
from quantumrng.selftest import power_on_selftest
from tests.blocks import make_blocks

KIB64 = MAX_BYTES_PER_REQUEST


class Recorder:
    """Records seedings (with a copy of their entropy input) and generate calls, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        power_on_selftest()  # its known-answer DRBGs are not the engine's
        self.events: list[tuple[str, int]] = []
        self.entropy: list[bytes] = []
        self.inputs: list[Any] = []
        real_init, real_reseed, real_into = CtrDrbg.__init__, CtrDrbg.reseed, CtrDrbg.generate_into

        def init(drbg: CtrDrbg, entropy: Any, *args: Any, **kwargs: Any) -> None:
            self._seed(entropy)
            real_init(drbg, entropy, *args, **kwargs)

        def reseed(drbg: CtrDrbg, entropy: Any, *args: Any) -> None:
            self._seed(entropy)
            real_reseed(drbg, entropy, *args)

        def generate_into(drbg: CtrDrbg, out: Any, *args: Any) -> None:
            self.events.append(("generate", memoryview(out).nbytes))
            real_into(drbg, out, *args)

        monkeypatch.setattr(CtrDrbg, "__init__", init)
        monkeypatch.setattr(CtrDrbg, "reseed", reseed)
        monkeypatch.setattr(CtrDrbg, "generate_into", generate_into)

    def _seed(self, entropy: Any) -> None:
        self.events.append(("seed", len(entropy)))
        self.entropy.append(bytes(entropy))
        self.inputs.append(entropy)


@pytest.mark.parametrize(
    "n", [1, 4096, KIB64, KIB64 + 1, 3 * KIB64 + 5, (1 << 20) + 1], ids=lambda n: f"{n}B"
)
def test_every_generate_call_follows_its_own_reseed(
    memory_pool: Pool, monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    calls = -(-n // KIB64)
    blocks = make_blocks(calls + 1)
    memory_pool.put(blocks)
    engine = Engine(memory_pool, source="os")
    recorder = Recorder(monkeypatch)
    out = engine.random_bytes(n, prediction_resistance=True)
    assert len(out) == n
    seed = ("seed", BLOCK_BYTES + OS_ENTROPY_BYTES)
    sizes = [KIB64] * (n // KIB64) + ([n % KIB64] if n % KIB64 else [])
    assert recorder.events == [e for size in sizes for e in (seed, ("generate", size))]
    # each seeding's entropy input: the next pool block, then new OS entropy
    assert [e[:BLOCK_BYTES] for e in recorder.entropy] == [b.data for b in blocks[:calls]]
    os_parts = {e[BLOCK_BYTES:] for e in recorder.entropy}
    assert len(os_parts) == calls
    assert memory_pool.level().blocks == 1


def test_random_into_and_stream_take_prediction_resistance_too(
    memory_pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory_pool.put(make_blocks(6))
    engine = Engine(memory_pool, source="os")
    recorder = Recorder(monkeypatch)
    engine.random_into(bytearray(2 * KIB64), prediction_resistance=True)
    parts = list(engine.stream(KIB64 + 10, chunk_bytes=KIB64, prediction_resistance=True))
    assert [len(p) for p in parts] == [KIB64, 10]
    seeds = [e for e in recorder.events if e[0] == "seed"]
    assert len(seeds) == 4 and memory_pool.level().blocks == 2


def test_the_engine_zeroes_the_entropy_input_it_assembled(
    memory_pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory_pool.put(make_blocks(3))
    engine = Engine(memory_pool, source="os")
    recorder = Recorder(monkeypatch)
    engine.random_bytes(16)
    engine.reseed()
    engine.random_bytes(100, prediction_resistance=True)
    assert len(recorder.inputs) == 3
    for given, seen in zip(recorder.inputs, recorder.entropy, strict=True):
        assert isinstance(given, bytearray)
        assert any(seen) and given == bytes(len(given))


def test_a_dry_pool_stops_a_prediction_resistant_request(memory_pool: Pool) -> None:
    memory_pool.put(make_blocks(2))
    engine = Engine(memory_pool, source="os")
    with pytest.raises(NotSeeded):
        engine.random_bytes(3 * KIB64, prediction_resistance=True)
    with pytest.raises(NotSeeded):
        engine.random_bytes(1, prediction_resistance=True)


def test_a_prediction_resistant_small_read_leaves_the_thread_buffer_alone(
    memory_pool: Pool,
) -> None:
    memory_pool.put(make_blocks(3))
    engine = Engine(memory_pool, source="os")
    engine.random_bytes(16)
    buffer = engine._local.buffer
    pos, fills = buffer.pos, buffer.fills
    engine.random_bytes(16, prediction_resistance=True)
    assert (buffer.pos, buffer.fills) == (pos, fills)
    assert memory_pool.level().blocks == 1
