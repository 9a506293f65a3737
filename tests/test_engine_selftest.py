"""The engine runs the power-on self-test before its first seeding and serves nothing when
it failed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quantumrng import selftest
from quantumrng.engine import Engine
from quantumrng.errors import SelfTestFailure
from quantumrng.pool.base import Pool
from quantumrng.selftest import KNOWN_ANSWERS, KnownAnswer, PowerOnSelfTest
from tests.blocks import make_blocks

from .test_selftest import broken


class Recording(PowerOnSelfTest):
    """The real self-test, counting its runs and whether the pool was touched before."""

    def __init__(self, pool: Pool, use_df: tuple[KnownAnswer, ...] = KNOWN_ANSWERS) -> None:
        super().__init__(use_df=use_df)
        self.pool = pool
        self.levels: list[int] = []

    def require(self) -> None:
        if not self.done:
            self.levels.append(self.pool.level().blocks)
        super().require()


READS: dict[str, Callable[[Engine], object]] = {
    "small": lambda e: e.random_bytes(16),
    "large": lambda e: e.random_bytes(100_000),
    "into": lambda e: e.random_into(bytearray(10)),
    "prediction resistance": lambda e: e.random_bytes(16, prediction_resistance=True),
    "stream": lambda e: list(e.stream(10)),
    "reseed": lambda e: e.reseed(),
}


@pytest.mark.parametrize("read", READS)
def test_a_failed_self_test_serves_nothing_and_takes_no_block(
    memory_pool: Pool, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    memory_pool.put(make_blocks(2))
    post = Recording(memory_pool, use_df=broken(KNOWN_ANSWERS, 2))
    monkeypatch.setattr(selftest, "_POST", post)
    engine = Engine(memory_pool, source="os")
    for _ in range(2):
        with pytest.raises(SelfTestFailure):
            READS[read](engine)
    assert not engine.seeded and engine.seed_info is None
    assert memory_pool.level().blocks == 2


def test_the_self_test_runs_before_the_first_seeding_and_once(
    memory_pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory_pool.put(make_blocks(4))
    post = Recording(memory_pool)
    monkeypatch.setattr(selftest, "_POST", post)
    first, second = Engine(memory_pool, source="os"), Engine(memory_pool, source="os")
    assert not post.done  # building an engine runs nothing
    first.random_bytes(16)
    assert post.levels == [4]  # before the first block was taken
    first.reseed()
    second.random_bytes(16, prediction_resistance=True)
    assert post.levels == [4] and memory_pool.level().blocks == 1
