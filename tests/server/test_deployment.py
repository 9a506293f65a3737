"""A whole deployment: real `qrng serve` nodes, each with two workers, on one Redis.

Many clients at once get no error, no DRBG output twice and no pool block twice
(counted: every block the leader added is served once, dropped or still pooled),
one harvester runs in the whole deployment, and a soak leaves each node's memory flat.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from quantumrng.block import BLOCK_BYTES
from quantumrng.server.metrics import PUBLISH_SECONDS
from tests.pool.support import delete_prefix, new_prefix, redis_url
from tests.server.process import Server, run_server

pytestmark = pytest.mark.slow

LEASE = 2.0  # harvest_lease_seconds: renewals every 2/3 s
LOW, HIGH = 64, 512  # pool water marks: the load below takes far less than HIGH
RESEED_BYTES = 1 << 18  # four 64 KiB DRBG requests between reseeds: reseeds take blocks under load
CLIENTS, REQUESTS = 12, 24  # threads, requests each
TAKERS, TAKES, TAKE = 3, 5, 2  # test processes taking blocks directly, takes each, blocks a take
BIG = 1 << 16  # a large DRBG request: a whole SP 800-90A generate call
CHUNK = 16
WAIT = 60.0  # seconds for the pool, the counters or a leader to settle on a busy machine
# not QRNG_*: the test session drops those, and they name settings
SOAK_SECONDS = float(os.environ.get("QUANTUMRNG_SOAK_SECONDS", "45"))
SOAK_WARMUP = 5.0
SOAK_CLIENTS = 4
# Seconds between one soak client's requests: a steady load, not a flood draining the pool
# faster than the source fills it (then raw answers 503 and reseeds fail, by design).
SOAK_PAUSE = 0.02
MIB = 1 << 20

Metrics = dict[str, float]  # sample name with its labels → value


@contextmanager
def deployment(tmp: Path, nodes: int) -> Iterator[tuple[list[Server], dict[str, str]]]:
    """``nodes`` nodes of two workers each on one Redis under a fresh key prefix, sharing one
    pool key; yields them and their shared settings; deletes the prefix's keys after."""
    prefix = new_prefix()
    key_file = tmp / "pool.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32))
    finally:
        os.close(fd)
    shared = {
        "pool": "redis",
        "redis_url": redis_url(),
        "redis_key": prefix,
        "pool_key_file": str(key_file),
        "allow_uncredited_raw": "true",  # the os source earns no credit
        "harvest_lease_seconds": str(LEASE),
        "pool_low_water": str(LOW),
        "pool_high_water": str(HIGH),
        "reseed_bytes": str(RESEED_BYTES),
    }
    try:
        with ExitStack() as stack:
            servers = []
            for i in range(nodes):
                home = tmp / f"node{i}"
                home.mkdir()
                settings = {**shared, "node_name": f"node-{i}"}
                servers.append(
                    stack.enter_context(run_server(home, "--workers", "2", settings=settings))
                )
            yield servers, shared
    finally:
        delete_prefix(prefix)


def scrape(server: Server) -> Metrics:
    """The node's totals from its /metrics (whichever worker answers)."""
    r = httpx.get(server.base_url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    out: Metrics = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def status(server: Server) -> dict[str, Any]:
    r = httpx.get(server.base_url + "/api/v2/status", timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def poll(what: str, read: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    """Call ``read`` until ``done`` holds for its value (at most :data:`WAIT` seconds)."""
    deadline = time.monotonic() + WAIT
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what}: {value}"
        time.sleep(0.2)


def pool_blocks(m: Metrics) -> int:
    return int(m.get("qrng_pool_blocks{source=os}", 0))


def rss_bytes(server: Server) -> int:
    """VmRSS summed over the node's supervisor and workers."""
    total = 0
    for pid in server.processes():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data) - CHUNK + 1, CHUNK)]


class Load:
    """What the clients saw: unexpected answers, DRBG output, raw requests answered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.drbg: list[bytes] = []
        self.raw = 0
        self.requests = 0

    def client(
        self,
        server: Server,
        requests: int,
        until: float = float("inf"),
        *,
        keep: bool = True,
        pause: float = 0.0,
    ) -> None:
        """Send ``requests`` requests (fewer if ``until`` passes first), cycling through
        DRBG bytes, raw bytes, DRBG and raw integers and a whole DRBG generate call."""
        seen: list[bytes] = []
        errors: list[str] = []
        raw = 0
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            for i in range(requests):
                if time.monotonic() >= until:
                    break
                if pause:
                    time.sleep(pause)
                kind = i % 5
                path = (
                    "/api/v2/bytes?n=64&format=hex",
                    "/api/v2/bytes?n=64&format=hex&mode=raw",
                    "/api/v2/integers?n=8&min=1&max=6",
                    "/api/v2/integers?n=8&min=1&max=6&mode=raw",
                    f"/api/v2/bytes?n={BIG}&format=raw",
                )[kind]
                try:
                    r = http.get(path)
                except httpx.HTTPError as exc:
                    errors.append(f"{path}: {type(exc).__name__}")
                    continue
                with self.lock:
                    self.requests += 1
                if r.status_code != 200:
                    errors.append(f"{path}: {r.status_code} {r.text[:200]}")
                    continue
                if kind in (1, 3):
                    raw += 1
                if keep and kind == 0:
                    seen.append(bytes.fromhex(r.json()["data"]))
                elif keep and kind == 4:
                    seen.append(r.content)
        with self.lock:
            self.errors += errors
            self.drbg += seen
            self.raw += raw


def take_directly(shared: dict[str, str]) -> subprocess.Popen[str]:
    """A process that opens the pool from the deployment's settings and takes blocks
    itself; it prints each block's bytes in hex, one a line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    env.update({f"QRNG_{name.upper()}": value for name, value in shared.items()})
    code = (
        "from quantumrng.config import load_settings\n"
        "from quantumrng.pool import open_pool\n"
        "pool = open_pool(load_settings())\n"
        f"for _ in range({TAKES}):\n"
        f"    for block in pool.take({TAKE}):\n"
        "        print(block.data.hex(), flush=True)\n"
        "pool.close()\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def leaders(servers: list[Server]) -> list[str | None]:
    holders = []
    for server in servers:
        leader = status(server)["leader"]
        holders.append(None if leader is None else leader["holder"])
    return holders


def active_harvesters(servers: list[Server]) -> float:
    return sum(scrape(s).get("qrng_harvester_active", 0.0) for s in servers)


def settled(servers: list[Server]) -> list[Metrics]:
    """Every node's metrics once two readings, more than :data:`PUBLISH_SECONDS` apart
    (each worker publishes what it counts outside requests that often), agree on the
    pool's level and every counter that moves blocks: no take or put is in flight."""
    names = (
        "qrng_drbg_reseeds_total",
        "qrng_raw_output_bytes_total",
        "qrng_harvester_blocks_added_total",
        "qrng_pool_integrity_failures_total",
    )

    def read() -> list[Metrics]:
        return [scrape(s) for s in servers]

    def key(ms: list[Metrics]) -> tuple[float, ...]:
        return (pool_blocks(ms[0]), *(m.get(n, 0.0) for m in ms for n in names))

    last = read()
    deadline = time.monotonic() + WAIT
    while True:
        time.sleep(2 * PUBLISH_SECONDS)
        now = read()
        if key(now) == key(last):
            return now
        assert time.monotonic() < deadline, "the counters never settled"
        last = now


def test_three_nodes_of_two_workers_serve_many_clients_each_block_once_with_one_harvester(
    tmp_path: Path,
) -> None:
    with deployment(tmp_path, 3) as (servers, shared):
        # The leader fills the pool to HIGH at once, then each worker's start-up seeding
        # takes a block; HIGH / 2 is more than the load below takes (about 200 blocks).
        poll("pool filled", lambda: pool_blocks(scrape(servers[0])), lambda n: n >= HIGH // 2)
        load = Load()
        threads = [
            threading.Thread(target=load.client, args=(servers[i % len(servers)], REQUESTS))
            for i in range(CLIENTS)
        ]
        takers = [take_directly(shared) for _ in range(TAKERS)]
        for t in threads:
            t.start()
        during = active_harvesters(servers)
        for t in threads:
            t.join(WAIT * 2)
        assert not any(t.is_alive() for t in threads), "a client hung"
        taken: list[bytes] = []
        for proc in takers:
            out, err = proc.communicate(timeout=WAIT)
            assert proc.returncode == 0, err
            taken += [bytes.fromhex(line) for line in out.split()]

        assert load.errors == [], load.errors
        assert load.requests == CLIENTS * REQUESTS
        drbg = [c for data in load.drbg for c in chunks(data)]
        assert len(drbg) > 10_000
        assert len(set(drbg)) == len(drbg), "a 16-byte chunk of DRBG output repeats"
        assert len(taken) == TAKERS * TAKES * TAKE
        assert all(len(b) == BLOCK_BYTES for b in taken)
        assert len(set(taken)) == len(taken), "two test processes took the same block"

        holders = leaders(servers)
        assert holders[0] is not None and holders.count(holders[0]) == len(holders), holders
        metrics = settled(servers)
        assert during == 1.0, f"{during} harvesters active under load"
        assert sum(m.get("qrng_harvester_active", 0.0) for m in metrics) == 1.0
        leading = holders[0].rsplit(":", 2)[0]
        for i, m in enumerate(metrics):
            harvested = (
                m.get("qrng_harvester_harvests_total", 0.0),
                m.get("qrng_harvester_blocks_added_total", 0.0),
            )
            if f"node-{i}" == leading:
                assert min(harvested) > 0, (i, harvested)
            else:
                assert harvested == (0.0, 0.0), (i, harvested)

        # Every block the leader added is now in exactly one place: seeded a DRBG,
        # served raw (the server takes whole blocks and counts their bytes), taken by
        # a test process, dropped for its tag, or still in the pool.
        def total(name: str) -> int:
            return int(sum(m.get(name, 0.0) for m in metrics))

        raw_bytes = total("qrng_raw_output_bytes_total")
        assert raw_bytes % BLOCK_BYTES == 0
        accounts = {
            "reseeds": total("qrng_drbg_reseeds_total"),
            "raw": raw_bytes // BLOCK_BYTES,
            "taken_by_tests": len(taken),
            "integrity_drops": total("qrng_pool_integrity_failures_total"),
            "left": pool_blocks(metrics[0]),
            "added": total("qrng_harvester_blocks_added_total"),
        }
        print(f"\nblocks: {accounts}")
        assert accounts["integrity_drops"] == 0, accounts
        assert accounts["raw"] >= load.raw, accounts
        assert accounts["reseeds"] > 2 * len(servers), accounts  # more than start-up seedings
        used = sum(accounts[k] for k in ("reseeds", "raw", "taken_by_tests", "integrity_drops"))
        assert used + accounts["left"] == accounts["added"], accounts


def test_a_soak_of_two_nodes_of_two_workers_keeps_each_nodes_memory_flat(
    tmp_path: Path,
) -> None:
    with deployment(tmp_path, 2) as (servers, _):
        load = Load()
        start = time.monotonic()
        warm = start + SOAK_WARMUP
        end = warm + SOAK_SECONDS
        threads = [
            threading.Thread(
                target=load.client,
                args=(servers[i % len(servers)], 1_000_000, end),
                kwargs={"keep": False, "pause": SOAK_PAUSE},
            )
            for i in range(SOAK_CLIENTS)
        ]
        for t in threads:
            t.start()
        time.sleep(SOAK_WARMUP)
        before = [rss_bytes(s) for s in servers]
        at_warm = load.requests
        for t in threads:
            t.join(SOAK_SECONDS + WAIT)
        assert not any(t.is_alive() for t in threads), "a client hung"
        after = [rss_bytes(s) for s in servers]
        report = ", ".join(
            f"node-{i}: {b / MIB:.1f} MiB -> {a / MIB:.1f} MiB"
            for i, (b, a) in enumerate(zip(before, after, strict=True))
        )
        print(f"\nsoak {SOAK_SECONDS:g}s, {load.requests} requests: RSS {report}")
        assert load.errors == [], load.errors[:10]
        assert load.requests > at_warm
        for b, a in zip(before, after, strict=True):
            assert a < b * 1.25 + 20 * MIB, report
