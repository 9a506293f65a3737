"""The harvester: source → health tests → assessment → conditioning → pool, between water marks.

A background thread keeps the pool's blocks of the configured source
between the low and high water marks: below ``low_water`` it harvests until
``high_water``, then idles. A source error or a failed health test is
counted and backed off exponentially (with jitter, up to ``backoff_max``);
the failing harvest is dropped, never used. When the pool itself fails
(Redis down) the thread looks again within :data:`POOL_RETRY_MAX` seconds,
so it recovers soon after the store returns.

One leader per source across every process and node sharing the pool's
store: the thread harvests only while it holds the lease ``harvest:<kind>``
(:class:`LeaseKeeper`, renewed every third of ``lease_seconds`` from its own
thread, so a harvest that blocks for minutes keeps it), and puts with
``fence=lease``, so once the lease expired or another process took it over
nothing this process harvested is stored. The others poll for the lease
about every third of the lease time; when the leader dies another takes over
within the lease time and one poll. Stopping releases the lease at once.
``fill`` (the CLI, the library) takes the same lease, waiting a bounded time.

Entropy accounting (docs/ARCHITECTURE.md, "Entropy accounting"):

- A creditable source (``ibm``, ``file``) earns credit only once assessed
  (SP 800-90B §3.1): its first ``assessment_samples`` samples per backend
  and configuration are health-tested and collected, not stored; the
  assessment (:func:`~quantumrng.assessment.source.assess_source`, run in
  a separate process so the server's threads keep the interpreter) is then
  stored with the pool and sets the credit of every later block. A harvest
  whose backend or configuration differs from the assessment's starts a new
  one.
- A persistent health-test failure (§4.3) is recorded in the pool for every
  process (:class:`~quantumrng.accounting.SourceLedger`), the blocks of the
  unconfirmed harvests before it are quarantined (removed), and nothing is
  harvested until a new start-up test passes: after the backoff, or, with
  ``require_operator_reset``, once an operator ran ``qrng health reset``.
- A quantum harvest (``ibm``) earns credit only when its physics witness
  passed (:mod:`quantumrng.witness`): with ``witness_required`` a harvest
  whose witness failed, or that carried none, is stored with zero credit (raw
  mode serves none of it) and is not collected for an assessment.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from quantumrng.accounting import SourceFailure, SourceLedger
from quantumrng.assessment import MIN_SAMPLES
from quantumrng.assessment.source import SourceAssessment, assess_source, assessment_key
from quantumrng.block import Block
from quantumrng.conditioning import condition
from quantumrng.errors import (
    HealthTestFailure,
    LeaseLost,
    QuantumRNGError,
    RepeatedHarvest,
    SourceError,
    SourceFailed,
    Unavailable,
)
from quantumrng.health import HealthMonitor, summarize_failures
from quantumrng.pool.base import Lease, Pool
from quantumrng.provenance import CREDITABLE_SOURCE_KINDS, QUANTUM_SOURCE_KINDS
from quantumrng.sources.base import Harvest, Source

__all__ = ["POOL_RETRY_MAX", "Harvester", "LeaseKeeper", "holder_name"]

log = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 300.0  # harvest rate is averaged over this window
POOL_RETRY_BASE = 0.5  # first wait after the pool failed, doubling ...
POOL_RETRY_MAX = 5.0  # ... up to this: the store's outage, not the source's backoff


def holder_name(node: str = "") -> str:
    """A lease holder name no other process shares: ``<node>:<pid>:<random suffix>``."""
    return f"{node or socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class LeaseKeeper:
    """Holds one pool lease for this process: acquires it, renews it every third of its
    time from its own thread, and releases it on ``stop``.

    :attr:`lease` is the lease while this process may act on it: until a
    renewal is refused, or (when the store cannot be reached) until the time
    since the last grant the store confirmed, counted from before the request,
    reaches the lease time. Writes are fenced by the store anyway.
    """

    def __init__(
        self,
        pool: Pool,
        name: str,
        holder: str,
        seconds: float,
        *,
        on_gain: Callable[[], None] | None = None,
    ) -> None:
        self.pool = pool
        self.name = name
        self.holder = holder
        self.seconds = seconds
        self._on_gain = on_gain
        self._cond = threading.Condition()
        self._lease: Lease | None = None
        self._deadline = 0.0  # monotonic time by which the store surely ends the lease
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return f"LeaseKeeper({self.name!r}, {self.holder!r})"

    @property
    def poll_seconds(self) -> float:
        """How often the lease is renewed, or asked for while another holds it."""
        return self.seconds / 3

    @property
    def lease(self) -> Lease | None:
        """The lease while this process holds it, else None."""
        with self._cond:
            return self._current()

    def _current(self) -> Lease | None:
        if self._lease is not None and time.monotonic() >= self._deadline:
            log.warning("lease %s not renewed in time; no longer acting on it", self.name)
            self._lease = None
        return self._lease

    def wait(self, timeout: float) -> Lease | None:
        """Wait up to ``timeout`` seconds for the lease; return it, or None."""
        with self._cond:
            self._cond.wait_for(self._current, timeout)
            return self._current()

    def lost(self, lease: Lease) -> None:
        """Stop acting on ``lease`` (a fenced put was refused); the thread asks again."""
        with self._cond:
            if self._lease == lease:
                self._lease = None
                log.warning("lease %s (token %d) lost", lease.name, lease.token)

    def _try(self) -> None:
        """Acquire or renew once; raises the pool's errors."""
        started = time.monotonic()
        with self._cond:
            held = self._current()
        if held is not None:
            if self.pool.renew_lease(held, self.seconds):
                with self._cond:
                    if self._lease == held:
                        self._deadline = started + self.seconds
            else:
                self.lost(held)
            return
        lease = self.pool.acquire_lease(self.name, self.holder, self.seconds)
        if lease is None:
            return
        with self._cond:
            self._lease, self._deadline = lease, started + self.seconds
            if self._on_gain is not None:
                self._on_gain()  # before anyone can see the lease
            self._cond.notify_all()
        log.info("%s leads %s (token %d)", self.holder, self.name, lease.token)

    @property
    def running(self) -> bool:
        """True while the renewing thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread that acquires and renews the lease (once)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="qrng-lease", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and release the lease, so another process takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._cond:
            lease, self._lease = self._lease, None
        if lease is not None:
            try:
                self.pool.release_lease(lease)
            except QuantumRNGError as exc:  # it expires by itself
                log.warning("lease %s not released (%s)", self.name, exc.message)

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.poll_seconds
            try:
                self._try()
                self.last_error = None
            except QuantumRNGError as exc:
                self.last_error = exc.message
                log.warning("lease %s: pool unavailable (%s)", self.name, exc.message)
                wait = min(wait, POOL_RETRY_BASE * 2)
            except Exception:  # a bug must not end the renewals silently
                log.exception("lease %s: error", self.name)
                wait = min(wait, POOL_RETRY_MAX)
            self._stop.wait(wait)


class Harvester:
    """Moves entropy from one source into the pool, health-tested and conditioned."""

    def __init__(
        self,
        source: Source,
        pool: Pool,
        *,
        monitor: HealthMonitor | None = None,
        low_water: int = 256,
        high_water: int = 2048,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        lease_seconds: float = 10.0,
        lease_wait: float | None = None,
        node: str = "",
        assessment_samples: int = MIN_SAMPLES,
        require_operator_reset: bool = False,
        assess_in_subprocess: bool = True,
        witness_required: bool = True,
    ) -> None:
        """``lease_seconds``: the harvest lease's time; ``lease_wait``: how long ``fill``
        waits for it (default twice the lease time); ``node``: this node's name in the
        lease holder's name (default the host name); ``witness_required``: a quantum
        harvest whose witness did not pass earns no credit."""
        self.source = source
        self.pool = pool
        self.lease_name = f"harvest:{source.kind}"
        self.lease_seconds = lease_seconds
        self.lease_wait = 2 * lease_seconds if lease_wait is None else lease_wait
        self.node = node
        self._keeper: LeaseKeeper | None = None
        self._keeper_pid = 0
        self.monitor = monitor if monitor is not None else HealthMonitor()
        self.ledger = SourceLedger(pool, source.kind, check_seconds=0.0)
        self.assessment_samples = assessment_samples
        self.require_operator_reset = require_operator_reset
        self._assess_in_subprocess = assess_in_subprocess
        self.witness_required = witness_required
        self._assessment: SourceAssessment | None = None
        self._assessment_loaded = False
        self._collected: list[npt.NDArray[np.uint8]] = []
        self._collected_key: str | None = None
        self._collected_samples = 0
        self._assessing = False
        self._recovering = False
        self.low_water = low_water
        self.high_water = high_water
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._filling = True
        self._failures_in_row = 0
        self._pool_failures_in_row = 0
        self._recent: deque[tuple[float, int, int]] = deque()  # (time, blocks, raw bits)
        self.harvests = 0
        self.source_errors = 0
        self.blocks_added = 0
        self.credited_bits_added = 0
        self.witness_withheld = 0  # quantum harvests stored uncredited: their witness failed
        self.last_witness: str | None = None
        self.last_error: str | None = None
        self.last_harvest_at: float | None = None
        self.backoff_until = 0.0

    # -- one harvest -----------------------------------------------------------

    def harvest_once(self, *, fence: Lease | None = None) -> list[Block]:
        """Harvest, test, assess or condition, and store once; return the blocks stored.

        Raises the source's ``SourceError``, ``HealthTestFailure`` or
        ``SourceFailed`` after counting it; nothing from a failing harvest
        reaches the pool. With ``fence`` the blocks are put only while that
        lease is held: ``LeaseLost`` otherwise, and they are dropped.
        """
        self._leave_failure_if_allowed()
        try:
            harvest = self.source.harvest()
        except QuantumRNGError as exc:
            with self._mutex:
                self.source_errors += 1
                self.last_error = exc.message
            if isinstance(exc, RepeatedHarvest):  # a stuck device: a failed health test
                state, quarantine = self.monitor.record_failure("repeat")
                if state == "persistent":
                    raise self._fail_persistently(("repeat", -1), quarantine) from None
            raise
        key = self._assessment_key(harvest)
        assessment = None if key is None else self._stored_assessment(key)
        credit = None if assessment is None else list(assessment.credit)
        h = None
        if assessment is not None and min(assessment.credit) > 0:
            h = min(harvest.assessed_entropy, *assessment.credit)
        report = self.monitor.check(harvest, credit=credit, h=h)
        if report.state == "persistent":
            raise self._fail_persistently(report.failures[0], report.quarantine)
        if not report.passed:
            message = (
                f"{harvest.provenance.source} harvest failed health tests: "
                f"{summarize_failures(report.failures)}"
            )
            with self._mutex:
                self.last_error = message
            raise HealthTestFailure(message)
        if self._recovering:
            self.ledger.clear_failure()
            self._recovering = False
            log.warning("the %s source passed a new start-up test", harvest.provenance.source)
        withheld = self._witness_withholds(harvest)
        if key is not None and assessment is None and not withheld:
            self._collect(harvest, key)
            blocks: list[Block] = []
        else:
            credit = [0.0] * harvest.width if withheld else report.credit_per_stream
            blocks = condition(harvest, credit)
            if blocks:
                self.pool.put(blocks, fence=fence)
        now = time.time()
        with self._mutex:
            self.witness_withheld += withheld
            self.last_witness = harvest.provenance.witness_status
            self.harvests += 1
            self.blocks_added += len(blocks)
            self.credited_bits_added += sum(b.credited_bits for b in blocks)
            self.last_harvest_at = now
            self.last_error = None
            self._recent.append((now, len(blocks), harvest.nbits))
            while self._recent and now - self._recent[0][0] > RATE_WINDOW_SECONDS:
                self._recent.popleft()
        return blocks

    def _witness_withholds(self, harvest: Harvest) -> bool:
        """True when ``harvest`` is quantum, the witness is required, and it did not pass
        (failed, or none ran): its bits are not shown to be quantum, so not credited."""
        prov = harvest.provenance
        if not self.witness_required or prov.source not in QUANTUM_SOURCE_KINDS:
            return False
        if prov.witness_status != "passed":
            log.warning(
                "%s harvest %s not credited: witness %s",
                prov.source,
                prov.harvest_id,
                prov.witness_status or "missing",
            )
            return True
        return False

    # -- failure states (SP 800-90B §4.3) ----------------------------------------

    def _leave_failure_if_allowed(self) -> None:
        """In the failure state, start a new start-up test if allowed, else raise."""
        recorded = self.ledger.failure()
        if recorded is not None and self.monitor.state != "persistent":
            self.monitor.fail_persistently(recorded.test, recorded.stream)
        if self.monitor.state != "persistent":
            return
        if recorded is not None and self.require_operator_reset:
            with self._mutex:
                self.last_error = recorded.message()
            raise SourceFailed(
                recorded.message() + "; waiting for an operator reset (qrng health reset)"
            )
        self.monitor.reset()  # the next harvest is a new start-up test
        self._recovering = True

    def _fail_persistently(
        self, failure: tuple[str, int], quarantine: tuple[str, ...]
    ) -> SourceFailed:
        test, stream = failure
        removed = self.pool.discard(quarantine) if quarantine else 0
        record = SourceFailure(
            source=self.source.kind,
            test=test,
            stream=stream,
            failed_at=time.time(),
            quarantined_harvests=len(quarantine),
            quarantined_blocks=removed,
        )
        self.ledger.record_failure(record)
        self._recovering = False
        self._drop_collected()
        message = record.message()
        with self._mutex:
            self.last_error = message
        log.error("%s", message)
        return SourceFailed(message)

    # -- initial assessment (SP 800-90B §3.1) --------------------------------------

    @staticmethod
    def _assessment_key(harvest: Harvest) -> str | None:
        """The assessment ``harvest`` is credited by (source, backend, width and
        configuration), or None for a source that earns no credit."""
        prov = harvest.provenance
        if not harvest.creditable or prov.source not in CREDITABLE_SOURCE_KINDS:
            return None
        return assessment_key(prov.source, prov.backend, harvest.width, harvest.configuration)

    def _stored_assessment(self, key: str) -> SourceAssessment | None:
        """The assessment stored under ``key`` (read from the pool once), or None."""
        if not self._assessment_loaded:
            self._assessment = self.ledger.assessment()
            self._assessment_loaded = True
        assessment = self._assessment
        return assessment if assessment is not None and assessment.key == key else None

    def _collect(self, harvest: Harvest, key: str) -> None:
        """Keep a passing harvest's bits for the assessment ``key``; assess once there are
        enough."""
        prov = harvest.provenance
        if key != self._collected_key:
            self._drop_collected()
            self._collected_key = key
        self._collected.append(harvest.bits())
        self._collected_samples += harvest.samples
        if self._collected_samples < self.assessment_samples:
            return
        bits = np.concatenate(self._collected)
        self._drop_collected()
        kwargs: dict[str, Any] = {
            "source": prov.source,
            "backend": prov.backend,
            "configuration": harvest.configuration,
            "h_submitter": harvest.assessed_entropy,
            "min_samples": self.assessment_samples,
        }
        log.info(
            "assessing the %s source on %d samples x %d streams (SP 800-90B)",
            prov.source,
            bits.shape[0],
            bits.shape[1],
        )
        with self._mutex:
            self._assessing = True
        try:
            assessment = self._run_assessment(bits, kwargs)
        finally:
            bits.fill(0)
            with self._mutex:
                self._assessing = False
        self.ledger.save_assessment(assessment)
        self._assessment = assessment
        log.info(
            "the %s source is assessed at %.3f bits per sample (credit per stream %s)",
            prov.source,
            assessment.credited_bits_per_sample,
            ", ".join(f"{c:.3f}" for c in assessment.credit),
        )

    def _run_assessment(
        self, bits: npt.NDArray[np.uint8], kwargs: dict[str, Any]
    ) -> SourceAssessment:
        if not self._assess_in_subprocess:
            return assess_source(bits, **kwargs).assessment
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
            return executor.submit(assess_source, bits, **kwargs).result().assessment

    def _drop_collected(self) -> None:
        for bits in self._collected:
            bits.fill(0)
        self._collected = []
        self._collected_key = None
        self._collected_samples = 0

    def assessment_status(self) -> dict[str, Any]:
        """Where the source's assessment stands: not needed, collecting, assessing, assessed."""
        with self._mutex:
            assessing = self._assessing
            collected = self._collected_samples
        kind = self.source.kind
        if kind not in CREDITABLE_SOURCE_KINDS:
            return {"state": "not_credited", "samples_needed": 0}
        assessment = self._assessment
        if assessment is not None and not collected and not assessing:
            return {"state": "assessed", **assessment.to_json()}
        return {
            "state": "assessing" if assessing else "collecting",
            "samples_collected": collected,
            "samples_needed": self.assessment_samples,
            "previous": None if assessment is None else assessment.to_json(),
        }

    @property
    def dropped(self) -> int:
        """Harvests dropped for failing a health test (counted by the monitor)."""
        return self.monitor.dropped

    def level(self) -> int:
        """Blocks of this harvester's source kind in the pool."""
        return self.pool.level().by_source.get(self.source.kind, 0)

    def fill(
        self,
        target_blocks: int,
        *,
        max_failures: int = 3,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Harvest synchronously, as the lease's holder, until the pool holds
        ``target_blocks`` of this source.

        Returns the blocks added (0 when the leader filled it meanwhile).
        Raises ``LeaseLost`` when another process leads for ``lease_wait``
        seconds without the pool reaching the target, and the last error after
        ``max_failures`` failed harvests in a row.
        """
        added = 0
        failures = 0
        with self._leading() as keeper:
            self._assessment_loaded = False  # another leader may have assessed meanwhile
            deadline = time.monotonic() + self.lease_wait
            while self.level() < target_blocks:
                lease = keeper.lease
                if lease is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise self._led_elsewhere()
                    keeper.wait(min(left, keeper.poll_seconds))
                    continue
                try:
                    blocks = self.harvest_once(fence=lease)
                except LeaseLost:
                    keeper.lost(lease)
                    deadline = time.monotonic() + self.lease_wait
                    continue
                except QuantumRNGError:
                    failures += 1
                    if failures >= max_failures:
                        raise
                    time.sleep(min(self.backoff_max, self.backoff_base * 2 ** (failures - 1)))
                    continue
                failures = 0
                added += len(blocks)
                if progress is not None:
                    progress(len(blocks))
        return added

    def _led_elsewhere(self) -> LeaseLost:
        info = self.pool.lease_holder(self.lease_name)
        who = "another process" if info is None else f"{info.holder} (token {info.token})"
        return LeaseLost(
            f"the {self.source.kind} source is harvested by {who}, which holds the lease "
            f"{self.lease_name}; waited {self.lease_wait:g}s for it"
        )

    # -- leadership --------------------------------------------------------------

    @property
    def holder(self) -> str:
        """This process's name as a lease holder (``<node>:<pid>:<random suffix>``)."""
        return self._lease_keeper().holder

    def _lease_keeper(self) -> LeaseKeeper:
        """This process's keeper of the harvest lease (a forked child makes its own)."""
        if self._keeper is None or self._keeper_pid != os.getpid():
            self._keeper = LeaseKeeper(
                self.pool,
                self.lease_name,
                holder_name(self.node),
                self.lease_seconds,
                on_gain=self._wake.set,
            )
            self._keeper_pid = os.getpid()
        return self._keeper

    @contextmanager
    def _leading(self) -> Iterator[LeaseKeeper]:
        """The running keeper; one started here is stopped (the lease released) after."""
        keeper = self._lease_keeper()
        if keeper.running:
            yield keeper
            return
        keeper.start()
        try:
            yield keeper
        finally:
            keeper.stop()

    # -- background thread -------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (once), and the keeper of the harvest lease."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._lease_keeper().start()
        self._thread = threading.Thread(target=self._run, name="qrng-harvester", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background thread and release the harvest lease."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._keeper is not None and self._keeper_pid == os.getpid():
            self._keeper.stop(timeout)

    def wake(self) -> None:
        """Ask the thread to look at the pool level now (e.g. after a large take)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        """True while the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def lease(self) -> Lease | None:
        """The harvest lease while this process holds it, else None."""
        keeper = self._keeper
        return None if keeper is None or self._keeper_pid != os.getpid() else keeper.lease

    @property
    def active(self) -> bool:
        """True when this process leads the harvest of its source (holds the lease)."""
        return self.lease is not None

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self) -> None:
        keeper = self._lease_keeper()
        led: Lease | None = None
        while not self._stop.is_set():
            lease = keeper.lease
            if lease is None:
                self._wait(keeper.poll_seconds)  # the keeper wakes this thread when it leads
                continue
            if lease != led:
                led = lease
                self._wake.clear()  # the keeper's wake-up is seen: it must not cut a backoff
                self._assessment_loaded = False  # another leader may have assessed meanwhile
            try:
                level = self.level()
            except QuantumRNGError as exc:
                delay = self._pool_retry()
                log.warning("pool level unavailable (%s); retrying in %.1fs", exc.message, delay)
                self._wait(delay)
                continue
            self._pool_failures_in_row = 0
            if level < self.low_water:
                self._filling = True
            elif level >= self.high_water:
                self._filling = False
            if not self._filling:
                self._wait(1.0)
                continue
            try:
                self.harvest_once(fence=lease)
            except LeaseLost as exc:
                keeper.lost(lease)
                with self._mutex:
                    self.last_error = exc.message
                log.warning("harvest not stored: %s", exc.message)
                continue
            except QuantumRNGError as exc:
                if isinstance(exc, Unavailable) and not isinstance(
                    exc, SourceError | HealthTestFailure
                ):
                    delay = self._pool_retry()  # the store failed, not the source
                else:
                    delay = self._backoff()
                log.warning("harvest failed (%s); retrying in %.1fs", exc.message, delay)
                self._wait(delay)
                continue
            except Exception:  # a bug must not kill the harvester silently
                delay = self._backoff()
                log.exception("harvester error; retrying in %.1fs", delay)
                self._wait(delay)
                continue
            self._failures_in_row = 0

    def _pool_retry(self) -> float:
        """The wait after the pool failed: short and bounded by :data:`POOL_RETRY_MAX`."""
        self._pool_failures_in_row += 1
        delay = min(POOL_RETRY_MAX, POOL_RETRY_BASE * 2.0 ** (self._pool_failures_in_row - 1))
        delay *= 0.5 + random.random() / 2
        self.backoff_until = time.time() + delay
        return delay

    def _backoff(self) -> float:
        self._failures_in_row += 1
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** (self._failures_in_row - 1))
        delay *= 0.5 + random.random() / 2  # jitter so nodes do not retry in step
        self.backoff_until = time.time() + delay
        return delay

    # -- reporting -------------------------------------------------------------

    def rate(self) -> dict[str, float]:
        """Blocks and raw bits per second over the last few minutes."""
        with self._mutex:
            recent = list(self._recent)
        if not recent:
            return {"blocks_per_second": 0.0, "raw_bits_per_second": 0.0}
        span = max(time.time() - recent[0][0], 1.0)
        return {
            "blocks_per_second": sum(r[1] for r in recent) / span,
            "raw_bits_per_second": sum(r[2] for r in recent) / span,
        }

    def snapshot(self) -> dict[str, Any]:
        """Counters, rate, health and what the source says of itself (``Source.info``);
        nothing secret."""
        lease = self.lease
        with self._mutex:
            data: dict[str, Any] = {
                "source": self.source.kind,
                "running": self.running,
                "active": lease is not None,
                "holder": self.holder,
                "lease_token": None if lease is None else lease.token,
                "pid": os.getpid(),
                "harvests": self.harvests,
                "dropped": self.dropped,
                "source_errors": self.source_errors,
                "blocks_added": self.blocks_added,
                "credited_bits_added": self.credited_bits_added,
                "witness": {
                    "required": self.witness_required,
                    "last": self.last_witness,
                    "withheld": self.witness_withheld,
                },
                "last_error": self.last_error,
                "last_harvest_at": self.last_harvest_at,
                "backoff_until": self.backoff_until if self.backoff_until > time.time() else None,
                "low_water": self.low_water,
                "high_water": self.high_water,
            }
        data["rate"] = self.rate()
        data["source_info"] = self.source.info()
        data["health"] = self.monitor.snapshot()
        data["assessment"] = self.assessment_status()
        return data
