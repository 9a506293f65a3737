"""``/metrics`` always answers promptly with its counters, whatever the pool does."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from quantumrng.errors import ConfigError, Unavailable
from quantumrng.node import Node
from quantumrng.pool.base import PoolLevel
from quantumrng.server import create_app
from quantumrng.server.metrics import (
    MULTIPROC_ENV,
    POOL_READ_SECONDS,
    PUBLISH_SECONDS,
    Metrics,
    PoolProbe,
    _worker_alive,
    multiprocess_metrics,
    prepare_multiprocess_dir,
)
from quantumrng.server.service import POOL_ANSWER_SECONDS
from tests.blocks import make_blocks
from tests.conftest import make_settings
from tests.server.process import Server, run_server
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
    assert metric(before, "qrng_pool_up") == 1.0 and metric(before, "qrng_pool_errors_total") == 0
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
        assert 'qrng_http_requests_total{method="GET",route="/health",status="200"} 1.0' in (r.text)
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


# -- several workers: a scrape reports the node's totals -------------------------------------

ROUTE = "/api/v1/qrng/get_bits"
REQUESTS = f'qrng_http_requests_total{{method="GET",route="{ROUTE}",status="200"}}'
SERVED = 'qrng_served_random_bytes_total{mode="drbg"}'
LATENCY = "qrng_http_request_duration_seconds"
WORKER = """
import sys
from pathlib import Path
from quantumrng.config import load_settings
from quantumrng.node import Node
from quantumrng.server.metrics import Metrics

data, directory, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
settings = load_settings(overrides={"data_dir": data, "pool": "memory", "source": "os"}, environ={})
metrics = Metrics(Node(settings, harvest_on_demand=False), directory=directory)
for _ in range(n):
    metrics.record(sys.argv[4], "GET", 200, 0.002)
    metrics.served("drbg", 64)
print("ready", flush=True)
sys.stdin.readline()
"""


def samples(text: str) -> dict[str, float]:
    """Every sample of an exposition, by name and labels."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


@contextmanager
def other_worker(tmp_path: Path, directory: Path, requests: int) -> Iterator[subprocess.Popen[str]]:
    """A process of its own writing ``requests`` requests and draws into ``directory``."""
    with subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path / "other"), str(directory), str(requests),
         ROUTE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[Metrics, Path]]:
    """Multiprocess metrics of a seeded node in this process, over a fresh directory."""
    directory = tmp_path / "metrics"
    directory.mkdir(mode=0o700)
    settings = make_settings(tmp_path / "data", pool="memory", source="os")
    node = Node(settings, harvest_on_demand=False)
    node.pool.put(make_blocks(4, source="os"))
    node.engine.reseed()
    metrics = Metrics(node, directory=directory)
    try:
        yield metrics, directory
    finally:
        metrics.close()
        node.close()


def gauge_files(directory: Path, pid: int) -> list[str]:
    return sorted(p.name for p in directory.glob(f"gauge_*_{pid}.db"))


def test_one_worker_keeps_a_registry_per_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    first, second = serve_memory(tmp_path / "a"), serve_memory(tmp_path / "b")
    assert first.app.state.context.metrics.directory is None
    for _ in range(3):
        first.client.get("/health")
    second.client.get("/health")
    health = 'qrng_http_requests_total{method="GET",route="/health",status="200"}'
    assert samples(first.client.get("/metrics").text)[health] == 3
    assert samples(second.client.get("/metrics").text)[health] == 1


@pytest.mark.slow
def test_a_scrape_sums_every_process_exactly_and_gauges_only_live_ones(
    tmp_path: Path, shared: tuple[Metrics, Path]
) -> None:
    metrics, directory = shared
    with other_worker(tmp_path, directory, 3) as other:
        for _ in range(2):
            metrics.record(ROUTE, "GET", 200, 0.0001)
            metrics.served("drbg", 64)
        found = samples(metrics.render().decode())
        assert found[REQUESTS] == 5 and found[SERVED] == 5 * 64
        assert found[f'{LATENCY}_count{{route="{ROUTE}"}}'] == 5
        buckets = {k: v for k, v in found.items() if k.startswith(f"{LATENCY}_bucket")}
        assert len(buckets) == 12  # every bucket of the route, +Inf included
        assert found[f'{LATENCY}_bucket{{le="0.0005",route="{ROUTE}"}}'] == 2
        assert found[f'{LATENCY}_bucket{{le="+Inf",route="{ROUTE}"}}'] == 5
        assert found["qrng_drbg_seeded"] == 0  # the minimum: the other's DRBG is not seeded
        assert found["qrng_drbg_reseeds_total"] == 1 and found["qrng_pool_up"] == 1
        assert other.stdin is not None
        other.stdin.close()  # it exits: its counts stay, its gauges leave
        other.wait(timeout=10)
        assert gauge_files(directory, other.pid) == []
    found = samples(metrics.render().decode())
    assert found[REQUESTS] == 5 and found[SERVED] == 5 * 64
    assert found["qrng_drbg_seeded"] == 1


@pytest.mark.slow
def test_a_killed_process_keeps_its_counts_and_loses_its_gauges(
    tmp_path: Path, shared: tuple[Metrics, Path]
) -> None:
    metrics, directory = shared
    with other_worker(tmp_path, directory, 4) as other:
        assert samples(metrics.render().decode())["qrng_drbg_seeded"] == 0
        other.kill()
        other.wait(timeout=10)
        assert len(gauge_files(directory, other.pid)) == 3  # killed: it could not say so
        found = samples(metrics.render().decode())
        assert found[REQUESTS] == 4 and found[SERVED] == 4 * 64
        assert found["qrng_drbg_seeded"] == 1
        assert gauge_files(directory, other.pid) == []


def test_only_running_siblings_and_children_are_live_workers() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert _worker_alive(os.getpid()) and _worker_alive(child.pid)
        assert not _worker_alive(1)  # running, but no worker of this node: a pid reused
        child.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not _worker_alive(child.pid)  # killed, not yet waited for
    finally:
        child.kill()
        child.wait(timeout=10)
    assert not _worker_alive(child.pid)


def test_a_process_writes_one_directory_once(shared: tuple[Metrics, Path]) -> None:
    metrics, directory = shared
    with pytest.raises(ConfigError, match="in use by this process"):
        Metrics(metrics._node.node, directory=directory)
    metrics.close()
    assert gauge_files(directory, os.getpid()) == []
    again = Metrics(metrics._node.node, directory=directory)
    again.close()


def test_the_workers_directory_is_fresh_private_and_removed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, "/somewhere/else")
    assert prepare_multiprocess_dir(make_settings(tmp_path, workers=1)) is None
    with multiprocess_metrics(make_settings(tmp_path, workers=1)) as path:
        assert path is None and MULTIPROC_ENV not in os.environ  # one worker: its own registry
    assert os.environ[MULTIPROC_ENV] == "/somewhere/else"
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    stale = tmp_path / "metrics" / str(gone.pid)  # a run killed before it could clean up
    stale.mkdir(parents=True)
    (stale / "counter_1.db").write_bytes(b"x")
    mine = tmp_path / "metrics" / str(os.getpid())
    mine.mkdir()
    (mine / "counter_2.db").write_bytes(b"x")
    with multiprocess_metrics(make_settings(tmp_path, workers=2)) as path:
        assert path == mine and os.environ[MULTIPROC_ENV] == str(mine)
        assert stat.S_IMODE(mine.stat().st_mode) == 0o700
        assert stat.S_IMODE(mine.parent.stat().st_mode) == 0o700
        assert list(mine.iterdir()) == [] and not stale.exists()
    assert not mine.exists() and os.environ[MULTIPROC_ENV] == "/somewhere/else"


# -- a real `qrng serve --workers 2` --------------------------------------------------------


def workers(server: Server) -> list[int]:
    """The server's uvicorn workers (not the supervisor, not multiprocessing's tracker)."""
    found = []
    for pid in server.processes()[1:]:
        with suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def scrape_each_worker(server: Server, pids: list[int]) -> dict[int, dict[str, float]]:
    """Scrape ``/metrics`` once from each worker, the others stopped meanwhile."""
    scrapes = {}
    for pid in pids:
        others = [p for p in pids if p != pid]
        for other in others:
            os.kill(other, signal.SIGSTOP)
        try:
            with httpx.Client(base_url=server.base_url, timeout=10) as client:
                assert client.get("/api/v2/status").json()["server"]["pid"] == pid
                r = client.get("/metrics")  # the same connection: the same worker
            assert r.status_code == 200
            scrapes[pid] = samples(r.text)
        finally:
            for other in others:
                os.kill(other, signal.SIGCONT)
    return scrapes


def wait_for_leader(server: Server, timeout: float = 30.0) -> int | None:
    """The pid of the process that holds the harvest lease, once one does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = httpx.get(server.base_url + "/api/v2/status", timeout=10).json()["leader"]
        if leader is not None:
            return int(leader["holder"].rsplit(":", 2)[1])
        time.sleep(0.2)
    return None


@pytest.mark.slow
def test_every_worker_scrape_reports_the_node_totals(tmp_path: Path) -> None:
    connections, per_connection = 4, 6
    with run_server(tmp_path, "--workers", "2") as server:
        directory = tmp_path / "data" / "metrics" / str(server.proc.pid)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700

        def load() -> None:
            with httpx.Client(base_url=server.base_url, timeout=10) as client:
                for _ in range(per_connection):
                    assert client.get(ROUTE).status_code == 200

        threads = [threading.Thread(target=load) for _ in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        n = connections * per_connection
        pids = workers(server)
        assert len(pids) == 2
        led_by = wait_for_leader(server)
        assert led_by in pids, server.log.read_text()
        time.sleep(2 * PUBLISH_SECONDS)  # the leader's last write of its gauges
        for found in scrape_each_worker(server, pids).values():
            assert found[REQUESTS] == n and found[SERVED] == n * 64
            assert found[f'{LATENCY}_count{{route="{ROUTE}"}}'] == n
            assert found["qrng_harvester_active"] == 1, server.log.read_text()
            assert found["qrng_pool_up"] == 1
        os.kill(pids[0], signal.SIGKILL)
        for _ in range(5):
            r = httpx.get(server.base_url + "/metrics", timeout=10)
            assert r.status_code == 200
            assert samples(r.text)[REQUESTS] == n  # the dead worker's requests still count
            time.sleep(0.2)
    assert not directory.exists()
