"""Faults under load, against real `qrng serve` nodes on a private Redis: a Redis restart
(clean and kill -9), a Sentinel failover and a kill -9 of the harvest leader.

Every answer is 200 or a well-formed 503 with ``Retry-After`` (never a 500, never a
hang: every request has a timeout); afterwards every node recovers within a bound
without a restart, and no pool block is lost or handed out twice across the fault.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from quantumrng.errors import Unavailable
from quantumrng.pool import TaggedPool, open_pool
from tests.conftest import make_settings
from tests.redis_servers import RedisServer, persistent_server, redis_server, sentinel_group
from tests.server.process import Server, run_server
from tests.server.test_leader import LEASE, SLACK, status, wait_for

REQUEST_TIMEOUT = 10.0  # seconds: an answer later than this counts as a hang
RECOVERY = 30.0  # seconds for every node to serve again once Redis is back
RESEED_BYTES = 1 << 20  # each worker's DRBG budget without a pool block
DRBG_BYTES = 32 << 10  # one DRBG request
RAW_BYTES = 64  # one raw request: one pool block
REDIS_KEY = "faults"


def pool_key(tmp: Path) -> Path:
    """The one block integrity key every node and the test share (32 bytes, owner only)."""
    path = tmp / "pool.key"
    path.write_bytes(secrets.token_bytes(32))
    path.chmod(0o600)
    return path


def node_settings(key: Path, **extra: str) -> dict[str, str]:
    """What every node of one deployment shares (source ``os``, which earns no credit)."""
    return {
        "pool": "redis",
        "redis_key": REDIS_KEY,
        "pool_key_file": str(key),
        "allow_uncredited_raw": "1",
        "harvest_lease_seconds": str(LEASE),
        **extra,
    }


def start_nodes(
    stack: ExitStack, tmp: Path, settings: Mapping[str, str], names: list[str], *flags: str
) -> list[Server]:
    nodes = []
    for name in names:
        (tmp / name).mkdir()
        nodes.append(
            stack.enter_context(
                run_server(tmp / name, *flags, settings={**settings, "node_name": name})
            )
        )
    return nodes


@contextlib.contextmanager
def direct_pool(tmp: Path, **settings: str) -> Iterator[TaggedPool]:
    """The pool the nodes share, opened by the test as a node would open it."""
    pool = open_pool(make_settings(tmp / "direct", pool="redis", redis_key=REDIS_KEY, **settings))
    try:
        yield pool
    finally:
        pool.close()


def take(pool: TaggedPool, n: int, taken: list[bytes]) -> None:
    taken.extend(block.data for block in pool.take(n))


@dataclass(frozen=True)
class Answer:
    node: int
    kind: str  # "raw", "drbg" or "ready"
    status: int  # 0: no answer within REQUEST_TIMEOUT, or the connection failed
    problem: str  # "" when the answer is well-formed for its status
    size: int  # bytes of randomness served
    at: float


def check(kind: str, n: int, response: httpx.Response) -> tuple[str, int]:
    """What is wrong with ``response`` (``""`` if nothing) and the bytes it served."""
    if response.status_code == 503:
        if "retry-after" not in response.headers:
            return "503 without Retry-After", 0
        if response.headers.get("content-type") != "application/json":
            return "503 not JSON", 0
        body = response.json()
        if set(body) != {"error"} or not body["error"].get("message"):
            return f"503 body {body!r}", 0
        return "", 0
    if response.status_code != 200:
        return f"status {response.status_code}: {response.text[:200]}", 0
    if kind == "ready":
        return "", 0
    if kind == "raw":
        body = response.json()
        data = base64.b64decode(body["data"])
        if body["mode"] != "raw" or len(data) != n:
            return f"raw answer of {len(data)} bytes in mode {body['mode']}", 0
        return "", n
    if len(response.content) != n:
        return f"DRBG answer of {len(response.content)} bytes", 0
    return "", n


REQUESTS: dict[str, tuple[str, dict[str, Any], int]] = {
    "raw": ("/api/v2/bytes", {"n": RAW_BYTES, "mode": "raw"}, RAW_BYTES),
    "drbg": ("/api/v2/bytes", {"n": DRBG_BYTES, "format": "raw"}, DRBG_BYTES),
    "ready": ("/ready", {}, 0),
}


def ask(client: httpx.Client, node: int, kind: str) -> Answer:
    path, params, n = REQUESTS[kind]
    try:
        response = client.get(path, params=params)
    except httpx.TransportError as exc:
        return Answer(node, kind, 0, f"no answer: {type(exc).__name__}", 0, time.monotonic())
    problem, size = check(kind, n, response)
    return Answer(node, kind, response.status_code, problem, size, time.monotonic())


def probe(server: Server, node: int, kind: str) -> Answer:
    """One request on a new connection (so either worker may answer it)."""
    with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT) as client:
        return ask(client, node, kind)


@dataclass
class Load:
    """Client threads asking every node for raw and DRBG output until stopped (bounded)."""

    nodes: list[Server]
    kinds: tuple[str, ...] = ("raw", "drbg")
    pause: float = 0.02  # between one thread's requests
    limit: int = 3000  # requests per thread at most
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, node: int, kind: str) -> None:
        with httpx.Client(base_url=self.nodes[node].base_url, timeout=REQUEST_TIMEOUT) as client:
            for _ in range(self.limit):
                if self._stop.is_set():
                    return
                self.answers.append(ask(client, node, kind))
                self._stop.wait(self.pause)

    def __enter__(self) -> Load:
        for node in range(len(self.nodes)):
            for kind in self.kinds:
                thread = threading.Thread(target=self._run, args=(node, kind), daemon=True)
                self._threads.append(thread)
                thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 5)
        assert not any(t.is_alive() for t in self._threads), "a client thread hung"

    def of(self, node: int, kind: str) -> list[Answer]:
        return [a for a in list(self.answers) if a.node == node and a.kind == kind]


def assert_no_error_but_503(answers: list[Answer]) -> None:
    bad = [a for a in answers if a.problem]
    assert not bad, bad[:5]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` until it holds; return the seconds it took."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.2)
    return time.monotonic() - start


def serving(nodes: list[Server], answers: list[Answer]) -> bool:
    """Every node answers 200 to readiness, raw and DRBG, on new connections, twice each."""
    for index, server in enumerate(nodes):
        for kind in ("ready", "raw", "drbg", "ready", "raw", "drbg"):
            answer = probe(server, index, kind)
            answers.append(answer)
            if answer.status != 200:
                return False
    return True


def entries(server: RedisServer) -> list[bytes]:
    """Every block entry the pool holds, in order (the source is ``os``)."""
    client = server.client()
    try:
        return list(client.lrange(f"{{{REDIS_KEY}}}:b:os", 0, -1))
    finally:
        client.close()


def drbg_spent(load: Load, last: int = 6) -> bool:
    """Each node's last ``last`` DRBG answers are 503s: its reseed budget is spent."""
    return all(
        len(d := load.of(i, "drbg")) >= last and all(a.status == 503 for a in d[-last:])
        for i in range(len(load.nodes))
    )


def returned(taken: list[bytes], held: list[bytes]) -> list[int]:
    """Which taken blocks the pool holds again (a take undone): their indexes."""
    return [i for i, data in enumerate(taken) if any(data in entry for entry in held)]


@dataclass
class Taker:
    """A thread taking one block at a time straight from the pool, as a node would."""

    pool: TaggedPool
    taken: list[bytes]
    pause: float = 0.05
    limit: int = 1000
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        for _ in range(self.limit):
            if self._stop.is_set():
                return
            try:
                take(self.pool, 1, self.taken)
            except Unavailable:
                self.refused += 1
            self._stop.wait(self.pause)

    def __enter__(self) -> Taker:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(REQUEST_TIMEOUT + 5)
        assert not self._thread.is_alive(), "the taker hung"


def wait_for_refill(pool: TaggedPool, drained: int, low_water: int) -> None:
    """The harvester puts blocks again: the level rises above ``drained`` and ``low_water``."""
    wait_until(
        lambda: pool.level().blocks > max(drained, low_water - 1), 15.0, "a refill of the pool"
    )


def quiet_level(pool: TaggedPool, low_water: int, timeout: float = 20.0) -> int:
    """Wait until the pool level is at least ``low_water`` and still for a second."""
    last = -1
    deadline = time.monotonic() + timeout
    while True:
        level = pool.level().blocks
        if level == last and level >= low_water:
            return level
        assert time.monotonic() < deadline, f"pool level never settled (last {level})"
        last = level
        time.sleep(1.0)


@pytest.mark.slow
def test_a_redis_restart_under_load_fails_closed_then_recovers_losing_no_block(
    tmp_path: Path,
) -> None:
    low, high = 64, 256
    with persistent_server() as redis, ExitStack() as stack:
        shared = node_settings(
            pool_key(tmp_path),
            redis_url=redis.url,
            reseed_bytes=str(RESEED_BYTES),
            pool_low_water=str(low),
            pool_high_water=str(high),
        )
        nodes = start_nodes(stack, tmp_path, shared, ["node-a", "node-b"], "--workers", "2")
        pool = stack.enter_context(
            direct_pool(tmp_path, redis_url=redis.url, pool_key_file=shared["pool_key_file"])
        )
        taken: list[bytes] = []
        probes: list[Answer] = []
        for crash in (False, True):
            with Load(nodes) as before:
                time.sleep(2.0)
            assert_no_error_but_503(before.answers)
            assert any(a.status == 200 for a in before.answers if a.kind == "raw")
            take(pool, 8, taken)

            quiet_level(pool, low)
            held = entries(redis)
            if crash:
                redis.kill()
            else:
                redis.stop()
            with Load(nodes) as outage:
                stop = time.monotonic() + 20.0
                while not drbg_spent(outage) and time.monotonic() < stop:
                    time.sleep(0.2)
                for index, server in enumerate(nodes):
                    for _ in range(3):
                        ready = probe(server, index, "ready")
                        probes.append(ready)
                        assert ready.status == 503, ready
            assert_no_error_but_503(outage.answers)
            raw = [a for a in outage.answers if a.kind == "raw"]
            assert raw and all(a.status == 503 for a in raw)
            assert drbg_spent(outage), "DRBG output did not fail closed within 20 s of the outage"
            for index in range(len(nodes)):
                served = sum(a.size for a in outage.of(index, "drbg"))
                assert served <= 2 * RESEED_BYTES, (index, served)  # two workers' budgets
            assert any(a.status == 200 for a in outage.answers if a.kind == "drbg")
            with pytest.raises(Unavailable):
                pool.take(1)

            redis.start()
            assert entries(redis) == held  # nothing lost, nothing came back
            assert not returned(taken, held)
            with Load(nodes) as after:
                waited = wait_until(lambda: serving(nodes, probes), RECOVERY, "recovery")
                time.sleep(1.0)
            assert_no_error_but_503(after.answers)
            assert waited < RECOVERY
            take(pool, 8, taken)

            level = pool.level().blocks
            take(pool, max(level - low + 8, 1), taken)  # below the low-water mark
            wait_for_refill(pool, pool.level().blocks, low)
        assert_no_error_but_503(probes)
        assert len(set(taken)) == len(taken)  # no block taken twice across both restarts
        assert not returned(taken, entries(redis))
        assert all(server.proc.poll() is None for server in nodes)


@pytest.mark.slow
def test_a_sentinel_failover_under_load_answers_only_200_or_503_then_recovers(
    tmp_path: Path,
) -> None:
    with sentinel_group() as group, ExitStack() as stack:
        key = pool_key(tmp_path)
        by_url = node_settings(key, redis_url=group.url())
        by_settings = node_settings(
            key, redis_sentinels=group.sentinel_addresses, redis_master=group.master_name
        )
        nodes = [
            *start_nodes(stack, tmp_path, by_url, ["node-a"]),
            *start_nodes(stack, tmp_path, by_settings, ["node-b"]),
        ]
        pool = stack.enter_context(
            direct_pool(tmp_path, redis_url=group.url(), pool_key_file=str(key))
        )
        taken: list[bytes] = []
        take(pool, 8, taken)
        probes: list[Answer] = []
        old = group.current_master().port
        with Load(nodes) as load, Taker(pool, taken):
            time.sleep(1.0)
            before = len(taken)
            new = group.failover()
            waited = wait_until(lambda: serving(nodes, probes), RECOVERY, "recovery")
            during = len(taken)
            time.sleep(1.0)
        assert new.port != old
        assert before > 0 and len(taken) > during  # the taker took before and after
        assert not returned(taken, entries(new))  # no take undone by the failover
        assert_no_error_but_503(load.answers + probes)
        assert waited < RECOVERY
        take(pool, 8, taken)
        assert len(set(taken)) == len(taken)
        assert all(server.proc.poll() is None for server in nodes)


@pytest.mark.slow
def test_kill_9_of_the_harvest_leader_under_load_is_unseen_by_the_other_nodes_clients(
    tmp_path: Path,
) -> None:
    low, high = 128, 512
    with redis_server(persistent=False) as redis, ExitStack() as stack:
        shared = node_settings(
            pool_key(tmp_path),
            redis_url=redis.url,
            pool_low_water=str(low),
            pool_high_water=str(high),
        )
        names = ["node-a", "node-b", "node-c"]
        nodes = start_nodes(stack, tmp_path, shared, names)
        pool = stack.enter_context(
            direct_pool(tmp_path, redis_url=redis.url, pool_key_file=shared["pool_key_file"])
        )
        wait_until(lambda: pool.level().blocks >= high - 64, 30.0, "a full pool")
        leader = status(nodes[0])["leader"]
        index = names.index(leader["node"])
        survivors = [n for i, n in enumerate(nodes) if i != index]
        with Load(survivors, pause=0.05) as load:
            time.sleep(1.0)
            for pid in nodes[index].processes():
                os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            nodes[index].proc.wait(10)
            bound = LEASE + LEASE / 3 + SLACK

            def took_over() -> bool:
                return any(status(s)["harvester"]["active"] for s in survivors)

            wait_until(took_over, bound, "another node leading")
            waited = time.monotonic() - killed
            time.sleep(1.0)
        assert waited <= bound
        now = wait_for(survivors[0], lambda s: s["leader"]["token"] > leader["token"], 5.0)
        assert now["leader"]["node"] in {n for i, n in enumerate(names) if i != index}
        assert load.answers and all(a.status == 200 and not a.problem for a in load.answers), [
            a for a in load.answers if a.status != 200 or a.problem
        ][:5]
