"""Prometheus metrics: HTTP traffic, randomness served, pool, engine and harvester.

Each app has its own registry (several apps may live in one test process).
With ``--workers N`` every worker answers ``/metrics`` for itself; pool
levels are shared facts, request counters are per process, labelled ``pid``
by the scraper's target. Labels are route templates, methods, status codes,
modes and source kinds: never a key, a token, a query string or pool bytes.

A scrape always answers promptly: the pool's level is read in a background
thread and waited for at most :data:`POOL_READ_SECONDS`. A pool that fails
or does not answer in time (a frozen Redis) shows as ``qrng_pool_up 0``,
counts in ``qrng_pool_errors_total`` and leaves out the level gauges; every
other counter is still there.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quantumrng.errors import QuantumRNGError
from quantumrng.server.service import BoundedRead

if TYPE_CHECKING:
    from quantumrng.harvester import Harvester
    from quantumrng.node import Node
    from quantumrng.pool.base import PoolLevel

__all__ = ["CONTENT_TYPE_LATEST", "POOL_READ_SECONDS", "Metrics", "MetricsMiddleware", "PoolProbe"]

log = logging.getLogger(__name__)

POOL_READ_SECONDS = 1.0  # longest a scrape waits for the pool's level

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Metrics:
    """Per-request counters (plain numbers, read at scrape time) and the node collector.

    Requests are counted on the event loop's thread only, so no lock: the
    per-request cost is a few dictionary updates, not prometheus-client's
    locked children.
    """

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[str, list[float]] = {}  # bucket counts, then the sum
        self._served = {"drbg": 0, "raw": 0}
        self._node = _NodeCollector(node)
        self.registry.register(_TrafficCollector(self))
        self.registry.register(self._node)

    def watch(self, harvester: Harvester | None) -> None:
        """Report ``harvester``'s counters (the one this process runs), or none."""
        self._node.harvester = harvester

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (route, method, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        counts = self._latency.get(route)
        if counts is None:
            counts = self._latency[route] = [0.0] * (len(_LATENCY_BUCKETS) + 2)
        counts[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        counts[-1] += seconds

    def served(self, mode: str, nbytes: int) -> None:
        """Count ``nbytes`` of randomness drawn in ``mode``."""
        self._served[mode] += nbytes

    def render(self) -> bytes:
        """Return the text exposition format (reads the pool: call off the event loop)."""
        return generate_latest(self.registry)


class _TrafficCollector:
    """Exposes the request, latency and served-bytes counters of one ``Metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        requests = CounterMetricFamily(
            "qrng_http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in sorted(dict(m._requests).items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "qrng_http_request_duration_seconds",
            "Time to answer an HTTP request (to the last body byte), by route template.",
            labels=["route"],
        )
        for route, counts in sorted(dict(m._latency).items()):
            snapshot = list(counts)
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, hits in zip((*_LATENCY_BUCKETS, math.inf), snapshot, strict=False):
                cumulative += hits
                buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
            latency.add_metric([route], buckets, sum_value=snapshot[-1])
        yield latency
        served = CounterMetricFamily(
            "qrng_served_random_bytes",
            "Bytes of randomness drawn for answers, by mode (drbg or raw).",
            labels=["mode"],
        )
        for mode, nbytes in sorted(m._served.items()):
            served.add_metric([mode], nbytes)
        yield served


class PoolProbe:
    """The pool's level for a scrape: a :class:`~quantumrng.server.service.BoundedRead`
    that counts and logs failures instead of raising them.

    A read that fails or is not done in ``timeout`` seconds counts as an error.
    """

    def __init__(self, read: Callable[[], PoolLevel], timeout: float = POOL_READ_SECONDS) -> None:
        self._read = BoundedRead(read, "its level", timeout)
        self._lock = threading.Lock()
        self._errors = 0
        self._up = True

    @property
    def timeout(self) -> float:
        """Seconds a scrape waits for the level."""
        return self._read.timeout

    @property
    def errors(self) -> int:
        """Reads that failed or timed out."""
        return self._errors

    def level(self) -> PoolLevel | None:
        """Return the pool's level, or None when it failed or did not answer in time."""
        try:
            level = self._read()
        except QuantumRNGError as exc:
            self._failed(exc.message)
            return None
        except Exception as exc:  # a driver's own error: its class, never its text
            self._failed(type(exc).__name__)
            return None
        with self._lock:
            if not self._up:
                log.info("metrics: the entropy pool answers again")
            self._up = True
        return level

    def _failed(self, why: str) -> None:
        with self._lock:
            self._errors += 1
            was_up, self._up = self._up, False
        if was_up:
            log.warning("metrics: the entropy pool's level is unavailable (%s)", why)


class _NodeCollector:
    """Reads pool, engine and harvester counters at scrape time."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.probe = PoolProbe(lambda: node.pool.level())
        self.harvester: Harvester | None = None

    def collect(self) -> Iterator[Metric]:
        node = self._node
        level = self.probe.level()
        yield GaugeMetricFamily(
            "qrng_pool_up",
            f"1 when the pool's level was read within {self.probe.timeout:g} s at this scrape.",
            value=0.0 if level is None else 1.0,
        )
        yield CounterMetricFamily(
            "qrng_pool_errors",
            "Scrapes whose read of the pool's level failed or timed out, in this process.",
            value=self.probe.errors,
        )
        yield CounterMetricFamily(
            "qrng_pool_integrity_failures",
            "Pool blocks this process dropped, never served, for a tag that did not verify.",
            value=node.integrity_failures,
        )
        if level is not None:
            blocks = GaugeMetricFamily(
                "qrng_pool_blocks",
                "Conditioned blocks in the pool, by source kind.",
                labels=["source"],
            )
            for source, count in sorted(level.by_source.items()):
                blocks.add_metric([source], count)
            yield blocks
            yield GaugeMetricFamily(
                "qrng_pool_credited_bits",
                "Credited min-entropy in the pool, bits.",
                value=level.credited_bits,
            )
        stats: dict[str, Any] = node.engine.stats()
        yield GaugeMetricFamily(
            "qrng_drbg_seeded",
            "1 when this process's DRBG holds seed material.",
            value=1.0 if stats["seeded"] else 0.0,
        )
        yield CounterMetricFamily(
            "qrng_drbg_reseeds", "Seedings of this process's DRBG.", value=stats["reseeds"]
        )
        yield CounterMetricFamily(
            "qrng_drbg_output_bytes",
            "Bytes generated by this process's DRBG.",
            value=stats["drbg_bytes"],
        )
        yield CounterMetricFamily(
            "qrng_raw_output_bytes",
            "Pool bytes served raw by this process.",
            value=stats["raw_bytes"],
        )
        harvester = self.harvester
        if harvester is None:
            return
        snap = harvester.snapshot()
        for name, doc in (
            ("harvests", "Harvests stored in the pool by this process."),
            ("dropped", "Harvests dropped for failing a health test."),
            ("source_errors", "Harvests that failed at the source."),
            ("blocks_added", "Blocks added to the pool by this process."),
        ):
            yield CounterMetricFamily(f"qrng_harvester_{name}", doc, value=snap[name])
        yield GaugeMetricFamily(
            "qrng_harvester_active",
            "1 when this process holds the node's harvester lock.",
            value=1.0 if snap["active"] and snap["running"] else 0.0,
        )
        yield GaugeMetricFamily(
            "qrng_harvest_raw_bits_per_second",
            "Raw bits harvested per second, recent average.",
            value=snap["rate"]["raw_bits_per_second"],
        )
        failures = CounterMetricFamily(
            "qrng_health_test_failures",
            "SP 800-90B continuous test failures, by test.",
            labels=["test"],
        )
        for test, count in sorted(snap["health"]["failures"].items()):
            failures.add_metric([test], count)
        yield failures


class MetricsMiddleware:
    """Pure ASGI middleware counting requests by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.record(template, method, status, time.perf_counter() - start)
