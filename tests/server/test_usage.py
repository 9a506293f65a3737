"""The usage store: daily byte counters that hold a quota across threads and processes."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.server.keys import KeyStore
from quantumrng.server.usage import UsageStore


@pytest.fixture
def usage(tmp_path: Path) -> UsageStore:
    return UsageStore(tmp_path / "keys.sqlite3")


def test_the_counters_share_the_key_stores_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    store = KeyStore(path)
    _, record = store.create("alice", {"drbg"}, None, 100)
    UsageStore(path).consume(record.principal, "2030-01-01", 10, 100)
    assert UsageStore(path).used(record.principal, "2030-01-01") == 10
    assert store.get("alice") == record


def test_consume_counts_up_to_the_limit_and_no_further(usage: UsageStore) -> None:
    assert usage.consume("p", "2030-01-01", 60, 100) == 60
    assert usage.consume("p", "2030-01-01", 50, 100) is None
    assert usage.used("p", "2030-01-01") == 60
    assert usage.consume("p", "2030-01-01", 40, 100) == 100
    assert usage.consume("p", "2030-01-01", 0, 100) == 100
    assert usage.consume("p", "2030-01-01", 1, 100) is None
    assert usage.consume("p", "2030-01-01", 101, 1000) is not None  # other limit, same row
    assert usage.consume("q", "2030-01-01", 101, 100) is None
    assert usage.used("q", "2030-01-01") == 0


def test_a_new_day_starts_from_zero_and_drops_old_days(usage: UsageStore) -> None:
    usage.consume("p", "2030-01-01", 100, 100)
    assert usage.consume("p", "2030-01-02", 100, 100) == 100
    assert usage.used("p", "2030-01-01") == 0


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 500), st.lists(st.integers(0, 200), max_size=40))
def test_consume_never_exceeds_the_limit(
    tmp_path_factory: pytest.TempPathFactory, limit: int, asks: list[int]
) -> None:
    store = UsageStore(tmp_path_factory.mktemp("q") / "k.sqlite3")
    accepted = 0
    for n in asks:
        got = store.consume("p", "2030-01-01", n, limit)
        if got is None:
            assert accepted + n > limit
        else:
            accepted += n
            assert got == accepted
    assert store.used("p", "2030-01-01") == accepted <= limit
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
