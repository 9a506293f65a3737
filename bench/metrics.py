"""Cost of node-wide metrics: requests/s through ``MetricsMiddleware`` with one process's
registry against the multiprocess files that ``qrng serve --workers N`` uses.

Run: ``python bench/metrics.py [--seconds S] [--rounds R]``.

A tiny ASGI app (no Starlette, no network) answers each call with a start and
a body message behind ``MetricsMiddleware``, so the figure is the middleware's
cost and little else. Two paths: a plain request (``record`` only, as
``/health``) and a randomness request (``record`` plus ``served``, which in
multiprocess mode also writes the engine's counters). Contenders, measured
alternately round by round so a noisy shared machine slows them alike:

- ``single``: today's per-app registry (plain dictionaries);
- ``multiprocess``: the same numbers also written to this process's mmap files;
- ``stock``: prometheus-client's own multiprocess ``Counter``/``Histogram``
  (``labels(...).inc()``, ``observe``), for comparison.

Prints requests/s, the ratio multiprocess/single and the microseconds a
request gains.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # bench/http.py would stand for the standard library's http

from prometheus_client import Counter, Histogram, values

from quantumrng.config import load_settings
from quantumrng.node import Node
from quantumrng.server.metrics import Metrics, MetricsMiddleware

ROUTE_PATH = "/api/v1/qrng/get_bits"
START = {"type": "http.response.start", "status": 200, "headers": []}
BODY = {"type": "http.response.body", "body": b'{"512_qrng_bits":"..."}', "more_body": False}
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Route:
    """What Starlette leaves in ``scope["route"]``: the matched template."""

    path = ROUTE_PATH


class StockMetrics:
    """``Metrics.record``/``served`` done the usual prometheus-client way."""

    def __init__(self) -> None:
        self.requests = Counter(
            "bench_requests", "Requests.", ["route", "method", "status"], registry=None
        )
        self.latency = Histogram(
            "bench_latency_seconds", "Latency.", ["route"], buckets=LATENCY_BUCKETS, registry=None
        )
        self.bytes = Counter("bench_served_bytes", "Bytes.", ["mode"], registry=None)

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def served(self, mode: str, nbytes: int) -> None:
        self.bytes.labels(mode).inc(nbytes)


def tiny_app(metrics: Any, draw: bool) -> Callable[..., Awaitable[None]]:
    route = Route()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["route"] = route
        if draw:
            metrics.served("drbg", 64)
        await send(START)
        await send(BODY)

    return app


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


async def _rate(middleware: MetricsMiddleware, seconds: float) -> float:
    scope = {"type": "http", "method": "GET", "path": ROUTE_PATH, "query_string": b""}
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(1000):
            await middleware(dict(scope), _receive, _send)
        calls += 1000
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            overrides={"data_dir": Path(tmp) / "data", "pool": "memory", "source": "os"},
            environ={},
        )
        node = Node(settings, harvest_on_demand=False)
        shared_dir = Path(tmp) / "metrics"
        stock_dir = Path(tmp) / "stock"
        shared_dir.mkdir()
        stock_dir.mkdir()
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        single = Metrics(node)
        shared = Metrics(node, directory=shared_dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(stock_dir)  # read by the stock values
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        contenders: dict[str, Any] = {
            "single": single,
            "multiprocess": shared,
            "stock": StockMetrics(),
        }
        try:
            for draw, label in ((False, "plain request"), (True, "randomness request")):
                rates: dict[str, list[float]] = {name: [] for name in contenders}
                apps = {
                    name: MetricsMiddleware(tiny_app(m, draw), m) for name, m in contenders.items()
                }
                for _ in range(args.rounds):
                    for name, middleware in apps.items():
                        rates[name].append(asyncio.run(_rate(middleware, args.seconds)))
                med = {name: statistics.median(r) for name, r in rates.items()}
                print(f"{label}: requests/s through MetricsMiddleware (median of {args.rounds})")
                for name, value in med.items():
                    print(f"  {name:13s} {value:12,.0f}")
                cost = (1 / med["multiprocess"] - 1 / med["single"]) * 1e6
                print(
                    f"  multiprocess / single = {med['multiprocess'] / med['single']:.2f}"
                    f"  (+{cost:.2f} us a request);"
                    f" stock / single = {med['stock'] / med['single']:.2f}"
                )
        finally:
            shared.close()
            node.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
