"""The usage store: daily byte counters that hold a quota across threads and processes."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantumrng.server.keys import KeyStore
from quantumrng.server.usage import RedisUsageStore, Usage, UsageStore
from quantumrng.storage.redis import open_url
from tests.pool.support import delete_prefix, new_prefix, redis_url


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """The same contract on both stores: SQLite (the embedded default) and Redis."""
    if request.param == "redis":
        redis_url()
    return str(request.param)


@pytest.fixture
def make(backend: str, tmp_path: Path) -> Iterator[Callable[[], Usage]]:
    """Open another handle on one store (another worker's, another node's)."""
    prefix = new_prefix()

    def opened() -> Usage:
        if backend == "sqlite":
            return UsageStore(tmp_path / "keys.sqlite3")
        return RedisUsageStore(open_url(redis_url()), prefix=prefix)

    yield opened
    delete_prefix(prefix)


@pytest.fixture
def usage(make: Callable[[], Usage]) -> Iterator[Usage]:
    store = make()
    yield store
    store.close()


def test_the_counters_share_the_key_stores_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    store = KeyStore(path)
    _, record = store.create("alice", {"drbg"}, None, 100)
    UsageStore(path).consume(record.principal, "2030-01-01", 10, 100)
    assert UsageStore(path).used(record.principal, "2030-01-01") == 10
    assert store.get("alice") == record


def test_consume_counts_up_to_the_limit_and_no_further(usage: Usage) -> None:
    assert usage.consume("p", "2030-01-01", 60, 100) == 60
    assert usage.consume("p", "2030-01-01", 50, 100) is None
    assert usage.used("p", "2030-01-01") == 60
    assert usage.consume("p", "2030-01-01", 40, 100) == 100
    assert usage.consume("p", "2030-01-01", 0, 100) == 100
    assert usage.consume("p", "2030-01-01", 1, 100) is None
    assert usage.consume("p", "2030-01-01", 101, 1000) is not None  # other limit, same row
    assert usage.consume("q", "2030-01-01", 101, 100) is None
    assert usage.used("q", "2030-01-01") == 0


def test_a_new_day_starts_from_zero_and_drops_old_days(tmp_path: Path) -> None:
    usage = UsageStore(tmp_path / "keys.sqlite3")
    usage.consume("p", "2030-01-01", 100, 100)
    assert usage.consume("p", "2030-01-02", 100, 100) == 100
    assert usage.used("p", "2030-01-01") == 0


def test_each_day_has_its_own_counter(usage: Usage) -> None:
    usage.consume("p", "2030-01-01", 100, 100)
    assert usage.consume("p", "2030-01-02", 100, 100) == 100
    assert usage.consume("p", "2030-01-02", 1, 100) is None


def test_redis_counters_expire_a_day_after_their_day() -> None:
    prefix = new_prefix()
    usage = RedisUsageStore(open_url(redis_url()), prefix=prefix)
    client = open_url(redis_url())
    try:
        usage.consume("p", "2030-01-01", 5, 10)
        end = datetime(2030, 1, 3, tzinfo=UTC).timestamp()
        assert client.expiretime(usage.key("p", "2030-01-01")) == int(end)
    finally:
        client.close()
        usage.close()
        delete_prefix(prefix)


def test_a_refund_gives_back_at_most_the_counter(usage: Usage) -> None:
    usage.consume("p", "2030-01-01", 30, 100)
    usage.refund("p", "2030-01-01", 10)
    assert usage.used("p", "2030-01-01") == 20
    usage.refund("p", "2030-01-01", 1000)
    assert usage.used("p", "2030-01-01") == 0
    usage.refund("q", "2030-01-01", 5)  # nothing charged: nothing to give back
    assert usage.used("q", "2030-01-01") == 0
    assert usage.consume("q", "2030-01-01", 100, 100) == 100


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # each example counts under a principal of its own
@given(st.integers(1, 500), st.lists(st.integers(0, 200), max_size=40))
def test_consume_never_exceeds_the_limit(
    make: Callable[[], Usage], limit: int, asks: list[int]
) -> None:
    store = make()
    principal = f"p{time.monotonic_ns()}"  # a fresh counter per example
    accepted = 0
    for n in asks:
        got = store.consume(principal, "2030-01-01", n, limit)
        if got is None:
            assert accepted + n > limit
        else:
            accepted += n
            assert got == accepted
    assert store.used(principal, "2030-01-01") == accepted <= limit
    store.close()


def _hammer(
    path: str,
    principal: str,
    limit: int,
    tries: int,
    go: multiprocessing.synchronize.Event,
    out: multiprocessing.Queue[int],
) -> None:
    store = UsageStore(Path(path))
    go.wait(30)
    ok = sum(
        7 for _ in range(tries) if store.consume(principal, "2030-01-01", 7, limit) is not None
    )
    out.put(ok)


def test_daily_quota_holds_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    store = KeyStore(path)
    _, record = store.create("shared", {"drbg"}, None, 6999)
    usage = UsageStore(path)
    usage.consume(record.principal, "2030-01-01", 0, 6999)  # a parent connection exists
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[int] = ctx.Queue()
    go = ctx.Event()
    procs = [
        ctx.Process(target=_hammer, args=(str(path), record.principal, 6999, 600, go, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    go.set()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(got) == usage.used(record.principal, "2030-01-01") == 6993
    assert all(g > 0 for g in got)


LIMIT = 10_000
ASK = 3_000  # large next to the limit: three fit, a fourth would overshoot


def _race(
    make: Callable[[], Usage],
    go: multiprocessing.synchronize.Event,
    out: multiprocessing.Queue[int],
) -> None:
    store = make()
    got: list[int] = []

    def ask() -> None:
        go.wait(30)
        for _ in range(3):
            if store.consume("p", "2030-01-01", ASK, LIMIT) is not None:
                got.append(ASK)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(sum(got))


def test_concurrent_large_requests_near_the_limit_never_overshoot(
    make: Callable[[], Usage],
) -> None:
    store = make()
    store.consume("p", "2030-01-01", 500, LIMIT)  # near the limit from the start
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[int] = ctx.Queue()
    go = ctx.Event()
    procs = [ctx.Process(target=_race, args=(make, go, out)) for _ in range(3)]
    for p in procs:
        p.start()
    go.set()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(got) == 3 * ASK  # 500 + 3 * 3000 fit; not one byte more
    assert store.used("p", "2030-01-01") == 500 + 3 * ASK <= LIMIT
