"""Limits, keys and charges with real `qrng serve` processes: three nodes on one Redis
share one rate limit and one key store; an aborted stream is charged what it sent."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from quantumrng.server.randomness import STREAM_CHUNK
from tests.pool.support import delete_prefix, new_prefix, redis_url
from tests.server.process import Server, run_server

pytestmark = pytest.mark.slow

RATE, BURST = 5, 5
WINDOW = 3.0  # seconds of requests spread over the nodes
PAUSE = 0.005  # between one client's requests: enough to see each cell as it comes
REVOKED_WITHIN = 1.5  # seconds: the 1 s key cache of each node, and some slack


def qrng_keys(prefix: str, *args: str) -> str:
    """Run `qrng keys ... --pool redis` as an operator would; return its standard output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    env["QRNG_REDIS_KEY"] = prefix
    flags = ("--pool", "redis", "--redis-url", redis_url())
    done = subprocess.run(
        [sys.executable, "-m", "quantumrng", "keys", *args, *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Server], str]]:
    """Three nodes (one worker each) on one Redis under a fresh key prefix, sealing the
    pool's blocks with one key (the first node makes it)."""
    prefix = new_prefix()
    settings = {
        "pool": "redis",
        "redis_url": redis_url(),
        "redis_key": prefix,
        "require_auth": "true",
        "pool_key_file": str(tmp_path_factory.mktemp("deployment") / "pool.key"),
    }
    try:
        with ExitStack() as stack:
            nodes = [
                stack.enter_context(
                    run_server(tmp_path_factory.mktemp(f"node{i}"), settings=settings)
                )
                for i in range(3)
            ]
            yield nodes, prefix
    finally:
        delete_prefix(prefix)


def test_one_rate_limit_spread_over_three_nodes_is_the_limit_not_three_times_it(
    shared: tuple[list[Server], str],
) -> None:
    nodes, prefix = shared
    key = qrng_keys(
        prefix, "create", "--name", "spread", "--rate", str(RATE), "--burst", str(BURST)
    )
    headers = {"Authorization": f"Bearer {key}"}
    statuses: list[int] = []
    lock = threading.Lock()
    go = threading.Barrier(len(nodes) + 1)
    span: dict[str, float] = {}

    def client(node: Server) -> None:
        seen: list[int] = []
        with httpx.Client(base_url=node.base_url, headers=headers, timeout=10) as http:
            http.get("/ready")  # the connection is open before the window starts
            go.wait(30)
            end = span["start"] + WINDOW
            for _ in range(2000):
                if time.time() >= end:
                    break
                r = http.get("/api/v2/bytes?n=8")
                assert r.status_code in (200, 429), r.text
                if r.status_code == 429:
                    assert int(r.headers["retry-after"]) >= 1
                seen.append(r.status_code)
                time.sleep(PAUSE)
        with lock:
            statuses.extend(seen)
            span["end"] = max(span.get("end", 0.0), time.time())

    threads = [threading.Thread(target=client, args=(node,)) for node in nodes]
    for t in threads:
        t.start()
    span["start"] = time.time()
    go.wait(30)
    for t in threads:
        t.join(60)
    window = span["end"] - span["start"]
    admitted = statuses.count(200)
    assert BURST + math.floor(RATE * window) - 1 <= admitted <= BURST + RATE * window, (
        admitted,
        window,
    )
    assert statuses.count(429) > admitted  # the clients asked far more than the limit


def test_a_key_made_with_the_cli_works_on_every_node_and_its_revocation_reaches_all(
    shared: tuple[list[Server], str],
) -> None:
    nodes, prefix = shared
    key = qrng_keys(prefix, "create", "--name", "everywhere")
    headers = {"X-API-Key": key}
    for node in nodes:  # each node verifies it, and caches it
        assert httpx.get(f"{node.base_url}/api/v2/bytes?n=8", headers=headers).status_code == 200
    assert "revoked key 'everywhere'" in qrng_keys(prefix, "revoke", "everywhere")
    revoked_at = time.monotonic()
    refused: dict[str, float] = {}
    while len(refused) < len(nodes) and time.monotonic() - revoked_at < 10:
        for node in nodes:
            if node.base_url not in refused:
                r = httpx.get(f"{node.base_url}/api/v2/bytes?n=8", headers=headers)
                assert r.status_code in (200, 401)
                if r.status_code == 401:
                    refused[node.base_url] = time.monotonic() - revoked_at
        time.sleep(0.02)
    assert len(refused) == len(nodes)
    assert max(refused.values()) <= REVOKED_WITHIN, refused


ASKED = 256 * STREAM_CHUNK
READ = 4 * STREAM_CHUNK
DAILY = 1 << 30
IN_FLIGHT = 32 * STREAM_CHUNK  # socket buffers and the server's transport, generously


def test_an_aborted_stream_is_charged_for_the_bytes_sent_not_those_asked(
    tmp_path: Path,
) -> None:
    with run_server(tmp_path, settings={"daily_bytes": str(DAILY)}) as server:
        read = 0
        with (
            httpx.Client(base_url=server.base_url, timeout=30) as http,
            http.stream("GET", f"/api/v2/bytes?n={ASKED}&format=raw") as r,
        ):
            assert r.status_code == 200
            assert int(r.headers["ratelimit-remaining"]) == DAILY - ASKED
            for chunk in r.iter_raw():
                read += len(chunk)
                if read >= READ:
                    break
        deadline = time.monotonic() + 20
        while True:
            usage = httpx.get(f"{server.base_url}/api/v2/usage").json()
            charged = DAILY - usage["bytes_left"]
            if charged < ASKED or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert read <= charged <= read + IN_FLIGHT, (read, charged)
    assert charged % STREAM_CHUNK == 0  # whole chunks handed to the connection, no more
