"""The harvester: health-tested, conditioned harvests between water marks."""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import pytest

from quantumrng import harvester as harvester_module
from quantumrng.accounting import SourceFailure, SourceLedger
from quantumrng.block import Block
from quantumrng.errors import (
    HealthTestFailure,
    LeaseLost,
    RepeatedHarvest,
    SourceFailed,
    SourceNetworkError,
    Unavailable,
)
from quantumrng.harvester import Harvester, holder_name
from quantumrng.health import HealthMonitor
from quantumrng.pool.base import Pool
from quantumrng.provenance import Provenance
from quantumrng.sources._common import NOMINAL_ENTROPY
from quantumrng.sources.base import Harvest
from tests.blocks import make_blocks

WAIT_SECONDS = 30.0  # generous: a busy machine is slow, never wrong


class Beacon:
    """Counts events from another thread; a test waits for a condition, not a fixed time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0

    def hit(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = WAIT_SECONDS) -> bool:
        """Wait until ``predicate()`` holds, re-checking it at each hit."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_count(self, n: int, timeout: float = WAIT_SECONDS) -> bool:
        """Wait until at least ``n`` hits."""
        return self.wait_until(lambda: self.count >= n, timeout)


class ScriptedSource:
    """A source that plays back a script of outcomes: 'ok', 'stuck' or an error.

    As ``kind="os"`` (the default) it earns no credit; as ``file`` it is a
    noise source whose harvests need an assessment before they earn any.
    """

    def __init__(
        self,
        script: list[str | Exception],
        nbytes: int = 4096,
        kind: str = "os",
        configuration: str = "",
    ) -> None:
        self.kind = kind
        self.configuration = configuration
        self.script = list(script)
        self.nbytes = nbytes
        self.calls = 0
        self.called_at: list[float] = []
        self.called = Beacon()

    def info(self) -> dict[str, object]:
        return {"kind": self.kind, "backend": "scripted", "creditable": True}

    def harvest(self) -> Harvest:
        self.calls += 1
        self.called_at.append(time.monotonic())
        try:
            return self._play()
        finally:
            self.called.hit()

    def _play(self) -> Harvest:
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        # seeded, so a fair harvest can never trip a health test by chance (flaky)
        fair = random.Random(self.calls).randbytes(self.nbytes)
        data = fair if step == "ok" else bytes(self.nbytes)
        prov = Provenance(source=self.kind, harvest_id=uuid.uuid4().hex, harvested_at=time.time())
        return Harvest(
            data,
            8,
            self.nbytes,
            prov,
            assessed_entropy=NOMINAL_ENTROPY,
            creditable=True,
            configuration=self.configuration,
        )


def test_harvest_once_fills_pool_with_blocks_a_zero_credit_source_earns_nothing_for(
    memory_pool: Pool,
) -> None:
    harvester = Harvester(ScriptedSource(["ok"]), memory_pool)
    blocks = harvester.harvest_once()
    assert blocks and all(b.credited_bits == 0 for b in blocks)
    assert memory_pool.level().blocks == len(blocks)
    assert harvester.harvests == 1 and harvester.blocks_added == len(blocks)
    assert harvester.snapshot()["assessment"] == {"state": "not_credited", "samples_needed": 0}


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


def _watch(watched_object: object, method: str) -> tuple[Beacon, list[Any]]:
    """Wrap ``watched_object.<method>`` so each call is counted and its result kept."""
    beacon, results = Beacon(), []
    real = getattr(watched_object, method)

    def watched() -> Any:
        result = real()
        results.append(result)
        beacon.hit()
        return result

    setattr(watched_object, method, watched)
    return beacon, results


def test_background_thread_keeps_pool_between_water_marks(memory_pool: Pool) -> None:
    source = ScriptedSource([])
    harvester = Harvester(source, memory_pool, low_water=50, high_water=100)
    looks, _ = _watch(harvester, "level")  # the thread looks at the level each round
    harvester.start()
    try:
        assert looks.wait_until(lambda: memory_pool.level().blocks >= 100)
        level = memory_pool.level().blocks
        assert 100 <= level < 100 + 64  # stops within one harvest of the high mark
        calls, seen = source.calls, looks.count
        for more in (1, 2):  # two more rounds, each after a look at the level
            harvester.wake()
            assert looks.wait_count(seen + more)
        assert source.calls == calls  # idle above the low mark
        assert memory_pool.level().blocks == level
        memory_pool.take(level - 40)
        harvester.wake()
        assert looks.wait_until(lambda: memory_pool.level().blocks >= 100)
        assert memory_pool.level().blocks >= 100
    finally:
        harvester.stop()
    assert not harvester.running
    assert harvester.rate()["blocks_per_second"] > 0


def test_background_thread_backs_off_on_errors(memory_pool: Pool) -> None:
    source = ScriptedSource([SourceNetworkError("down")] * 100)
    base, most = 0.05, 0.2
    harvester = Harvester(source, memory_pool, backoff_base=base, backoff_max=most)
    harvester.start()
    try:
        assert source.called.wait_count(5)
    finally:
        harvester.stop()
    assert harvester.snapshot()["source_errors"] == source.calls >= 5
    # each retry waits its backoff, 0.05, 0.1, 0.2, 0.2 ..., jittered down by at most half
    gaps = [b - a for a, b in zip(source.called_at, source.called_at[1:], strict=False)]
    for failures, gap in enumerate(gaps, start=1):
        assert gap >= 0.5 * min(most, base * 2 ** (failures - 1)) * 0.99, gaps


# -- one leader per source: the harvest lease ---------------------------------------------

LEASE = 0.6  # seconds: polls and renewals every 0.2 s
LEASE_NAME = "harvest:os"


class SlowSource(ScriptedSource):
    """A source whose harvest blocks for ``seconds`` (a long IBM job), then runs ``during``."""

    def __init__(self, seconds: float, during: Callable[[], None] | None = None) -> None:
        super().__init__([])
        self.seconds = seconds
        self.during = during

    def harvest(self) -> Harvest:
        time.sleep(self.seconds)
        if self.during is not None:
            self.during()
        return super().harvest()


def leasing(source: ScriptedSource, pool: Pool, node: str, **kwargs: Any) -> Harvester:
    kwargs.setdefault("high_water", 100)
    return Harvester(source, pool, lease_seconds=LEASE, node=node, **kwargs)


def test_holder_names_are_node_pid_and_a_random_suffix() -> None:
    first, second = holder_name("n1"), holder_name("n1")
    assert first != second
    node, pid, suffix = first.split(":")
    assert (node, pid) == ("n1", str(os.getpid())) and len(suffix) == 8


def test_only_the_leader_harvests_and_a_stopped_leader_hands_over_at_once(
    memory_pool: Pool,
) -> None:
    leader_source, follower_source = ScriptedSource([]), ScriptedSource([])
    leader = leasing(leader_source, memory_pool, "a")
    follower = leasing(follower_source, memory_pool, "b")
    leader.start()
    try:
        assert leader_source.called.wait_until(lambda: leader.active and leader.harvests > 0)
        lease = leader.lease
        assert lease is not None and lease.holder == leader.holder
        follower.start()
        tries, _ = _watch(follower._lease_keeper(), "_try")
        assert tries.wait_count(3)  # it asked for the lease three times
        assert not follower.active and follower_source.calls == 0
        info = memory_pool.lease_holder(LEASE_NAME)
        assert info is not None and info.holder == leader.holder
        assert follower.snapshot()["active"] is False
        assert leader.snapshot()["active"] is True
        leader.stop()
        assert not leader.active
        stopped = time.monotonic()
        assert tries.wait_until(lambda: follower.active)
        assert time.monotonic() - stopped < LEASE  # released: taken over at the next poll
        new = follower.lease
        assert new is not None and new.token > lease.token
        memory_pool.take(memory_pool.level().blocks)
        follower.wake()
        assert follower_source.called.wait_count(1)  # the new leader harvests
    finally:
        leader.stop()
        follower.stop()
    assert memory_pool.lease_holder(LEASE_NAME) is None  # stop released it


def test_a_dead_leader_is_replaced_within_the_lease_and_one_poll(memory_pool: Pool) -> None:
    dead = memory_pool.acquire_lease(LEASE_NAME, "dead:1:x", LEASE)  # never renewed
    assert dead is not None
    since = time.monotonic()
    source = ScriptedSource([])
    harvester = leasing(source, memory_pool, "b")
    harvester.start()
    try:
        assert source.called.wait_count(1)
        waited = time.monotonic() - since
    finally:
        harvester.stop()
    assert LEASE * 0.9 <= waited <= LEASE + LEASE / 3 + 1.0  # 1 s: a busy machine
    assert harvester.harvests >= 1


def test_the_lease_is_renewed_while_a_slow_harvest_blocks(memory_pool: Pool) -> None:
    rivals: list[object] = []

    def rival() -> None:  # long after the lease would have expired without renewals
        rivals.append(memory_pool.acquire_lease(LEASE_NAME, "rival:1:x", LEASE))

    source = SlowSource(4 * LEASE, during=rival)
    harvester = leasing(source, memory_pool, "a")
    blocks = harvester.fill(1)
    assert blocks > 0 and memory_pool.level().blocks == blocks
    assert rivals == [None]
    assert memory_pool.lease_holder(LEASE_NAME) is None  # fill released it


def test_a_lease_lost_mid_harvest_stores_nothing_and_stops_harvesting(
    memory_pool: Pool,
) -> None:
    harvester: Harvester

    def usurp() -> None:  # the lease ends while the harvest runs; another node takes it
        lease = harvester.lease
        assert lease is not None
        memory_pool.release_lease(lease)
        assert memory_pool.acquire_lease(LEASE_NAME, "usurper:1:x", 60) is not None

    source = SlowSource(0.0, during=usurp)
    harvester = leasing(source, memory_pool, "a")
    harvester.start()
    try:
        assert source.called.wait_count(1)
        tries, _ = _watch(harvester._lease_keeper(), "_try")
        assert tries.wait_count(3)
        assert memory_pool.level().blocks == 0
        assert source.calls == 1 and harvester.harvests == 0
        assert not harvester.active
        assert harvester.last_error is not None and "no longer held" in harvester.last_error
    finally:
        harvester.stop()
    info = memory_pool.lease_holder(LEASE_NAME)
    assert info is not None and info.holder == "usurper:1:x"  # stop releases only its own


def test_a_fenced_harvest_refused_raises_lease_lost_and_counts_nothing(
    memory_pool: Pool,
) -> None:
    lease = memory_pool.acquire_lease(LEASE_NAME, "a:1:x", LEASE)
    assert lease is not None
    memory_pool.release_lease(lease)
    harvester = Harvester(ScriptedSource(["ok"]), memory_pool)
    with pytest.raises(LeaseLost):
        harvester.harvest_once(fence=lease)
    assert memory_pool.level().blocks == 0 and harvester.blocks_added == 0


def test_fill_beside_a_leader_waits_a_bounded_time_then_names_it(memory_pool: Pool) -> None:
    assert memory_pool.acquire_lease(LEASE_NAME, "server:42:abcd", 60) is not None
    source = ScriptedSource([])
    harvester = leasing(source, memory_pool, "cli", lease_wait=0.3)
    started = time.monotonic()
    with pytest.raises(LeaseLost, match="harvested by server:42:abcd"):
        harvester.fill(1)
    assert 0.3 <= time.monotonic() - started < 5.0
    assert source.calls == 0 and memory_pool.level().blocks == 0


def test_fill_returns_when_the_leader_filled_the_pool(memory_pool: Pool) -> None:
    assert memory_pool.acquire_lease(LEASE_NAME, "server:42:abcd", 60) is not None
    source = ScriptedSource([])
    harvester = leasing(source, memory_pool, "cli", lease_wait=WAIT_SECONDS)
    threading.Timer(0.2, memory_pool.put, args=(make_blocks(2, source="os"),)).start()
    assert harvester.fill(2) == 0
    assert source.calls == 0


class FlakyPool:
    """A pool whose ``level`` fails (the store is down) a number of times, then works."""

    def __init__(self, pool: Pool, failures: int) -> None:
        self._pool = pool
        self.failures = failures
        self.looked_at: list[float] = []

    def level(self) -> Any:
        self.looked_at.append(time.monotonic())
        if self.failures > 0:
            self.failures -= 1
            raise Unavailable("the Redis pool is unavailable (ConnectionError)")
        return self._pool.level()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def test_when_the_pool_is_down_the_harvester_retries_soon_not_after_the_source_backoff(
    memory_pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harvester_module, "POOL_RETRY_BASE", 0.02)
    monkeypatch.setattr(harvester_module, "POOL_RETRY_MAX", 0.1)
    flaky = FlakyPool(memory_pool, failures=8)
    source = ScriptedSource([])
    harvester = Harvester(
        source, cast(Pool, flaky), backoff_base=60.0, backoff_max=300.0, lease_seconds=LEASE
    )
    harvester.start()
    try:
        assert source.called.wait_count(1, timeout=10.0)  # the source backoff would be 60 s+
    finally:
        harvester.stop()
    looks = flaky.looked_at[:9]
    gaps = [b - a for a, b in itertools.pairwise(looks)]
    assert len(gaps) == 8 and max(gaps) < 0.1 + 0.5, gaps  # 0.5 s: a busy machine
    assert harvester._failures_in_row == 0  # not counted against the source


def test_the_pool_retry_is_bounded_by_a_few_seconds(memory_pool: Pool) -> None:
    harvester = Harvester(ScriptedSource([]), memory_pool, backoff_max=300.0)
    delays = [harvester._pool_retry() for _ in range(20)]
    assert max(delays) <= harvester_module.POOL_RETRY_MAX <= 5.0


# -- no pool bytes in the snapshot --------------------------------------------------------


def _leaves(value: object) -> Iterator[object]:
    """Every key and scalar of a nested snapshot."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _leaves(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _encodings(data: bytes) -> set[str]:
    """Text forms of ``data``: hex, base64 (both alphabets), repr and latin-1."""
    b64 = base64.b64encode(data).decode()
    return {
        data.hex(),
        b64.rstrip("="),
        b64.replace("+", "-").replace("/", "_").rstrip("="),
        repr(data)[2:-1],
        data.decode("latin-1"),
    }


def block_leaks(snapshot: object, blocks: Sequence[Block]) -> list[str]:
    """Where a block's bytes, or any 8 bytes of one, appear in ``snapshot``, in any encoding.

    Searched: ``repr`` and the JSON dump of the snapshot and its string values
    (hex case-insensitively), and the raw bytes of its bytes and string values
    (latin-1). Base64 is
    searched by 9-byte windows, which a base64 run of 11 bytes or more contains
    whatever its alignment.
    """
    leaves = list(_leaves(snapshot))
    texts = [repr(snapshot), json.dumps(snapshot, default=repr)]
    texts += [leaf for leaf in leaves if isinstance(leaf, str)]
    texts += [t.lower() for t in texts]
    raws = [
        bytes(leaf) if isinstance(leaf, bytes | bytearray | memoryview)
        else str(leaf).encode("latin-1", errors="replace")
        for leaf in leaves
    ]  # fmt: skip
    found = []
    for number, block in enumerate(blocks):
        data = block.data
        needles = set(_encodings(data))
        needles |= {data[i : i + 8].hex() for i in range(len(data) - 7)}
        needles |= {repr(data[i : i + 8])[2:-1] for i in range(len(data) - 7)}
        needles |= {base64.b64encode(data[i : i + 9]).decode() for i in range(len(data) - 8)}
        needles |= {
            base64.urlsafe_b64encode(data[i : i + 9]).decode() for i in range(len(data) - 8)
        }
        found += [f"block {number}: {n!r}" for n in needles if any(n in t for t in texts)]
        windows = {data[i : i + 8] for i in range(len(data) - 7)}
        found += [f"block {number}: raw {w!r}" for w in windows if any(w in r for r in raws)]
    return found


@pytest.fixture
def harvested(memory_pool: Pool) -> tuple[Harvester, list[Block]]:
    harvester = Harvester(ScriptedSource(["ok"]), memory_pool)
    return harvester, harvester.harvest_once()


def test_snapshot_has_no_pool_bytes(harvested: tuple[Harvester, list[Block]]) -> None:
    harvester, blocks = harvested
    snapshot = harvester.snapshot()
    assert len(blocks) > 1
    json.dumps(snapshot)  # plain JSON, no bytes
    assert blocks[0].data.hex() not in repr(snapshot)
    assert block_leaks(snapshot, blocks) == []


_LEAKS: dict[str, Callable[[bytes], object]] = {
    "hex": lambda d: d.hex(),
    "upper-case hex": lambda d: d.hex().upper(),
    "base64": lambda d: base64.b64encode(d).decode(),
    "url-safe base64": lambda d: base64.urlsafe_b64encode(d).decode(),
    "base64 of 11 bytes": lambda d: base64.b64encode(d[7:18]).decode(),
    "raw bytes": lambda d: d,
    "bytearray in a list": lambda d: [bytearray(d)],
    "bytes repr": lambda d: repr(d),
    "latin-1 string": lambda d: d.decode("latin-1"),
    "8 raw bytes": lambda d: b"<" + d[20:28] + b">",
    "8 bytes in hex": lambda d: "id-" + d[40:48].hex(),
    "as a key": lambda d: {d[3:11].hex(): 1},
}


@pytest.mark.parametrize("encode", _LEAKS.values(), ids=_LEAKS.keys())
def test_leak_check_finds_a_block_in_any_encoding(
    harvested: tuple[Harvester, list[Block]], encode: Callable[[bytes], object]
) -> None:
    harvester, blocks = harvested
    flawed = harvester.snapshot()
    flawed["health"] = {"debug": {"last": encode(blocks[-1].data)}}  # the last block, nested
    assert block_leaks(flawed, blocks) != []


def test_snapshot_shows_what_the_source_says_of_itself(memory_pool: Pool) -> None:
    harvester = Harvester(ScriptedSource(["ok"]), memory_pool)
    assert harvester.snapshot()["source_info"] == {
        "kind": "os",
        "backend": "scripted",
        "creditable": True,
    }


# --- failure states (SP 800-90B §4.3) -----------------------------------------


def test_a_persistent_failure_is_recorded_for_every_process_and_quarantines(
    memory_pool: Pool,
) -> None:
    source = ScriptedSource(["ok", "ok", "stuck", "stuck", "stuck"])
    harvester = Harvester(source, memory_pool, monitor=HealthMonitor(persistent_after=3))
    first, second = harvester.harvest_once(), harvester.harvest_once()
    for _ in range(2):
        with pytest.raises(HealthTestFailure) as intermittent:
            harvester.harvest_once()
        assert not isinstance(intermittent.value, SourceFailed)
    with pytest.raises(SourceFailed, match="'rct' failed persistently on stream 0"):
        harvester.harvest_once()
    # the second harvest was never confirmed by a passing one: quarantined
    assert memory_pool.level().blocks == len(first)
    failure = SourceLedger(memory_pool, "os").failure()
    assert failure is not None and (failure.test, failure.stream) == ("rct", 0)
    assert failure.quarantined_harvests == 1 and failure.quarantined_blocks == len(second)
    with pytest.raises(SourceFailed):
        SourceLedger(memory_pool, "os").check_usable()
    assert harvester.snapshot()["health"]["state"] == "persistent"


def test_a_failure_read_for_status_is_what_the_next_check_goes_by(memory_pool: Pool) -> None:
    gate = SourceLedger(memory_pool, "os", check_seconds=3600.0)
    gate.check_usable()  # nothing recorded: cached as usable for an hour
    SourceLedger(memory_pool, "os").record_failure(SourceFailure("os", "rct", 0, time.time()))
    gate.check_usable()  # still the cached answer
    assert gate.failure() is not None  # what /api/v2/status shows
    with pytest.raises(SourceFailed):
        gate.check_usable()


def test_after_a_persistent_failure_a_new_startup_test_clears_it(memory_pool: Pool) -> None:
    source = ScriptedSource(["stuck", "ok"])
    harvester = Harvester(source, memory_pool, monitor=HealthMonitor(persistent_after=1))
    with pytest.raises(SourceFailed):
        harvester.harvest_once()
    assert harvester.harvest_once()  # the start-up test passed
    assert SourceLedger(memory_pool, "os").failure() is None
    assert harvester.monitor.state == "ok"


def test_with_operator_reset_nothing_is_harvested_until_the_operator_clears_it(
    memory_pool: Pool,
) -> None:
    source = ScriptedSource(["stuck"])
    harvester = Harvester(
        source,
        memory_pool,
        monitor=HealthMonitor(persistent_after=1),
        require_operator_reset=True,
    )
    with pytest.raises(SourceFailed):
        harvester.harvest_once()
    for _ in range(3):
        with pytest.raises(SourceFailed, match="operator reset"):
            harvester.harvest_once()
    assert source.calls == 1  # the failed source is not even asked
    SourceLedger(memory_pool, "os").clear_failure()  # what `qrng health reset` does
    assert harvester.harvest_once()
    assert source.calls == 2


def test_a_failure_recorded_by_another_process_stops_this_harvester(memory_pool: Pool) -> None:
    ledger = SourceLedger(memory_pool, "os")
    ledger.record_failure(SourceFailure("os", "apt", 3, time.time()))
    harvester = Harvester(ScriptedSource(["ok"]), memory_pool, require_operator_reset=True)
    with pytest.raises(SourceFailed, match="'apt' failed persistently on stream 3"):
        harvester.harvest_once()
    assert memory_pool.level().blocks == 0


def test_a_source_that_only_fails_never_puts_a_block(memory_pool: Pool) -> None:
    harvester = Harvester(ScriptedSource(["stuck"] * 20), memory_pool, backoff_base=0.001)
    with pytest.raises(HealthTestFailure):
        harvester.fill(1, max_failures=10)
    assert memory_pool.level().blocks == 0


# --- initial assessment (SP 800-90B §3.1) ---------------------------------------

ASSESS_SAMPLES = 3 * 4096  # three harvests; the product needs 1,000,000 (settings refuse less)


def assessing_harvester(pool: Pool, source: ScriptedSource) -> Harvester:
    return Harvester(source, pool, assessment_samples=ASSESS_SAMPLES, assess_in_subprocess=False)


def test_a_noise_source_is_collected_then_assessed_then_credited(memory_pool: Pool) -> None:
    harvester = assessing_harvester(memory_pool, ScriptedSource([], kind="file"))
    assert harvester.harvest_once() == []  # collected for the assessment, never stored
    status = harvester.snapshot()["assessment"]
    assert status["state"] == "collecting" and status["samples_collected"] == 4096
    assert status["samples_needed"] == ASSESS_SAMPLES
    assert harvester.harvest_once() == [] and harvester.harvest_once() == []
    assert memory_pool.level().blocks == 0
    assessed = harvester.snapshot()["assessment"]
    assert assessed["state"] == "assessed" and assessed["samples"] == ASSESS_SAMPLES
    assert assessed["width"] == 8 and len(assessed["credit"]) == 8
    # fair bytes: every stream assessed well above zero, never above the claim
    assert all(0.5 < c <= NOMINAL_ENTROPY for c in assessed["credit"])
    blocks = harvester.harvest_once()
    assert blocks and all(b.credited_bits == 512 for b in blocks)
    stored = SourceLedger(memory_pool, "file").assessment()
    assert stored is not None
    assert list(stored.credit) == pytest.approx(assessed["credit"], abs=1e-6)


def test_a_stored_assessment_credits_at_once_after_a_restart(memory_pool: Pool) -> None:
    first = assessing_harvester(memory_pool, ScriptedSource([], kind="file"))
    for _ in range(3):
        first.harvest_once()
    again = assessing_harvester(memory_pool, ScriptedSource([], kind="file"))
    blocks = again.harvest_once()
    assert blocks and all(b.credited_bits == 512 for b in blocks)


def test_a_new_configuration_is_assessed_again_before_any_credit(memory_pool: Pool) -> None:
    first = assessing_harvester(memory_pool, ScriptedSource([], kind="file", configuration="a"))
    for _ in range(3):
        first.harvest_once()
    moved = assessing_harvester(
        memory_pool, ScriptedSource([], kind="file", configuration="layout=5,6")
    )
    assert moved.harvest_once() == []
    assert moved.snapshot()["assessment"]["state"] == "collecting"


def test_a_biased_source_is_credited_what_its_assessment_shows() -> None:
    from quantumrng.assessment.source import assess_source

    rng = __import__("numpy").random.default_rng(5)
    fair = rng.integers(0, 2, (20000, 2), dtype="uint8")
    fair[:, 1] = rng.random(20000) < 0.75  # stream 1 gives 1 three times in four
    run = assess_source(
        fair,
        source="file",
        backend="dev",
        configuration="",
        h_submitter=1.0,
        min_samples=20000,
    )
    low, high = run.assessment.credit[1], run.assessment.credit[0]
    assert low < 0.45 < 0.85 < high  # -log2(0.75) = 0.415, less the confidence bound
    assert run.assessment.credited_bits_per_sample <= 2 * run.assessment.joint + 1e-12


class RepeatingDevice(ScriptedSource):
    """A file source whose device repeats itself after the first harvests."""

    def __init__(self, good: int) -> None:
        super().__init__([], kind="file")
        self.good = good

    def harvest(self) -> Harvest:
        if self.calls >= self.good:
            self.calls += 1
            raise RepeatedHarvest("entropy device /dev/x repeated an earlier harvest")
        return super().harvest()


def test_a_device_repeating_itself_fails_persistently_like_a_failed_test(
    memory_pool: Pool,
) -> None:
    harvester = Harvester(RepeatingDevice(good=0), memory_pool)
    for _ in range(2):
        with pytest.raises(RepeatedHarvest):
            harvester.harvest_once()
    with pytest.raises(SourceFailed, match="'repeat' failed persistently on whole harvests"):
        harvester.harvest_once()
    assert harvester.snapshot()["health"]["failures"]["repeat"] == 3
