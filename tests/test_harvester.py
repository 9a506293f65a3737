"""The harvester: health-tested, conditioned harvests between water marks."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest

from quantumrng.errors import HealthTestFailure, SourceNetworkError
from quantumrng.harvester import Harvester
from quantumrng.pool.base import Pool
from quantumrng.provenance import Provenance
from quantumrng.sources._common import NOMINAL_ENTROPY
from quantumrng.sources.base import Harvest


class ScriptedSource:
    """A source that plays back a script of outcomes: 'ok', 'stuck' or an error."""

    kind = "os"

    def __init__(self, script: list[str | Exception], nbytes: int = 4096) -> None:
        self.script = list(script)
        self.nbytes = nbytes
        self.calls = 0

    def harvest(self) -> Harvest:
        self.calls += 1
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        # seeded, so a fair harvest can never trip a health test by chance (flaky)
        fair = random.Random(self.calls).randbytes(self.nbytes)
        data = fair if step == "ok" else bytes(self.nbytes)
        prov = Provenance(source="os", harvest_id=uuid.uuid4().hex, harvested_at=time.time())
        return Harvest(
            data, 8, self.nbytes, prov, assessed_entropy=NOMINAL_ENTROPY, creditable=True
        )


def test_harvest_once_fills_pool_with_credited_blocks(memory_pool: Pool) -> None:
    harvester = Harvester(ScriptedSource(["ok"]), memory_pool)
    blocks = harvester.harvest_once()
    assert blocks and all(b.credited_bits == 512 for b in blocks)
    assert memory_pool.level().blocks == len(blocks)
    assert harvester.harvests == 1 and harvester.blocks_added == len(blocks)


def test_failing_health_test_drops_the_harvest(memory_pool: Pool) -> None:
    harvester = Harvester(ScriptedSource(["stuck"]), memory_pool)
    with pytest.raises(HealthTestFailure):
        harvester.harvest_once()
    assert memory_pool.level().blocks == 0
    assert harvester.dropped == 1
    assert harvester.last_error is not None and "health" in harvester.last_error


def test_source_error_is_counted_and_raised(memory_pool: Pool) -> None:
    harvester = Harvester(ScriptedSource([SourceNetworkError("no route")]), memory_pool)
    with pytest.raises(SourceNetworkError):
        harvester.harvest_once()
    assert harvester.source_errors == 1
    assert memory_pool.level().blocks == 0


def test_fill_retries_then_reaches_target(memory_pool: Pool) -> None:
    source = ScriptedSource([SourceNetworkError("down"), "stuck", "ok", "ok", "ok"])
    harvester = Harvester(source, memory_pool, backoff_base=0.001)
    added = harvester.fill(60)
    assert memory_pool.level().blocks >= 60
    assert added == memory_pool.level().blocks
    assert harvester.source_errors == 1 and harvester.dropped == 1


def test_fill_gives_up_after_repeated_failures(memory_pool: Pool) -> None:
    source = ScriptedSource(["stuck"] * 5)
    harvester = Harvester(source, memory_pool, backoff_base=0.001)
    with pytest.raises(HealthTestFailure):
        harvester.fill(1, max_failures=3)
    assert source.calls == 3


def test_background_thread_keeps_pool_between_water_marks(memory_pool: Pool) -> None:
    harvester = Harvester(ScriptedSource([]), memory_pool, low_water=50, high_water=100)
    harvester.start()
    try:
        deadline = time.monotonic() + 20
        while memory_pool.level().blocks < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        level = memory_pool.level().blocks
        assert 100 <= level < 100 + 64  # stops within one harvest of the high mark
        time.sleep(0.3)
        assert memory_pool.level().blocks == level  # idle above the low mark
        memory_pool.take(level - 40)
        harvester.wake()
        deadline = time.monotonic() + 20
        while memory_pool.level().blocks < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert memory_pool.level().blocks >= 100
    finally:
        harvester.stop()
    assert not harvester.running
    assert harvester.rate()["blocks_per_second"] > 0


def test_background_thread_backs_off_on_errors(memory_pool: Pool) -> None:
    source = ScriptedSource([SourceNetworkError("down")] * 100)
    harvester = Harvester(source, memory_pool, backoff_base=0.05, backoff_max=0.2)
    harvester.start()
    time.sleep(0.5)
    harvester.stop()
    # with backoff 0.05, 0.1, 0.2, 0.2 ... (jittered by up to half) only a few tries fit
    assert 2 <= source.calls <= 12
    assert harvester.snapshot()["source_errors"] == source.calls


def test_node_lock_allows_one_harvester(memory_pool: Pool, tmp_path: Path) -> None:
    lock = tmp_path / "harvester.lock"
    first = Harvester(ScriptedSource([]), memory_pool, high_water=100, lock_path=lock)
    second_source = ScriptedSource([])
    second = Harvester(second_source, memory_pool, high_water=100, lock_path=lock)
    first.start()
    deadline = time.monotonic() + 10
    while not (first.active and first.harvests) and time.monotonic() < deadline:
        time.sleep(0.01)
    second.start()
    time.sleep(0.3)
    try:
        assert first.active and not second.active
        assert second_source.calls == 0
    finally:
        first.stop()
        second.stop()


def test_snapshot_has_no_pool_bytes(memory_pool: Pool) -> None:
    harvester = Harvester(ScriptedSource(["ok"]), memory_pool)
    blocks = harvester.harvest_once()
    text = repr(harvester.snapshot())
    assert blocks[0].data.hex() not in text
