"""Latency of the dashboard's snapshot against ``/api/v2/status`` measured in the same run.

Run: ``python bench/dashboard.py [--requests N] [--rounds R]``.

1. Over HTTP: a real ``qrng serve`` (source ``os``, SQLite pool, one worker) on
   loopback, one keep-alive connection; ``GET /api/v2/dashboard?since=<last>``
   (what an open page sends every 2 s) against ``GET /api/v2/status`` (the
   baseline: the node status the snapshot is built from), alternately round by
   round so a noisy machine slows both alike. Also the page's first load
   (``/api/v2/dashboard`` without ``since``: the whole history so far).
2. In process (Starlette's test client, memory pool): the first load with a
   full history ring (:data:`~quantumrng.server.dashboard.HISTORY_SAMPLES`
   samples, one hour) against ``/api/v2/status``: the worst case a fresh page
   costs.

Prints the median milliseconds of each and the ratio snapshot / status.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # bench/http.py would stand for the standard library's http

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for bench._serve
from bench._serve import serve

from quantumrng.config import load_settings
from quantumrng.node import Node
from quantumrng.server import create_app, dashboard
from quantumrng.server.dashboard import HISTORY_SAMPLES, SAMPLE_SECONDS, Sample

warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402 - after the filter above

STATUS = "/api/v2/status"
SNAPSHOT = "/api/v2/dashboard"
START_TIMEOUT = 90.0


def median_ms(get: Callable[[], httpx.Response], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        r = get()
        times.append(time.perf_counter() - start)
        if r.status_code != 200:
            sys.exit(f"bench/dashboard.py: {r.request.url} answered {r.status_code}: {r.text}")
    return statistics.median(times) * 1000


def compare(
    label: str, snapshot: Callable[[], httpx.Response], status: Callable[[], httpx.Response],
    requests: int, rounds: int,
) -> None:  # fmt: skip
    ours, base = [], []
    for _ in range(rounds):
        ours.append(median_ms(snapshot, requests))
        base.append(median_ms(status, requests))
    a, b = statistics.median(ours), statistics.median(base)
    print(f"{label:<44} {a:8.3f} ms   status {b:8.3f} ms   ratio {a / b:5.2f}")


def over_http(requests: int, rounds: int) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(Path(tmp)) as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        time.sleep(3 * SAMPLE_SECONDS)  # a few samples of history
        last = client.get(SNAPSHOT).json()["history"]["t"][-1]
        status = lambda: client.get(STATUS)  # noqa: E731
        compare(
            "HTTP: snapshot, polling (?since=last)",
            lambda: client.get(SNAPSHOT, params={"since": last}), status, requests, rounds,
        )  # fmt: skip
        compare(
            "HTTP: snapshot, first load",
            lambda: client.get(SNAPSHOT), status, requests, rounds,
        )  # fmt: skip


def in_process(requests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            overrides={"data_dir": Path(tmp) / "data", "pool": "memory", "source": "os"},
            environ={},
        )
        node = Node(settings, harvest_on_demand=False)
        node.harvester.fill(64)
        app = create_app(settings, node)
        client = TestClient(app)
        sampler = dashboard._SAMPLERS[id(app.state.context)]
        now = time.time()
        for i in range(HISTORY_SAMPLES):  # one hour of samples, as a long-running server has
            t = now - (HISTORY_SAMPLES - i) * SAMPLE_SECONDS
            sampler._ring.append(Sample(t, 64 - i % 20, 0, i * 3.0, i * 0.1, i * 4096.0, 0.0))
        compare(
            f"in process: first load, {HISTORY_SAMPLES} samples",
            lambda: client.get(SNAPSHOT), lambda: client.get(STATUS), requests, rounds,
        )  # fmt: skip
        node.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per round and contender")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    over_http(args.requests, args.rounds)
    in_process(args.requests, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
