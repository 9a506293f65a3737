"""Pool leases (pool/base.py): one holder at a time, fencing tokens that only grow, and a
fenced put that stores nothing once its lease is gone; on every engine."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from quantumrng.errors import EntropyUnavailable, LeaseLost
from quantumrng.pool import MemoryPool, Pool, RedisPool, SqlitePool, TaggedPool
from quantumrng.pool.base import Lease
from tests.blocks import make_blocks
from tests.pool.support import delete_prefix, new_prefix, redis_keys, redis_url

ENGINES = ["memory", "sqlite", "redis", "tagged"]
KEY = bytes(range(32))
NAME = "harvest:os"
SHORT = 0.3  # seconds: a lease the tests let expire
WAIT_SECONDS = 10.0  # generous upper bound for an expiry to be seen on a busy machine

MakePool = Callable[[], Pool]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_pool(engine: str, tmp_path: Path) -> Iterator[MakePool]:
    """Pools of one engine sharing one store (one file, one Redis prefix), closed after."""
    url = redis_url() if engine == "redis" else ""
    prefix = new_prefix()
    path = tmp_path / "pool.sqlite3"
    memory = MemoryPool()
    made: list[Pool] = []

    def make() -> Pool:
        pool: Pool
        if engine == "memory":
            pool = memory
        elif engine == "sqlite":
            pool = SqlitePool(path)
        elif engine == "tagged":
            pool = TaggedPool(SqlitePool(path), KEY)
        else:
            pool = RedisPool(url, prefix=prefix)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()
    if engine == "redis":
        delete_prefix(prefix)


@pytest.fixture
def pool(make_pool: MakePool) -> Pool:
    return make_pool()


def expire(pool: Pool, name: str = NAME) -> None:
    """Wait until nobody holds ``name`` (a short lease ran out)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while pool.lease_holder(name) is not None:
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.02)


def test_one_holder_at_a_time(make_pool: MakePool) -> None:
    first, second = make_pool(), make_pool()
    lease = first.acquire_lease(NAME, "a:1:x", 30)
    assert lease is not None and lease.name == NAME and lease.holder == "a:1:x"
    assert lease.token >= 1
    assert second.acquire_lease(NAME, "b:2:y", 30) is None
    info = second.lease_holder(NAME)
    assert info is not None and (info.holder, info.token) == ("a:1:x", lease.token)
    assert 0 < info.expires_in <= 30
    assert second.acquire_lease("harvest:ibm", "b:2:y", 30) is not None  # another lease


def test_the_holder_acquiring_again_renews_and_keeps_its_token(pool: Pool) -> None:
    lease = pool.acquire_lease(NAME, "a:1:x", SHORT)
    assert lease is not None
    again = pool.acquire_lease(NAME, "a:1:x", 60)
    assert again == lease
    info = pool.lease_holder(NAME)
    assert info is not None and info.expires_in > 30


def test_renew_extends_the_lease(pool: Pool) -> None:
    lease = pool.acquire_lease(NAME, "a:1:x", SHORT)
    assert lease is not None
    assert pool.renew_lease(lease, 60)
    time.sleep(SHORT + 0.1)
    info = pool.lease_holder(NAME)
    assert info is not None and info.token == lease.token and info.expires_in > 30
    assert pool.acquire_lease(NAME, "b:2:y", 60) is None


def test_after_expiry_another_takes_over_with_a_larger_token(make_pool: MakePool) -> None:
    first, second = make_pool(), make_pool()
    old = first.acquire_lease(NAME, "a:1:x", SHORT)
    assert old is not None
    expire(second)
    new = second.acquire_lease(NAME, "b:2:y", 30)
    assert new is not None and new.token > old.token
    assert not first.renew_lease(old, 30)  # the ex-holder cannot extend what it lost
    info = first.lease_holder(NAME)
    assert info is not None and (info.holder, info.token) == ("b:2:y", new.token)


def test_an_expired_holder_acquiring_again_gets_a_new_token(pool: Pool) -> None:
    old = pool.acquire_lease(NAME, "a:1:x", SHORT)
    assert old is not None
    expire(pool)
    assert not pool.renew_lease(old, 30)
    again = pool.acquire_lease(NAME, "a:1:x", 30)
    assert again is not None and again.token > old.token


def test_release_lets_another_take_over_at_once(make_pool: MakePool) -> None:
    first, second = make_pool(), make_pool()
    lease = first.acquire_lease(NAME, "a:1:x", 60)
    assert lease is not None
    first.release_lease(lease)
    assert second.lease_holder(NAME) is None
    new = second.acquire_lease(NAME, "b:2:y", 60)
    assert new is not None and new.token > lease.token
    first.release_lease(lease)  # a stale release changes nothing
    info = second.lease_holder(NAME)
    assert info is not None and info.holder == "b:2:y"


def test_tokens_only_grow(pool: Pool) -> None:
    tokens = []
    for i in range(4):
        lease = pool.acquire_lease(NAME, f"n{i}:1:x", 60)
        assert lease is not None
        tokens.append(lease.token)
        pool.release_lease(lease)
    assert tokens == sorted(set(tokens))


def test_a_fenced_put_by_the_holder_stores(pool: Pool) -> None:
    lease = pool.acquire_lease(NAME, "a:1:x", 60)
    assert lease is not None
    pool.put(make_blocks(3), fence=lease)
    assert pool.level().blocks == 3


def test_a_fenced_put_after_expiry_and_takeover_is_refused_and_stores_nothing(
    make_pool: MakePool,
) -> None:
    paused, leader = make_pool(), make_pool()
    old = paused.acquire_lease(NAME, "a:1:x", SHORT)
    assert old is not None
    paused.put(make_blocks(2), fence=old)
    expire(leader)
    new = leader.acquire_lease(NAME, "b:2:y", 60)
    assert new is not None
    before, recent = leader.level(), leader.recent()
    with pytest.raises(LeaseLost, match="nothing was stored") as refused:
        paused.put(make_blocks(5), fence=old)
    assert refused.value.status == 503
    assert leader.level() == before and leader.recent() == recent
    leader.put(make_blocks(1), fence=new)
    assert leader.level().blocks == before.blocks + 1


def test_a_fenced_put_after_expiry_is_refused_even_with_no_new_holder(pool: Pool) -> None:
    lease = pool.acquire_lease(NAME, "a:1:x", SHORT)
    assert lease is not None
    expire(pool)
    with pytest.raises(LeaseLost):
        pool.put(make_blocks(2), fence=lease)
    assert pool.level().blocks == 0


def test_a_fenced_put_with_a_forged_token_or_holder_is_refused(pool: Pool) -> None:
    lease = pool.acquire_lease(NAME, "a:1:x", 60)
    assert lease is not None
    for forged in (
        Lease(NAME, "a:1:x", lease.token + 1),
        Lease(NAME, "b:2:y", lease.token),
        Lease("harvest:ibm", "a:1:x", lease.token),
    ):
        with pytest.raises(LeaseLost):
            pool.put(make_blocks(1), fence=forged)
    assert pool.level().blocks == 0


def test_a_released_lease_fences_nothing_in(pool: Pool) -> None:
    lease = pool.acquire_lease(NAME, "a:1:x", 60)
    assert lease is not None
    pool.release_lease(lease)
    with pytest.raises(LeaseLost):
        pool.put(make_blocks(1), fence=lease)
    assert pool.level().blocks == 0


BAD_CALLS: dict[str, Callable[[Pool], object]] = {
    "empty name": lambda p: p.acquire_lease("", "a:1:x", 1),
    "upper-case name": lambda p: p.acquire_lease("Harvest", "a:1:x", 1),
    "empty holder": lambda p: p.acquire_lease(NAME, "", 1),
    "holder with a newline": lambda p: p.acquire_lease(NAME, "a\n1", 1),
    "long holder": lambda p: p.acquire_lease(NAME, "a" * 257, 1),
    "zero seconds": lambda p: p.acquire_lease(NAME, "a:1:x", 0),
    "negative seconds": lambda p: p.acquire_lease(NAME, "a:1:x", -1),
    "infinite seconds": lambda p: p.acquire_lease(NAME, "a:1:x", math.inf),
    "nan seconds": lambda p: p.acquire_lease(NAME, "a:1:x", math.nan),
    "over a day": lambda p: p.acquire_lease(NAME, "a:1:x", 86_401),
    "renew with zero token": lambda p: p.renew_lease(Lease(NAME, "a:1:x", 0), 1),
    "bad holder name": lambda p: p.lease_holder("no spaces"),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_lease_arguments_are_refused_and_change_nothing(
    pool: Pool, call: Callable[[Pool], object]
) -> None:
    with pytest.raises((ValueError, TypeError)):
        call(pool)
    assert pool.lease_holder(NAME) is None


def test_a_fence_that_is_no_lease_is_refused(pool: Pool) -> None:
    with pytest.raises(TypeError):
        pool.put(make_blocks(1), fence=("harvest:os", "a", 1))  # type: ignore[arg-type]
    assert pool.level().blocks == 0


def test_a_forged_lease_never_gets_a_block_served(tmp_path: Path) -> None:
    """A store writer may take the lease, but what it puts fails the integrity tag."""
    engine = SqlitePool(tmp_path / "pool.sqlite3")
    tagged = TaggedPool(SqlitePool(tmp_path / "pool.sqlite3"), KEY)
    try:
        forged = engine.acquire_lease(NAME, "forger:1:x", 60)
        assert forged is not None
        engine.put(make_blocks(3), fence=forged)  # accepted by the store, untagged
        with pytest.raises(EntropyUnavailable):
            tagged.take(1)
        assert tagged.integrity_failures == 3
    finally:
        engine.close()
        tagged.close()


# -- engine specifics ------------------------------------------------------------------------


def test_a_schema_3_sqlite_file_gains_the_leases_table(tmp_path: Path) -> None:
    path = tmp_path / "pool.sqlite3"
    SqlitePool(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE leases")
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    pool = SqlitePool(path)
    try:
        assert pool.acquire_lease(NAME, "a:1:x", 60) is not None
    finally:
        pool.close()


def test_the_redis_lease_is_one_key_under_the_pool_prefix() -> None:
    url = redis_url()
    prefix = new_prefix()
    pool = RedisPool(url, prefix=prefix)
    try:
        lease = pool.acquire_lease(NAME, "a:1:x", 60)
        assert lease is not None
        pool.put(make_blocks(1), fence=lease)
        assert f":lease:{NAME}" in redis_keys(prefix)
    finally:
        pool.close()
        delete_prefix(prefix)


# -- concurrent acquirers --------------------------------------------------------------------

RACERS = 6


def _race(spec: tuple[str, str], barrier: Any, results: Any, holder: str) -> None:
    """A racer process: open its own pool on the shared store, then acquire at the barrier."""
    kind, where = spec
    pool: Pool
    if kind == "sqlite":
        pool = SqlitePool(where)
    else:
        url, prefix = where.split(" ", 1)
        pool = RedisPool(url, prefix=prefix)
    try:
        barrier.wait(WAIT_SECONDS)
        lease = pool.acquire_lease(NAME, holder, 60)
        results.put((holder, None if lease is None else lease.token))
    finally:
        pool.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_concurrent_acquirers_across_processes_exactly_one_wins(kind: str, tmp_path: Path) -> None:
    prefix = new_prefix()
    where = str(tmp_path / "pool.sqlite3") if kind == "sqlite" else f"{redis_url()} {prefix}"
    if kind == "sqlite":
        SqlitePool(where).close()  # the schema exists before the race
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(RACERS), context.Queue()
    holders = [f"racer{i}:{i}:{uuid.uuid4().hex[:8]}" for i in range(RACERS)]
    procs = [
        context.Process(target=_race, args=((kind, where), barrier, results, h)) for h in holders
    ]
    for proc in procs:
        proc.start()
    try:
        got = [results.get(timeout=WAIT_SECONDS * 3) for _ in holders]
    finally:
        for proc in procs:
            proc.join(WAIT_SECONDS)
        if kind == "redis":
            delete_prefix(prefix)
    winners = [(h, t) for h, t in got if t is not None]
    assert len(winners) == 1, got
    assert all(proc.exitcode == 0 for proc in procs)


def test_concurrent_acquirers_across_threads_exactly_one_wins(pool: Pool) -> None:
    barrier = threading.Barrier(RACERS)
    won: list[Lease] = []

    def race(i: int) -> None:
        barrier.wait(WAIT_SECONDS)
        lease = pool.acquire_lease(NAME, f"t{i}:1:x", 60)
        if lease is not None:
            won.append(lease)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert len(won) == 1
