"""``/metrics`` always answers promptly with its counters, whatever the pool does."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantumrng.errors import Unavailable
from quantumrng.node import Node
from quantumrng.pool.base import PoolLevel
from quantumrng.server import create_app
from quantumrng.server.metrics import POOL_READ_SECONDS, PoolProbe
from quantumrng.server.service import POOL_ANSWER_SECONDS
from tests.blocks import make_blocks
from tests.conftest import make_settings
from tests.server.support import TestClient, serve_memory


def metric(text: str, name: str) -> float:
    """The value of the unlabelled sample ``name`` in an exposition."""
    (line,) = [line for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(line.split()[1])


@pytest.fixture
def frozen_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own on a free loopback port (never the shared one)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.skip("our own redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", server
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def over_redis(
    tmp_path: Path, frozen_redis: tuple[str, subprocess.Popen[bytes]]
) -> Iterator[tuple[TestClient, subprocess.Popen[bytes]]]:
    """An app over 8 blocks in this test's own Redis, and that Redis's process (to freeze)."""
    url, server = frozen_redis
    settings = make_settings(tmp_path / "data", pool="redis", redis_url=url, source="os")
    node = Node(settings, harvest_on_demand=False)
    try:
        node.pool.put(make_blocks(8))
        yield TestClient(create_app(settings, node), raise_server_exceptions=False), server
    finally:
        os.kill(server.pid, signal.SIGCONT)
        node.close()


def test_metrics_answer_within_two_seconds_with_redis_frozen_and_keep_counters(
    over_redis: tuple[TestClient, subprocess.Popen[bytes]],
) -> None:
    client, server = over_redis
    assert client.get("/health").status_code == 200
    before = client.get("/metrics").text
    assert (
        metric(before, "qrng_pool_up") == 1.0 and metric(before, "qrng_pool_errors_total") == 0
    )
    assert 'qrng_pool_blocks{source="os"} 8.0' in before
    os.kill(server.pid, signal.SIGSTOP)
    for scrape in (1, 2):
        started = time.monotonic()
        r = client.get("/metrics")
        assert time.monotonic() - started < 2.0
        assert r.status_code == 200
        assert metric(r.text, "qrng_pool_up") == 0.0
        assert metric(r.text, "qrng_pool_errors_total") == scrape
        assert "\nqrng_pool_blocks{" not in r.text
        assert 'qrng_http_requests_total{method="GET",route="/health",status="200"} 1.0' in (
            r.text
        )
        assert "qrng_drbg_reseeds_total" in r.text
    os.kill(server.pid, signal.SIGCONT)
    deadline = time.monotonic() + 15  # the hung read finishes (or times out) first
    while metric(client.get("/metrics").text, "qrng_pool_up") != 1.0:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_failing_pool_is_a_gauge_not_a_503(tmp_path: Path) -> None:
    served = serve_memory(tmp_path)

    def broken() -> PoolLevel:
        raise Unavailable("the Redis pool failed: TimeoutError")

    collector = served.app.state.context.metrics._node
    collector.probe = PoolProbe(broken)
    r = served.client.get("/metrics")
    assert r.status_code == 200
    assert metric(r.text, "qrng_pool_up") == 0.0 and metric(r.text, "qrng_pool_errors_total") == 1
    assert "qrng_pool_credited_bits" not in r.text


def test_a_healthy_pool_shows_its_level_and_no_integrity_failures(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, source="file", blocks=5)
    text = served.client.get("/metrics").text
    assert metric(text, "qrng_pool_up") == 1.0
    assert metric(text, "qrng_pool_credited_bits") == 5 * 512
    assert metric(text, "qrng_pool_integrity_failures_total") == 0


def test_one_read_in_flight_however_many_scrapes_wait() -> None:
    release = threading.Event()
    reads: list[int] = []

    def hanging() -> PoolLevel:
        reads.append(1)
        release.wait(timeout=10)
        return PoolLevel(blocks=1, credited_bits=512, by_source={"os": 1})

    probe = PoolProbe(hanging, timeout=0.05)
    assert [probe.level() for _ in range(5)] == [None] * 5
    assert len(reads) == 1 and probe.errors == 5
    release.set()
    deadline = time.monotonic() + 5
    while (level := probe.level()) is None:
        assert time.monotonic() < deadline
    assert level.blocks == 1


def test_the_default_bound_is_well_under_two_seconds() -> None:
    assert POOL_READ_SECONDS <= 1.0


def test_status_and_ready_answer_503_promptly_with_redis_frozen(
    over_redis: tuple[TestClient, subprocess.Popen[bytes]],
) -> None:
    client, server = over_redis
    assert client.get("/api/v2/status").status_code == 200
    assert client.get("/ready").status_code == 200
    os.kill(server.pid, signal.SIGSTOP)
    for path in ("/api/v2/status", "/ready"):
        started = time.monotonic()
        r = client.get(path)
        assert time.monotonic() - started < POOL_ANSWER_SECONDS + 1.5, path
        assert r.status_code == 503, path
        assert r.json()["error"]["code"] == "unavailable"
        assert "did not answer in time" in r.json()["error"]["message"]
        assert "retry-after" in r.headers
    assert client.get("/health").status_code == 200
