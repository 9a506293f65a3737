"""The operator's dashboard: ``/`` and its live data, never a secret.

``GET /`` is a page (HTML, script, style and the vendored uPlot chart
library, all served here: no CDN) that polls two JSON documents:

- ``GET /api/v2/dashboard`` every ~2 s: pool level and water marks, the
  newest harvests with their provenance and witness verdicts, the harvest
  leader, the health monitor (state, failures per test, per-qubit bias and
  min-entropy of the last harvest), the source's persistent-failure record,
  the DRBG's counters, the beacon's latest pulse and the transparency log's
  latest signed tree head, and a history of pool level, request and byte
  rates. ``?since=<t>`` returns only the history after ``t``.
- ``GET /api/v2/dashboard/quality`` every ~10 s: the stored SP 800-90B
  assessment of every creditable source (``accounting.SourceLedger``:
  per-stream min-entropy, IID verdicts, credit) and the SP 800-22 battery
  (:mod:`quantumrng.battery`) on :data:`BATTERY_BYTES` of fresh DRBG output,
  run in a separate process at most every ``dashboard_battery_seconds`` and
  cached; those bytes are drawn for the battery only and never served.

The history is sampled every :data:`SAMPLE_SECONDS` by a thread of this
process from the same collectors ``/metrics`` reads (so with several
workers the rates are the node's), started with the server (:func:`start`)
or by the first dashboard request, and kept for :data:`HISTORY_SAMPLES`
samples, so a page opened later draws its charts at once. Request rates
leave out the dashboard's own routes. A sample reads the pool's level as a
scrape does (``PoolProbe``, bounded), so while the pool fails its reads
count in ``qrng_pool_errors_total`` like a scrape's. The battery's draw
counts in the DRBG's output counters (``qrng_drbg_output_bytes``) but never
in the bytes served (``qrng_served_random_bytes``).

Access: the page itself holds no data and is served to anyone; both data
documents follow the rule of ``/api/v2/status`` and ``/metrics``
(``Access.authorize_status``): under required auth they need a key with the
``admin`` scope unless ``public_status`` is set. The page asks for the key,
keeps it in the tab's ``sessionStorage`` and sends it as
``Authorization: Bearer``. ``dashboard = false`` serves none of these
routes (404). Nothing here carries pool bytes, keys, tokens or DRBG state:
the documents are built field by field from status data that holds none.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from anyio import to_thread
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response

from quantumrng import __version__, battery
from quantumrng.accounting import SourceLedger
from quantumrng.beacon.publisher import stored_pulse
from quantumrng.errors import QuantumRNGError
from quantumrng.provenance import CREDITABLE_SOURCE_KINDS, QUANTUM_SOURCE_KINDS
from quantumrng.server.params import Param, parse_query
from quantumrng.server.responses import NO_STORE, json_response
from quantumrng.server.routing import Api, Endpoint, Handler
from quantumrng.server.service import POOL_ANSWER_SECONDS, BoundedRead, Context

__all__ = [
    "BATTERY_BYTES",
    "HISTORY_SAMPLES",
    "SAMPLE_SECONDS",
    "Sample",
    "api",
    "read_counters",
    "start",
    "stop",
]

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 2.0  # seconds between two samples of the history
HISTORY_SAMPLES = 1800  # samples kept: one hour
BATTERY_BYTES = 125_000  # 10^6 bits: SP 800-22 §2's recommended sequence length
PAGE = "/"  # the page; it, its assets and its data are left out of the request rates
DATA_PATH = "/api/v2/dashboard"
TAG = "dashboard"

_STATIC = resources.files("quantumrng.server") / "static"
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_ASSETS = (
    ("/dashboard/dashboard.js", "dashboard.js", "text/javascript"),
    ("/dashboard/dashboard.css", "dashboard.css", "text/css"),
    ("/dashboard/vendor/uPlot.iife.min.js", "vendor/uPlot.iife.min.js", "text/javascript"),
    ("/dashboard/vendor/uPlot.min.css", "vendor/uPlot.min.css", "text/css"),
    ("/dashboard/vendor/uPlot.LICENSE", "vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
)


# --- the history ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """The node's counters at one moment (``None``: the pool's level was unreadable)."""

    t: float
    blocks: int | None
    credited_bits: int | None
    requests: float  # answered requests, the dashboard's own left out
    errors: float  # of which answered with a status >= 400
    drbg_bytes: float  # randomness served, by mode
    raw_bytes: float


def _own_route(route: str) -> bool:
    return route == PAGE or route.startswith(("/dashboard/", DATA_PATH))


def read_counters(registry: CollectorRegistry, source: str, t: float) -> Sample:
    """Return a :class:`Sample` of what ``registry`` (a ``Metrics`` registry) reports now:
    the configured ``source``'s blocks, the pool's credit, requests and served bytes."""
    blocks: int | None = None
    credited: int | None = None
    requests = errors = drbg = raw = 0.0
    for family in registry.collect():
        for s in family.samples:
            if s.name == "qrng_http_requests_total":
                if not _own_route(s.labels.get("route", "")):
                    requests += s.value
                    if s.labels.get("status", "").isdigit() and int(s.labels["status"]) >= 400:
                        errors += s.value
            elif s.name == "qrng_served_random_bytes_total":
                if s.labels.get("mode") == "raw":
                    raw += s.value
                else:
                    drbg += s.value
            elif s.name == "qrng_pool_blocks":
                blocks = (blocks or 0) + (int(s.value) if s.labels.get("source") == source else 0)
            elif s.name == "qrng_pool_credited_bits":
                credited = int(s.value)
    if credited is not None and blocks is None:
        blocks = 0  # the level was read and holds no block of the source
    return Sample(t, blocks, credited, requests, errors, drbg, raw)


def _rate(now: float, before: float, dt: float) -> float:
    """Counter increase per second; a counter that went back (a restart) counts from 0."""
    return round(max(0.0, now - before if now >= before else now) / dt, 3) if dt > 0 else 0.0


def history_json(samples: Sequence[Sample], since: float | None) -> dict[str, list[Any]]:
    """Columns of the samples after ``since`` (all when None), each rate taken over the
    interval ending at its sample (0 for the first sample kept)."""
    out: dict[str, list[Any]] = {
        k: []
        for k in (
            "t",
            "blocks",
            "credited_bits",
            "requests_per_second",
            "errors_per_second",
            "drbg_bytes_per_second",
            "raw_bytes_per_second",
        )
    }
    for i, s in enumerate(samples):
        if since is not None and round(s.t, 3) <= since:
            continue
        p = samples[i - 1] if i else None
        dt = s.t - p.t if p is not None else 0.0
        out["t"].append(round(s.t, 3))
        out["blocks"].append(s.blocks)
        out["credited_bits"].append(s.credited_bits)
        out["requests_per_second"].append(_rate(s.requests, p.requests, dt) if p else 0.0)
        out["errors_per_second"].append(_rate(s.errors, p.errors, dt) if p else 0.0)
        out["drbg_bytes_per_second"].append(_rate(s.drbg_bytes, p.drbg_bytes, dt) if p else 0.0)
        out["raw_bytes_per_second"].append(_rate(s.raw_bytes, p.raw_bytes, dt) if p else 0.0)
    return out


def _sample_loop(ref: weakref.ReferenceType[_Sampler], stop: threading.Event) -> None:
    """Sample until stopped or until the sampler (and so its app) is gone."""
    while not stop.wait(SAMPLE_SECONDS):
        sampler = ref()
        if sampler is None:
            return
        sampler.sample()
        del sampler


class _Sampler:
    """A ring of :class:`Sample` taken every :data:`SAMPLE_SECONDS` by a daemon thread."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._ring: deque[Sample] = deque(maxlen=HISTORY_SAMPLES)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._failing = False

    def sample(self) -> None:
        """Take one sample now (blocking: reads the pool's level, bounded by the probe)."""
        ctx = self._ctx
        try:
            s = read_counters(ctx.metrics.registry, ctx.settings.source, time.time())
        except Exception as exc:  # a sample missed is a gap in a chart, never an error
            if not self._failing:
                log.warning("dashboard: cannot sample the counters (%s)", type(exc).__name__)
            self._failing = True
            return
        self._failing = False
        with self._lock:
            self._ring.append(s)

    def samples(self) -> list[Sample]:
        """The kept samples, oldest first."""
        with self._lock:
            return list(self._ring)

    @property
    def started(self) -> bool:
        """True while this process's sampling thread runs, or once sampling was stopped."""
        thread = self._thread
        alive = thread is not None and thread.is_alive() and self._pid == os.getpid()
        return alive or self._stop.is_set()

    def start(self) -> None:
        """Start sampling and take a first sample (idempotent; again in a forked child,
        whose thread is gone). Blocking: reads the pool's level."""
        with self._lock:
            if self.started:
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=_sample_loop,
                args=(weakref.ref(self), self._stop),
                name="qrng-dashboard",
                daemon=True,
            )
            self._thread.start()
        self.sample()

    def stop(self) -> None:
        """Stop sampling for good."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


_SAMPLERS: weakref.WeakValueDictionary[int, _Sampler] = weakref.WeakValueDictionary()


def start(ctx: Context) -> None:
    """Start sampling the history of ``ctx``'s dashboard (the server's start-up calls it)."""
    sampler = _SAMPLERS.get(id(ctx))
    if sampler is not None:
        sampler.start()


def stop(ctx: Context) -> None:
    """Stop sampling the history of ``ctx``'s dashboard (the server's shutdown calls it)."""
    sampler = _SAMPLERS.get(id(ctx))
    if sampler is not None:
        sampler.stop()


# --- the snapshot ---------------------------------------------------------------------


def _harvest_json(h: Mapping[str, Any], creditable: bool, witness_required: bool) -> dict[str, Any]:
    """One recent harvest: its provenance, blocks left and the witness verdict."""
    witness = h.get("witness")
    status = None if witness is None else witness.get("status")
    if not creditable:
        credit = "none"
    elif witness_required and h.get("source") in QUANTUM_SOURCE_KINDS and status != "passed":
        credit = "withheld"
    else:
        credit = "assessed"
    return {
        "harvest_id": h.get("harvest_id"),
        "source": h.get("source"),
        "harvested_at": h.get("harvested_at"),
        "backend": h.get("backend"),
        "job_id": h.get("job_id"),
        "qubits": h.get("qubits"),
        "shots": h.get("shots"),
        "blocks_left": h.get("blocks_left"),
        "credit": credit,
        "witness": None
        if witness is None
        else {
            k: witness.get(k)
            for k in ("kind", "value", "bound", "stderr", "shots", "p_classical", "status")
        },
    }


def _health_json(health: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if health is None:
        return None
    return {
        k: health.get(k)
        for k in (
            "state",
            "ready",
            "failed_in_row",
            "persistent_after",
            "persistent_failure",
            "harvests_checked",
            "harvests_dropped",
            "failures",
            "streams",
            "samples_accepted",
            "ones_fraction",
            "last_ones_fraction",
            "last_min_entropy",
        )
    }


def _harvester_json(h: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if h is None:
        return None
    out = {
        k: h.get(k)
        for k in (
            "running",
            "active",
            "harvests",
            "dropped",
            "source_errors",
            "blocks_added",
            "credited_bits_added",
            "last_error",
            "last_harvest_at",
            "backoff_until",
            "rate",
        )
    }
    witness = h.get("witness") or {}
    out["witness_last"] = witness.get("last")
    out["witness_withheld"] = witness.get("withheld")
    info = h.get("source_info") or {}
    out["backend"] = info.get("backend")
    return out


def source_state(status: Mapping[str, Any]) -> str:
    """The source's state for the page: ``persistent`` while a failure is recorded (in any
    process), else the health monitor's (``ok``, ``intermittent``, ``startup``), else
    ``unknown`` (this process runs no harvester)."""
    if status.get("source_state") is not None:
        return "persistent"
    harvester = status.get("harvester") or {}
    health = harvester.get("health") or {}
    return str(health.get("state") or "unknown")


def _engine_json(engine: Mapping[str, Any]) -> dict[str, Any]:
    seed = engine.get("seed") or {}
    provenance = seed.get("provenance") or {}
    return {
        "seeded": engine.get("seeded"),
        "reseeds": engine.get("reseeds"),
        "bytes_since_reseed": engine.get("bytes_since_reseed"),
        "drbg_bytes": engine.get("drbg_bytes"),
        "raw_bytes": engine.get("raw_bytes"),
        "seeded_at": seed.get("seeded_at"),
        "seed_source": provenance.get("source"),
        "seed_harvest_id": provenance.get("harvest_id"),
    }


def snapshot_json(
    ctx: Context, status: Mapping[str, Any], extras: Mapping[str, Any]
) -> dict[str, Any]:
    """The dashboard's document from ``node.status()`` and the beacon and log facts."""
    settings = ctx.settings
    pool = status["pool"]
    creditable = settings.source in CREDITABLE_SOURCE_KINDS
    harvester = status.get("harvester")
    failure = status.get("source_state")
    return {
        "generated_at": time.time(),
        "sample_seconds": SAMPLE_SECONDS,
        "server": {
            "version": __version__,
            "node": settings.node,
            "pid": os.getpid(),
            "workers": settings.workers,
            "uptime_seconds": round(status.get("uptime_seconds", 0.0), 1),
            "auth_required": ctx.access.auth_required,
        },
        "source": {
            "kind": settings.source,
            "quantum": settings.source in QUANTUM_SOURCE_KINDS,
            "creditable": creditable,
            "state": source_state(status),
            "failure": None
            if failure is None
            else {
                k: failure.get(k)
                for k in (
                    "test",
                    "stream",
                    "failed_at",
                    "quarantined_harvests",
                    "quarantined_blocks",
                    "message",
                )
            },
        },
        "pool": {
            k: pool.get(k)
            for k in (
                "backend",
                "store",
                "blocks",
                "credited_bits",
                "by_source",
                "low_water",
                "high_water",
                "integrity_failures",
            )
        },
        "harvests": [
            _harvest_json(h, creditable, settings.witness_required)
            for h in pool.get("recent_harvests", [])
        ],
        "leader": status.get("leader"),
        "harvester": _harvester_json(harvester),
        "health": _health_json(None if harvester is None else harvester.get("health")),
        "assessment": status.get("assessment"),
        "engine": _engine_json(status.get("engine") or {}),
        "witness": status.get("witness"),
        "beacon": extras.get("beacon"),
        "log": extras.get("log"),
    }


def _beacon_json(ctx: Context) -> dict[str, Any]:
    period = ctx.settings.beacon_period
    out: dict[str, Any] = {"enabled": period > 0, "period_seconds": period, "latest": None}
    try:
        pulse = stored_pulse(ctx.node.log_store.last_pulse())
    except QuantumRNGError as exc:
        out["error"] = exc.message
        return out
    if pulse is not None:
        out["latest"] = {
            "chain_index": pulse.chain_index,
            "pulse_index": pulse.pulse_index,
            "time_stamp": pulse.time_stamp,
            "status_code": pulse.status_code,
            "output_value": pulse.output_value.hex().upper(),
        }
    return out


def _log_json(ctx: Context) -> dict[str, Any]:
    try:
        raw = ctx.node.log_store.head()
    except QuantumRNGError as exc:
        return {"head": None, "error": exc.message}
    if raw is None:
        return {"head": None}
    head = orjson.loads(raw)
    return {
        "head": {k: head.get(k) for k in ("tree_size", "root_hash", "timestamp", "key_id")},
    }


# --- assessments and the battery ------------------------------------------------------


def assessments_json(ctx: Context) -> list[dict[str, Any]]:
    """The stored assessment of every creditable source kind (None where there is none)."""
    out = []
    for kind in sorted(CREDITABLE_SOURCE_KINDS):
        stored = SourceLedger(ctx.node.pool, kind).assessment()
        out.append({"source": kind, "assessment": None if stored is None else stored.to_json()})
    return out


def battery_json(results: Iterable[battery.TestResult]) -> list[dict[str, Any]]:
    """The battery's results as JSON, p-values to 6 decimals."""
    return [
        {
            "name": r.name,
            "section": r.section,
            "p_values": [round(p, 6) for p in r.p_values],
            "labels": list(r.labels),
            "parameters": r.parameters,
            "passed": r.passed,
            "skipped": r.skipped,
        }
        for r in results
    ]


def _run_battery(data: bytes) -> list[battery.TestResult]:
    """Run the battery in a fresh process: its minutes of NumPy and SciPy leave the
    server's interpreter (and its event loop) alone."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        return executor.submit(battery.run, data).result()


class _Battery:
    """The last SP 800-22 run on fresh DRBG output, redone at most every ``interval``."""

    def __init__(self, ctx: Context, interval: float) -> None:
        self._ctx = ctx
        self.interval = interval
        self._lock = threading.Lock()
        self._running = False
        self._state: dict[str, Any] = {"state": "idle" if interval > 0 else "off"}

    def state(self) -> dict[str, Any]:
        """What the page shows; starts a run when none is recent."""
        with self._lock:
            state = dict(self._state)
            due = self.interval > 0 and not self._running
            ran_at = state.get("ran_at")
            if due and ran_at is not None and time.time() - ran_at < self.interval:
                due = False
            if due:
                self._running = True
                state["state"] = "running"
                self._state = {**self._state, "state": "running"}
        if due:
            threading.Thread(target=self._run, name="qrng-battery", daemon=True).start()
        state.update(interval_seconds=self.interval, bytes=BATTERY_BYTES, alpha=battery.ALPHA)
        return state

    def _run(self) -> None:
        started = time.time()
        result: dict[str, Any]
        try:
            data = self._ctx.engine.random_bytes(BATTERY_BYTES)
            results = _run_battery(data)
            del data
        except QuantumRNGError as exc:
            result = {"state": "unavailable", "message": exc.message}
        except Exception as exc:  # the battery's own failure: shown, logged, retried later
            log.warning("dashboard: the SP 800-22 battery failed (%s)", type(exc).__name__)
            result = {"state": "failed", "message": f"the battery failed ({type(exc).__name__})"}
        else:
            tests = battery_json(results)
            ran = [t for t in tests if t["skipped"] is None]
            result = {
                "state": "done",
                "tests": tests,
                "passed": sum(1 for t in ran if t["passed"]),
                "failed": sum(1 for t in ran if not t["passed"]),
                "skipped": len(tests) - len(ran),
                "p_values": sum(len(t["p_values"]) for t in ran),
            }
        result.update(ran_at=started, seconds=round(time.time() - started, 2))
        with self._lock:
            self._state = result
            self._running = False


# --- routes ---------------------------------------------------------------------------


def _asset(name: str, media_type: str) -> Handler:
    body = (_STATIC / name).read_bytes()
    headers = {
        "content-security-policy": _CSP,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",
    }

    async def asset(request: Request) -> Response:
        return Response(body, media_type=media_type, headers=headers)

    return asset


def api(ctx: Context) -> Api:
    """Return the dashboard's routes over ``ctx`` (none when ``dashboard`` is off)."""
    settings = ctx.settings
    if not settings.dashboard:
        return Api("", ())
    access = ctx.access
    private = access.private_status
    sampler = _SAMPLERS[id(ctx)] = _Sampler(ctx)
    checks = _Battery(ctx, settings.dashboard_battery_seconds)

    def read_snapshot() -> tuple[dict[str, Any], dict[str, Any]]:
        status = ctx.node.status()
        return status, {"beacon": _beacon_json(ctx), "log": _log_json(ctx)}

    snapshot_read = BoundedRead(read_snapshot, "the dashboard", POOL_ANSWER_SECONDS)

    def read_quality() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return ctx.node.assessment_status(), assessments_json(ctx)

    quality_read = BoundedRead(read_quality, "the dashboard", POOL_ANSWER_SECONDS)
    since_param = Param(
        "since",
        "float",
        "Return only the history sampled after this Unix time (the last one the page has).",
        minimum=0,
    )

    async def snapshot(request: Request) -> Response:
        access.authorize_status(request)
        since: float | None = parse_query(request.query_params, (since_param,))["since"]
        if not sampler.started:
            await to_thread.run_sync(sampler.start)
        status, extras = await to_thread.run_sync(snapshot_read)
        body = snapshot_json(ctx, status, extras)
        body["history"] = history_json(sampler.samples(), since)
        return json_response(body, headers=NO_STORE)

    async def quality(request: Request) -> Response:
        access.authorize_status(request)
        parse_query(request.query_params, ())
        progress, stored = await to_thread.run_sync(quality_read)
        body = {
            "generated_at": time.time(),
            "source": settings.source,
            "assessment": progress,
            "assessments": stored,
            "battery": checks.state(),
        }
        return json_response(body, headers=NO_STORE)

    page = _asset("dashboard.html", "text/html; charset=utf-8")

    async def index(request: Request) -> Response:
        if not sampler.started:
            await to_thread.run_sync(sampler.start)
        return await page(request)

    errors = (401, 403, 503) if private else (503,)
    obj = {"type": "object"}
    endpoints = [
        Endpoint(
            PAGE,
            index,
            "dashboard",
            "The operator's dashboard (HTML): supply, health, assessment, beacon and log.",
            TAG,
            content={"text/html": {"type": "string"}},
        ),
        Endpoint(
            DATA_PATH,
            snapshot,
            "dashboard_snapshot",
            "The dashboard's live data: pool, harvests, health, rates, beacon, log; no secret.",
            TAG,
            params=(since_param,),
            content={"application/json": {**obj, "required": ["pool", "source", "history"]}},
            errors=(400, *errors),
            secured=private,
            key_required=private,
        ),
        Endpoint(
            DATA_PATH + "/quality",
            quality,
            "dashboard_quality",
            "Stored SP 800-90B assessments per source and the SP 800-22 battery on recent "
            "DRBG output, with p-values.",
            TAG,
            content={"application/json": {**obj, "required": ["assessments", "battery"]}},
            errors=(400, *errors),
            secured=private,
            key_required=private,
        ),
    ]
    endpoints += [
        Endpoint(path, _asset(name, media), f"dashboard_{i}", "", TAG, documented=False)
        for i, (path, name, media) in enumerate(_ASSETS)
    ]
    return Api("", tuple(endpoints))
