"""Rate limits: GCRA as a pure function, and its three stores (memory, SQLite, Redis)."""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.errors import Unavailable
from quantumrng.server.limits import (
    TICKS,
    Limiter,
    MemoryLimiter,
    RedisLimiter,
    SqliteLimiter,
    decision,
    gcra,
    interval,
    open_limiter,
    requests_left,
)
from quantumrng.storage.redis import open_url
from tests.conftest import make_settings
from tests.pool.support import delete_prefix, new_prefix, redis_url, tagged

# -- the arithmetic ---------------------------------------------------------------------


def admit_all(times: list[int], step: int, burst: int) -> list[int]:
    """The times admitted out of requests at ``times`` (ticks), from a fresh principal."""
    tat: int | None = None
    admitted = []
    for now in times:
        ok, new, ahead = gcra(tat, now, step, burst)
        if ok:
            tat = new
            admitted.append(now)
            assert ahead == new - now > 0
        else:
            assert new == tat and ahead > 0
            assert not gcra(tat, now + ahead - 1, step, burst)[0]  # one tick early: still no
            assert gcra(tat, now + ahead, step, burst)[0]  # after the wait: yes
    return admitted


@settings(max_examples=200, deadline=None)
@given(
    step=st.integers(1, 10**6),
    burst=st.integers(1, 40),
    gaps=st.lists(st.integers(0, 3 * 10**6), max_size=80),
)
def test_no_window_admits_more_than_burst_plus_its_length_over_the_interval(
    step: int, burst: int, gaps: list[int]
) -> None:
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    admitted = admit_all(times, step, burst)
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + (admitted[j] - admitted[i]) // step


@settings(max_examples=100, deadline=None)
@given(step=st.integers(1, 50), burst=st.integers(1, 20), length=st.integers(0, 2000))
def test_a_client_asking_every_tick_gets_the_burst_then_the_rate(
    step: int, burst: int, length: int
) -> None:
    asks = [t for t in range(length + 1) for _ in range(burst + 1)]  # more than it may get
    assert len(admit_all(asks, step, burst)) == burst + length // step


@settings(max_examples=100, deadline=None)
@given(
    step=st.integers(1, 10**6),
    burst=st.integers(1, 40),
    gaps=st.lists(st.integers(1, 10**6), min_size=1, max_size=60),
)
def test_requests_one_interval_apart_are_all_admitted(
    step: int, burst: int, gaps: list[int]
) -> None:
    times = [sum(step + g - 1 for g in gaps[: i + 1]) for i in range(len(gaps))]
    assert len(admit_all(times, step, burst)) == len(times)


def test_remaining_counts_down_the_burst_and_a_refusal_says_how_long_to_wait() -> None:
    step, burst, tat = interval(2.0), 3, None
    seen = []
    for _ in range(3):
        ok, tat, ahead = gcra(tat, 0, step, burst)
        seen.append(decision(ok, ahead, step, burst).remaining)
    assert seen == [2, 1, 0]
    ok, _, ahead = gcra(tat, 0, step, burst)
    refused = decision(ok, ahead, step, burst)
    assert (refused.allowed, refused.remaining, refused.wait) == (False, 0, 0.5)
    assert requests_left(0, step, burst) == 3 and requests_left(3 * step, step, burst) == 0


def test_a_tat_beyond_one_span_is_clamped() -> None:
    step, burst = interval(10.0), 2
    ok, _, wait = gcra(10**12, 0, step, burst)  # a clock stepped back, an old limit
    assert not ok and wait == step


def test_intervals_are_whole_microseconds_and_never_zero() -> None:
    assert interval(5.0) == TICKS // 5 and interval(3.0) == 333_333 and interval(1e9) == 1


# -- the stores -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1_900_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["memory", "sqlite"])
def clocked(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Limiter, Clock]]:
    clock = Clock()
    limiter: Limiter = (
        MemoryLimiter(clock) if request.param == "memory" else SqliteLimiter(tmp_path / "k", clock)
    )
    yield limiter, clock
    limiter.close()


def test_a_burst_then_the_steady_rate(clocked: tuple[Limiter, Clock]) -> None:
    limiter, clock = clocked
    got = [limiter.take("p", 2.0, 3) for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert [d.remaining for d in got] == [2, 1, 0, 0]
    assert got[3].wait == 0.5
    clock.t += 0.49
    assert not limiter.take("p", 2.0, 3).allowed
    clock.t += 0.01
    assert limiter.take("p", 2.0, 3).allowed
    assert not limiter.take("p", 2.0, 3).allowed
    assert limiter.take("q", 2.0, 3).allowed  # another principal, its own cell
    clock.t += 0.2
    assert limiter.peek("p", 2.0, 3) == 0
    clock.t += 100
    assert limiter.peek("p", 2.0, 3) == 3


def test_sqlite_drops_the_rows_of_full_buckets(tmp_path: Path) -> None:
    clock = Clock()
    limiter = SqliteLimiter(tmp_path / "keys.sqlite3", clock)
    for i in range(5):
        limiter.take(f"p{i}", 10.0, 2)
    clock.t += 120
    limiter.take("fresh", 10.0, 2)
    rows = limiter._connections.get().execute("SELECT principal FROM limits").fetchall()
    assert rows == [("fresh",)]


def test_the_limiter_follows_the_pool(tmp_path: Path) -> None:
    assert isinstance(open_limiter(make_settings(tmp_path, pool="memory")), MemoryLimiter)
    sqlite = open_limiter(make_settings(tmp_path))
    assert isinstance(sqlite, SqliteLimiter) and sqlite.path == tmp_path / "keys.sqlite3"
    prefix = new_prefix()
    limiter = open_limiter(make_settings(tmp_path, pool="redis", redis_key=prefix))
    assert isinstance(limiter, RedisLimiter)
    assert limiter.key("ip:1") == f"{tagged(prefix)}:rl:ip:1"
    limiter.close()


@pytest.fixture
def redis_limiter() -> Iterator[RedisLimiter]:
    url = redis_url()
    prefix = new_prefix()
    limiter = RedisLimiter(open_url(url), prefix=prefix)
    yield limiter
    limiter.close()
    delete_prefix(prefix)


def test_redis_a_burst_then_the_rate_on_the_servers_clock(
    redis_limiter: RedisLimiter,
) -> None:
    limiter = redis_limiter
    got = [limiter.take("p", 20.0, 5) for _ in range(6)]
    assert [d.allowed for d in got] == [True] * 5 + [False]
    assert [d.remaining for d in got[:5]] == [4, 3, 2, 1, 0]
    assert 0 < got[5].wait <= 0.05
    assert limiter.peek("p", 20.0, 5) == 0
    time.sleep(got[5].wait + 0.01)
    assert limiter.take("p", 20.0, 5).allowed


def test_redis_cells_expire_when_the_bucket_is_full_again(
    redis_limiter: RedisLimiter,
) -> None:
    limiter = redis_limiter
    client = open_url(redis_url())
    try:
        limiter.take("idle", 100.0, 2)  # full again after 10 ms
        ttl = client.pttl(limiter.key("idle"))
        assert 0 < ttl <= 10
        deadline = time.monotonic() + 2.0
        while client.exists(limiter.key("idle")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not client.exists(limiter.key("idle"))
        assert limiter.peek("idle", 100.0, 2) == 2
    finally:
        client.close()


def test_an_unreachable_redis_is_unavailable_without_the_password() -> None:
    limiter = RedisLimiter(open_url("redis://:hunter2secret@127.0.0.1:1/0"), prefix=new_prefix())
    with pytest.raises(Unavailable) as err:
        limiter.take("p", 1.0, 1)
    assert "hunter2secret" not in err.value.message and "hunter2secret" not in repr(limiter)


# -- many processes and threads on one principal ------------------------------------------

RATE, BURST, SECONDS = 40.0, 10, 1.5
THREADS, PROCESSES = 2, 2
MAX_TRIES = 50_000  # per thread: bounds the loop whatever the store's speed


def _hammer(make: Callable[[], Limiter], principal: str, ready: Any, go: Any, out: Any) -> None:
    limiter = make()
    lock = threading.Lock()
    stats = {"admitted": 0, "first": float("inf"), "last": 0.0}

    def work() -> None:
        limiter.peek("warm-up", RATE, BURST)  # this thread's connection is open before the go
        ready.put(1)
        go.wait(30)
        admitted = 0
        first = time.time()
        end = first + SECONDS
        for _ in range(MAX_TRIES):
            if time.time() >= end:
                break
            admitted += limiter.take(principal, RATE, BURST).allowed
        last = time.time()
        with lock:
            stats["admitted"] += admitted
            stats["first"] = min(stats["first"], first)
            stats["last"] = max(stats["last"], last)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    limiter.close()
    out.put((stats["admitted"], stats["first"], stats["last"]))


def _sqlite(path: str) -> Limiter:
    return SqliteLimiter(Path(path))


def _redis(url: str, prefix: str) -> Limiter:
    return RedisLimiter(open_url(url), prefix=prefix)


def assert_exact_count(make: Callable[[], Limiter]) -> None:
    ctx = multiprocessing.get_context("fork")
    out, ready = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    procs = [
        ctx.Process(target=_hammer, args=(make, "key:shared", ready, go, out))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for _ in range(PROCESSES * THREADS):
        ready.get(timeout=60)
    go.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    admitted = sum(r[0] for r in results)
    window = max(r[2] for r in results) - min(r[1] for r in results)
    # never more than the limit allows over the window; at most one cell less (the
    # window is measured around the store's calls, a little wider than what it saw)
    assert BURST + math.floor(RATE * window) - 1 <= admitted <= BURST + RATE * window, (
        admitted,
        window,
    )


@pytest.mark.slow
def test_sqlite_admits_exactly_burst_plus_rate_times_time_across_processes(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "keys.sqlite3")
    SqliteLimiter(Path(path)).close()  # the schema exists before the processes race
    assert_exact_count(lambda: _sqlite(path))


@pytest.mark.slow
def test_redis_admits_exactly_burst_plus_rate_times_time_across_processes() -> None:
    url, prefix = redis_url(), new_prefix()
    try:
        assert_exact_count(lambda: _redis(url, prefix))
    finally:
        delete_prefix(prefix)
