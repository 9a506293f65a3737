"""Prometheus metrics: HTTP traffic, randomness served, pool, engine and harvester.

One worker (and tests, where several apps live in one process): each app has
its own registry of plain per-process numbers, read at scrape time. Labels
are route templates, methods, status codes, modes, tests and source kinds:
never a key, a token, a query string or pool bytes.

Several workers (``qrng serve --workers N``): a scrape reports the node's
totals, whichever worker answers. ``serve`` makes a fresh private directory
(:func:`multiprocess_metrics`) and names it in ``PROMETHEUS_MULTIPROC_DIR``
before the workers are spawned; each worker writes its own totals into mmap
files there in prometheus-client's multiprocess layout, and a scrape merges
them (``MultiProcessCollector``). What a request changes is written when it
ends (requests, latency) or draws (served bytes, the engine's counters), so a
scrape is exact the moment the answer is sent; what changes outside requests
(the harvester, a DRBG seeded at start-up, a failed request's dropped block)
is written every :data:`PUBLISH_SECONDS` and by a scraping worker for itself.
Counters sum over every worker that ever ran (a dead worker's count stays);
gauges count live workers only (a worker that exits or is killed is marked
dead): ``qrng_drbg_seeded`` is the minimum (1 when every live worker's DRBG
is seeded), ``qrng_harvester_active`` the maximum (1 when a worker of this
node leads the harvest), ``qrng_harvest_raw_bits_per_second`` the sum. The
pool's level is a shared fact, read once by the scraping worker.

A scrape always answers promptly: the pool's level is read in a background
thread and waited for at most :data:`POOL_READ_SECONDS`. A pool that fails
or does not answer in time (a frozen Redis) shows as ``qrng_pool_up 0``,
counts in ``qrng_pool_errors_total`` and leaves out the level gauges; every
other counter is still there.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import secrets
import shutil
import struct
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quantumrng.errors import ConfigError, QuantumRNGError
from quantumrng.server.service import BoundedRead

if TYPE_CHECKING:
    from quantumrng.config import Settings
    from quantumrng.harvester import Harvester
    from quantumrng.node import Node
    from quantumrng.pool.base import PoolLevel

__all__ = [
    "CONTENT_TYPE_LATEST",
    "MULTIPROC_ENV",
    "POOL_READ_SECONDS",
    "PUBLISH_SECONDS",
    "Metrics",
    "MetricsMiddleware",
    "PoolProbe",
    "multiprocess_dir",
    "multiprocess_metrics",
    "prepare_multiprocess_dir",
]

log = logging.getLogger(__name__)

POOL_READ_SECONDS = 1.0  # longest a scrape waits for the pool's level
PUBLISH_SECONDS = 0.5  # longest a change made outside a request waits to reach other workers
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_MODES = ("drbg", "raw")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Metrics:
    """Per-request counters (plain numbers, read at scrape time) and the node collector.

    Requests are counted on the event loop's thread only, so no lock: the
    per-request cost is a few dictionary updates, not prometheus-client's
    locked children. With a ``directory`` (by default ``PROMETHEUS_MULTIPROC_DIR``,
    set by ``serve`` for several workers) the same numbers are also written to
    this process's files there, and a scrape reports every worker's totals.
    """

    def __init__(self, node: Node, *, directory: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[str, list[float]] = {}  # bucket counts, then the sum
        self._served = dict.fromkeys(_MODES, 0)
        self._node = _NodeCollector(node)
        directory = directory if directory is not None else multiprocess_dir()
        self._shared: _SharedFiles | None = None
        if directory is None:
            self.registry.register(_TrafficCollector(self))
            self.registry.register(self._node)
            return
        self._shared = _SharedFiles(directory)
        self.registry.register(_SharedCollector(self, directory))
        self._stop = threading.Event()
        self._publisher = threading.Thread(
            target=self._publish_loop, name="qrng-metrics", daemon=True
        )
        self._publisher.start()
        atexit.register(self.close)

    @property
    def directory(self) -> Path | None:
        """Where the workers' totals are merged, or None for this process's own registry."""
        return None if self._shared is None else self._shared.directory

    def watch(self, harvester: Harvester | None) -> None:
        """Report ``harvester``'s counters (the one this process runs), or none."""
        self._node.harvester = harvester
        if self._shared is not None:
            self.publish()

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (route, method, status)
        count = self._requests[key] = self._requests.get(key, 0) + 1
        counts = self._latency.get(route)
        if counts is None:
            counts = self._latency[route] = [0.0] * (len(_LATENCY_BUCKETS) + 2)
        bucket = bisect_left(_LATENCY_BUCKETS, seconds)
        counts[bucket] += 1
        counts[-1] += seconds
        if self._shared is not None:
            self._shared.request(key, count, bucket, counts)

    def served(self, mode: str, nbytes: int) -> None:
        """Count ``nbytes`` of randomness drawn in ``mode``."""
        total = self._served[mode] = self._served[mode] + nbytes
        if self._shared is not None:
            self._shared.draw(mode, total, self._node.node)

    def render(self) -> bytes:
        """Return the text exposition format (reads the pool: call off the event loop)."""
        return generate_latest(self.registry)

    def publish(self) -> None:
        """Write what this process counts outside requests to its shared files."""
        shared = self._shared
        if shared is None:
            return
        values: list[tuple[str, tuple[str, ...], float]] = [
            ("qrng_pool_errors", (), self._node.probe.errors),
        ]
        harvester = self._node.harvester
        if harvester is not None:
            snap = harvester.snapshot()
            values += [(f"qrng_harvester_{name}", (), snap[name]) for name in _HARVESTER_COUNTERS]
            values += [
                ("qrng_harvester_active", (), 1.0 if snap["active"] and snap["running"] else 0.0),
                ("qrng_harvest_raw_bits_per_second", (), snap["rate"]["raw_bits_per_second"]),
            ]
            values += [
                ("qrng_health_test_failures", (test,), count)
                for test, count in sorted(snap["health"]["failures"].items())
            ]
        shared.publish(self._node.node, values)

    def close(self) -> None:
        """Stop publishing and mark this process dead in the shared directory (idempotent)."""
        shared = self._shared
        if shared is None:
            return
        self._stop.set()
        if self._publisher is not threading.current_thread():
            self._publisher.join(timeout=5)
        shared.close()
        atexit.unregister(self.close)

    def _publish_loop(self) -> None:
        failing = False
        while True:
            try:
                self.publish()
            except Exception as exc:  # never let a status read end the publishing
                if not failing:
                    log.warning(
                        "metrics: cannot publish this worker's counters (%s)", type(exc).__name__
                    )
                failing = True
            else:
                failing = False
            if self._stop.wait(PUBLISH_SECONDS):
                return


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
        self.node = node
        self.probe = PoolProbe(lambda: node.pool.level())
        self.harvester: Harvester | None = None

    def pool_up(self, level: PoolLevel | None) -> Metric:
        return GaugeMetricFamily(
            "qrng_pool_up",
            f"1 when the pool's level was read within {self.probe.timeout:g} s at this scrape.",
            value=0.0 if level is None else 1.0,
        )

    @staticmethod
    def level_families(level: PoolLevel | None) -> Iterator[Metric]:
        if level is None:
            return
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

    def collect(self) -> Iterator[Metric]:
        node = self.node
        level = self.probe.level()
        yield self.pool_up(level)
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
        yield from self.level_families(level)
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
            "1 when this process leads the harvest (holds the lease).",
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


_HARVESTER_COUNTERS = ("harvests", "dropped", "source_errors", "blocks_added")
_NODE = "this node's workers"
# name: (file, help, label names); a file is a type, gauges by how workers combine
_SHARED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "qrng_http_requests": (
        "counter",
        f"HTTP requests answered by {_NODE}, by route template, method and status.",
        ("route", "method", "status"),
    ),
    "qrng_http_request_duration_seconds": (
        "histogram",
        "Time to answer an HTTP request (to the last body byte), by route template.",
        ("route",),
    ),
    "qrng_served_random_bytes": (
        "counter",
        f"Bytes of randomness drawn for answers by {_NODE}, by mode (drbg or raw).",
        ("mode",),
    ),
    "qrng_pool_errors": (
        "counter",
        f"Scrapes whose read of the pool's level failed or timed out, in {_NODE}.",
        (),
    ),
    "qrng_pool_integrity_failures": (
        "counter",
        f"Pool blocks {_NODE} dropped, never served, for a tag that did not verify.",
        (),
    ),
    "qrng_drbg_seeded": ("livemin", "1 when every live worker's DRBG holds seed material.", ()),
    "qrng_drbg_reseeds": ("counter", f"Seedings of the DRBGs of {_NODE}.", ()),
    "qrng_drbg_output_bytes": ("counter", f"Bytes generated by the DRBGs of {_NODE}.", ()),
    "qrng_raw_output_bytes": ("counter", f"Pool bytes served raw by {_NODE}.", ()),
    "qrng_harvester_harvests": ("counter", f"Harvests stored in the pool by {_NODE}.", ()),
    "qrng_harvester_dropped": ("counter", "Harvests dropped for failing a health test.", ()),
    "qrng_harvester_source_errors": ("counter", "Harvests that failed at the source.", ()),
    "qrng_harvester_blocks_added": ("counter", f"Blocks added to the pool by {_NODE}.", ()),
    "qrng_harvester_active": (
        "livemax",
        "1 when a live worker of this node leads the harvest.",
        (),
    ),
    "qrng_harvest_raw_bits_per_second": (
        "livesum",
        "Raw bits harvested per second by this node, recent average.",
        (),
    ),
    "qrng_health_test_failures": (
        "counter",
        "SP 800-90B continuous test failures, by test.",
        ("test",),
    ),
}
_GAUGE_FILES = ("livemin", "livemax", "livesum")
_FILE_BYTES = 1 << 18  # a new file's size, allocated (a few hundred routes' samples)
_claimed: set[tuple[int, str]] = set()  # (pid, directory) with open files in this process
_claimed_lock = threading.Lock()
_PROC_SELF = Path("/proc/self/stat")


class _ValueFile(Protocol):
    """prometheus-client's ``MmapedDict``: one process's values of one type, in a file."""

    def write_value(self, key: str, value: float, timestamp: float) -> None: ...
    def close(self) -> None: ...


_EngineCounters = tuple[int, int, int, bool]  # Engine.counters()
_mmaped_dict: Callable[[str], _ValueFile] = MmapedDict
_merge: Callable[[list[str], bool], Iterable[Metric]] = MultiProcessCollector.merge
_mark_process_dead: Callable[[int, str], None] = mark_process_dead


def multiprocess_dir() -> Path | None:
    """The directory this node's workers share their metrics in, or None (one process)."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_multiprocess_dir(settings: Settings) -> Path | None:
    """Return a fresh, empty, private (0700) directory for this run's workers' metrics,
    or None for one worker.

    It is ``<data_dir>/metrics/<pid of this process>``; the directories of
    earlier runs whose process is gone (killed before it could remove its
    own) are removed first.
    """
    if settings.workers <= 1:
        return None
    root = settings.data_dir / "metrics"
    run = root / str(os.getpid())
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        for entry in root.iterdir():
            if entry.name.isdigit() and (entry == run or not _running(int(entry.name))):
                _remove(entry)
        run.mkdir(mode=0o700)
        os.chmod(run, 0o700)
    except OSError as exc:
        raise ConfigError(f"cannot prepare the metrics directory {run}: {exc.strerror}") from None
    return run


@contextmanager
def multiprocess_metrics(settings: Settings) -> Iterator[Path | None]:
    """Share metrics between this run's workers while the block runs.

    Prepares the directory (:func:`prepare_multiprocess_dir`) and names it in
    ``PROMETHEUS_MULTIPROC_DIR``, which workers spawned inside the block
    inherit (a spawned worker is a new interpreter: every import it makes
    sees the variable); removes the directory after. With one worker the
    variable is unset for the block, so the app keeps its own registry.
    """
    path = prepare_multiprocess_dir(settings)
    saved = os.environ.pop(MULTIPROC_ENV, None)
    if path is not None:
        os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        if saved is not None:
            os.environ[MULTIPROC_ENV] = saved
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """True when a process ``pid`` of this user runs."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _worker_alive(pid: int) -> bool:
    """True when ``pid`` runs (no zombie) as a sibling of this process (a worker of the
    same supervisor) or its child: an unrelated process that reused a dead worker's
    pid does not keep that worker's gauges."""
    if pid == os.getpid():
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not _PROC_SELF.exists() and _running(pid)
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state not in ("Z", "X") and int(ppid) in (os.getppid(), os.getpid())


def _open_file(path: Path) -> _ValueFile:
    """Create ``path`` for this process and open it for writing.

    The file is written whole, header included, and renamed into place, so a
    scrape never reads it empty; it replaces a dead worker's gauges whose pid
    this process reuses.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, struct.pack("i", 8))  # bytes used: the header only
        os.posix_fallocate(fd, 0, _FILE_BYTES)  # no SIGBUS on a full disk later
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return _mmaped_dict(str(path))


def _sample_key(name: str, labels: tuple[str, ...], suffix: str = "", **extra: str) -> str:
    file, doc, names = _SHARED[name]
    sample = name + (suffix or ("_total" if file == "counter" else ""))
    return mmap_key(name, sample, [*names, *extra], [*labels, *extra.values()], doc)


class _SharedFiles:
    """This process's totals in the run's directory, in prometheus-client's
    multiprocess layout (one mmap file per type and writer).

    A value is written whole (this process's total, kept in memory), never
    read back and incremented, so a file is exact as soon as a write returns.
    Traffic (requests, latency, served bytes) is written on the event loop's
    thread only, into files of its own, without a lock; the node's counters
    and gauges (written by the event loop after a draw that changed them, the
    publishing thread and a scrape's thread) take one lock. Counter files are
    named with a random part, so a worker that reuses a dead one's pid never
    overwrites its counts; gauge files are named by pid, as
    ``mark_process_dead`` expects.
    """

    def __init__(self, directory: Path) -> None:
        pid = os.getpid()
        claim = (pid, str(directory.resolve()))
        with _claimed_lock:
            if claim in _claimed:
                raise ConfigError(f"the metrics directory {directory} is in use by this process")
            _claimed.add(claim)
        self._claim = claim
        self.directory = directory
        self._lock = threading.Lock()
        self._closed = False
        token = secrets.token_hex(4)
        try:
            self._files = {
                "requests": _open_file(directory / f"counter_{pid}-{token}-requests.db"),
                "histogram": _open_file(directory / f"histogram_{pid}-{token}.db"),
                "counter": _open_file(directory / f"counter_{pid}-{token}-node.db"),
                **{mode: _open_file(directory / f"gauge_{mode}_{pid}.db") for mode in _GAUGE_FILES},
            }
        except OSError as exc:
            with _claimed_lock:
                _claimed.discard(claim)
            raise ConfigError(
                f"cannot write metrics in {directory}: {exc.strerror or type(exc).__name__}"
            ) from None
        self._counts = self._files["requests"]
        self._histogram = self._files["histogram"]
        self._keys: dict[tuple[str, tuple[str, ...]], tuple[_ValueFile, str]] = {}
        self._requests: dict[tuple[str, str, int], str] = {}
        self._latency: dict[str, list[str]] = {}
        self._served = {mode: _sample_key("qrng_served_random_bytes", (mode,)) for mode in _MODES}
        self._engine: _EngineCounters | None = None  # as last written

    def _key(self, name: str, labels: tuple[str, ...] = ()) -> tuple[_ValueFile, str]:
        found = self._keys.get((name, labels))
        if found is None:
            found = self._keys[name, labels] = (
                self._files[_SHARED[name][0]],
                _sample_key(name, labels),
            )
        return found

    def _latency_keys(self, route: str) -> list[str]:
        name = "qrng_http_request_duration_seconds"
        keys = [
            _sample_key(name, (route,), "_bucket", le="+Inf" if bound == math.inf else repr(bound))
            for bound in (*_LATENCY_BUCKETS, math.inf)
        ]
        keys.append(_sample_key(name, (route,), "_sum"))
        self._latency[route] = keys
        return keys

    def request(
        self, key: tuple[str, str, int], count: int, bucket: int, counts: list[float]
    ) -> None:
        """Write one route's request count and latency after a request (event loop only)."""
        if self._closed:
            return
        request = self._requests.get(key)
        if request is None:
            route, method, status = key
            request = self._requests[key] = _sample_key(
                "qrng_http_requests", (route, method, str(status))
            )
        write = self._histogram.write_value
        latency = self._latency.get(key[0])
        if latency is None:  # a new route: every bucket, so each scrape shows them all
            for sample, value in zip(self._latency_keys(key[0]), counts, strict=True):
                write(sample, value, 0.0)
        else:
            write(latency[bucket], counts[bucket], 0.0)
            write(latency[-1], counts[-1], 0.0)
        self._counts.write_value(request, count, 0.0)

    def draw(self, mode: str, served: int, node: Node) -> None:
        """Write the bytes served in ``mode`` after a draw (event loop only), and the
        engine's counters when the draw changed them (a refill, a reseed, a raw take)."""
        if self._closed:
            return
        self._counts.write_value(self._served[mode], served, 0.0)
        counters = node.engine.counters()
        if counters != self._engine:
            integrity = node.integrity_failures
            with self._lock:
                if not self._closed:
                    self._write_engine_locked(counters, integrity)

    def publish(self, node: Node, values: list[tuple[str, tuple[str, ...], float]]) -> None:
        """Write ``node``'s engine counters and integrity failures, and ``values``."""
        counters, integrity = node.engine.counters(), node.integrity_failures
        with self._lock:
            if self._closed:
                return
            self._write_engine_locked(counters, integrity)
            for name, labels, value in values:
                file, key = self._key(name, labels)
                file.write_value(key, value, 0.0)

    def _write_engine_locked(self, counters: _EngineCounters, integrity: int) -> None:
        self._engine = counters
        reseeds, drbg_bytes, raw_bytes, seeded = counters
        for name, value in (
            ("qrng_drbg_reseeds", reseeds),
            ("qrng_drbg_output_bytes", drbg_bytes),
            ("qrng_raw_output_bytes", raw_bytes),
            ("qrng_drbg_seeded", 1.0 if seeded else 0.0),
            ("qrng_pool_integrity_failures", integrity),
        ):
            file, key = self._key(name)
            file.write_value(key, value, 0.0)

    def close(self) -> None:
        """Close the files and take this process's gauges out (counters stay: they sum)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for file in self._files.values():
                file.close()
        with suppress(OSError):
            _mark_process_dead(os.getpid(), str(self.directory))
        with _claimed_lock:
            _claimed.discard(self._claim)


def _mark_dead_workers(directory: Path) -> None:
    """Take out the gauges of workers that are gone (exited, or killed without a word)."""
    for path in directory.glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _worker_alive(int(pid)):
            with suppress(OSError):  # another worker's scrape may remove it first
                _mark_process_dead(int(pid), str(directory))


class _SharedCollector:
    """The node's totals: the pool's level as this worker reads it, then every
    worker's files merged."""

    def __init__(self, metrics: Metrics, directory: Path) -> None:
        self._metrics = metrics
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        node = self._metrics._node
        level = node.probe.level()
        yield node.pool_up(level)
        yield from node.level_families(level)
        self._metrics.publish()
        _mark_dead_workers(self._directory)
        files = [str(path) for path in self._directory.glob("*.db")]
        yield from _merge(files, True)


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
