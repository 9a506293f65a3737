"""The Redis pool on Redis as it is run in production: the whole pool contract on a
Sentinel-managed master and on a real three-master Cluster, and a Sentinel failover
under load that serves no block twice and recovers without restarting anything."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from quantumrng.block import Block
from quantumrng.config import Settings
from quantumrng.errors import EntropyUnavailable, Unavailable
from quantumrng.pool import Pool, PoolLevel, RedisPool
from quantumrng.storage.redis import open_redis, redacted
from tests.blocks import make_blocks
from tests.pool import test_contract as contract
from tests.pool.support import new_prefix
from tests.redis_servers import ClusterServers, SentinelGroup, redis_cluster, sentinel_group

pytestmark = pytest.mark.slow  # each topology is several server processes

TOPOLOGIES = ["sentinel", "cluster"]

MakePool = Callable[[], Pool]


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelGroup]:
    with sentinel_group("qrng-pool") as group:
        yield group


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterServers]:
    with redis_cluster() as servers:
        yield servers


def open_pool(settings: Settings) -> RedisPool:
    return RedisPool(open_redis(settings), prefix=new_prefix(), name=redacted(settings.redis_url))


@pytest.fixture(params=TOPOLOGIES)
def make_pool(request: pytest.FixtureRequest) -> Iterator[MakePool]:
    """Fresh pools (a new prefix each) on one topology; the servers go with the module."""
    topology: str = request.param
    if topology == "sentinel":
        group: SentinelGroup = request.getfixturevalue("sentinels")
        settings = Settings(redis_url=group.url())
    else:
        nodes: ClusterServers = request.getfixturevalue("cluster")
        settings = Settings(redis_url=nodes.url, redis_cluster=True)
    made: list[Pool] = []

    def make() -> Pool:
        made.append(open_pool(settings))
        return made[-1]

    yield make
    for pool in made:
        pool.close()


@pytest.fixture
def pool(make_pool: MakePool) -> Pool:
    return make_pool()


# The contract (tests/pool/test_contract.py), every test of it, on both topologies.
for _name in dir(contract):
    if _name.startswith("test_"):
        globals()[_name] = getattr(contract, _name)


def test_every_key_of_a_pool_is_in_one_cluster_slot(cluster: ClusterServers) -> None:
    pool = open_pool(Settings(redis_url=cluster.url, redis_cluster=True))
    pool.put(make_blocks(3, "os") + make_blocks(2, "ibm"))
    pool.write_record("state:ibm", b"x")
    pool.take(1)
    client = open_redis(Settings(redis_url=cluster.url, redis_cluster=True))
    home = client.nodes_manager.get_node_from_slot(client.keyslot(f"{pool.prefix}:seq")).port
    held = {}
    for node in cluster.nodes:
        direct = node.client()
        held[node.port] = [
            k for k in direct.scan_iter(match=f"{pool.prefix}:*".replace("{", "[{]"))
        ]
        direct.close()
    assert len(held[home]) >= 6
    assert not any(keys for port, keys in held.items() if port != home)
    assert {client.keyslot(k) for k in held[home]} == {client.keyslot(f"{pool.prefix}:seq")}
    client.close()
    pool.close()


def test_pools_of_many_deployments_spread_over_the_three_masters(cluster: ClusterServers) -> None:
    settings = Settings(redis_url=cluster.url, redis_cluster=True)
    client = open_redis(settings)
    pools = [open_pool(settings) for _ in range(12)]
    homes = set()
    for pool in pools:
        blocks = make_blocks(2)
        pool.put(blocks)
        assert pool.take(2) == blocks
        slot = client.keyslot(f"{pool.prefix}:seq")
        homes.add(client.nodes_manager.get_node_from_slot(slot).port)
        pool.close()
    assert homes == {n.port for n in cluster.nodes}
    client.close()


def test_a_lease_and_a_fenced_put_work_on_every_topology(pool: Pool) -> None:
    lease = pool.acquire_lease("harvest:os", "node-a", 5.0)
    assert lease is not None
    assert pool.acquire_lease("harvest:os", "node-b", 5.0) is None
    blocks = make_blocks(2)
    pool.put(blocks, fence=lease)
    assert pool.take(2) == blocks
    pool.release_lease(lease)


# --- failover under load -------------------------------------------------------------


class Taker(threading.Thread):
    """Takes one block at a time until stopped, keeping every block and every error."""

    def __init__(self, pool: Pool) -> None:
        super().__init__(daemon=True)
        self.pool = pool
        self.stop = threading.Event()
        self.served: list[bytes] = []
        self.unavailable = 0
        self.wrong: list[Exception] = []
        self.last_ok = 0.0
        self.longest_outage = 0.0  # seconds between two answers (a block or "empty")

    def answered(self) -> None:
        now = time.monotonic()
        if self.last_ok:
            self.longest_outage = max(self.longest_outage, now - self.last_ok)
        self.last_ok = now

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.served += [b.data for b in self.pool.take(1)]
                self.answered()
            except EntropyUnavailable:
                self.answered()
                time.sleep(0.01)
            except Unavailable:
                self.unavailable += 1
                time.sleep(0.05)
            except Exception as exc:  # any other outcome is a wrong answer
                self.wrong.append(exc)
                return


class Putter(threading.Thread):
    """Puts one small harvest at a time until stopped; a failed put's blocks are unknown."""

    def __init__(self, pool: Pool) -> None:
        super().__init__(daemon=True)
        self.pool = pool
        self.stop = threading.Event()
        self.acked: list[Block] = []
        self.unknown: list[Block] = []
        self.wrong: list[Exception] = []

    def run(self) -> None:
        for _ in range(2000):  # bounded
            if self.stop.is_set():
                return
            blocks = make_blocks(2)
            try:
                self.pool.put(blocks)
                self.acked += blocks
            except Unavailable:
                self.unknown += blocks
                time.sleep(0.05)
            except Exception as exc:  # any other outcome is a wrong answer
                self.wrong.append(exc)
                return
            time.sleep(0.02)


def drain(pool: Pool, deadline: float) -> list[bytes]:
    """Every block left, one at a time (a command or two may fail while reconnecting)."""
    out: list[bytes] = []
    while time.monotonic() < deadline:
        try:
            out += [b.data for b in pool.take(1)]
        except EntropyUnavailable:
            return out
        except Unavailable:
            time.sleep(0.1)
    raise AssertionError("the pool could not be drained after the failover")


def test_a_sentinel_failover_under_load_serves_no_block_twice_and_recovers() -> None:
    with sentinel_group("qrng-failover") as group:
        settings = Settings(redis_url=group.url())
        pool = open_pool(settings)
        first = make_blocks(300)
        for i in range(0, len(first), 50):
            pool.put(first[i : i + 50])
        taker, putter = Taker(pool), Putter(open_pool_like(pool, settings))
        taker.start()
        putter.start()
        time.sleep(0.5)
        old = group.current_master()
        new = group.failover()
        assert new.port != old.port
        failed_over = time.monotonic()
        time.sleep(1.0)
        putter.stop.set()
        putter.join(30)
        deadline = time.monotonic() + 30
        while taker.last_ok < failed_over and time.monotonic() < deadline:
            time.sleep(0.1)
        taker.stop.set()
        taker.join(30)
        assert not taker.wrong and not putter.wrong, (taker.wrong, putter.wrong)
        assert taker.last_ok > failed_over, "takes did not recover after the failover"
        rest = drain(pool, time.monotonic() + 30)

        served = taker.served + rest
        assert len(served) == len(set(served)), "a block was served twice"
        put = {b.data for b in first + putter.acked + putter.unknown}
        assert set(served) <= put
        acked = {b.data for b in first + putter.acked}
        lost = acked - set(served)
        # only a take that failed can have used up an acknowledged block (never served)
        assert len(lost) <= taker.unavailable, (len(lost), taker.unavailable)
        assert pool.level() == PoolLevel(0, 0, {})
        pool.close()


def open_pool_like(pool: RedisPool, settings: Settings) -> RedisPool:
    """A second pool (its own client) on the same keys as ``pool``."""
    other = RedisPool(open_redis(settings), prefix=pool.prefix[1:-1], name="second")
    return other
