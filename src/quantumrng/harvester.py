"""The harvester: source → health tests → assessment → conditioning → pool, between water marks.

A background thread keeps the pool's blocks of the configured source
between the low and high water marks: below ``low_water`` it harvests until
``high_water``, then idles. A source error or a failed health test is
counted and backed off exponentially (with jitter, up to ``backoff_max``);
the failing harvest is dropped, never used. An optional lock file makes
one harvester per node, however many server workers there are.

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
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from quantumrng.accounting import SourceFailure, SourceLedger
from quantumrng.assessment import MIN_SAMPLES
from quantumrng.assessment.source import SourceAssessment, assess_source, assessment_key
from quantumrng.block import Block
from quantumrng.conditioning import condition
from quantumrng.errors import HealthTestFailure, QuantumRNGError, RepeatedHarvest, SourceFailed
from quantumrng.health import HealthMonitor, summarize_failures
from quantumrng.pool.base import Pool
from quantumrng.provenance import CREDITABLE_SOURCE_KINDS
from quantumrng.sources.base import Harvest, Source

__all__ = ["Harvester"]

log = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 300.0  # harvest rate is averaged over this window


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
        lock_path: Path | None = None,
        assessment_samples: int = MIN_SAMPLES,
        require_operator_reset: bool = False,
        assess_in_subprocess: bool = True,
    ) -> None:
        self.source = source
        self.pool = pool
        self.monitor = monitor if monitor is not None else HealthMonitor()
        self.ledger = SourceLedger(pool, source.kind, check_seconds=0.0)
        self.assessment_samples = assessment_samples
        self.require_operator_reset = require_operator_reset
        self._assess_in_subprocess = assess_in_subprocess
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
        self._lock_path = lock_path
        self._lock_file: IO[bytes] | None = None
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._filling = True
        self._failures_in_row = 0
        self._recent: deque[tuple[float, int, int]] = deque()  # (time, blocks, raw bits)
        self.harvests = 0
        self.source_errors = 0
        self.blocks_added = 0
        self.credited_bits_added = 0
        self.last_error: str | None = None
        self.last_harvest_at: float | None = None
        self.backoff_until = 0.0

    # -- one harvest -----------------------------------------------------------

    def harvest_once(self) -> list[Block]:
        """Harvest, test, assess or condition, and store once; return the blocks stored.

        Raises the source's ``SourceError``, ``HealthTestFailure`` or
        ``SourceFailed`` after counting it; nothing from a failing harvest
        reaches the pool.
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
        if key is not None and assessment is None:
            self._collect(harvest, key)
            blocks: list[Block] = []
        else:
            blocks = condition(harvest, report.credit_per_stream)
            if blocks:
                self.pool.put(blocks)
        now = time.time()
        with self._mutex:
            self.harvests += 1
            self.blocks_added += len(blocks)
            self.credited_bits_added += sum(b.credited_bits for b in blocks)
            self.last_harvest_at = now
            self.last_error = None
            self._recent.append((now, len(blocks), harvest.nbits))
            while self._recent and now - self._recent[0][0] > RATE_WINDOW_SECONDS:
                self._recent.popleft()
        return blocks

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
        """Harvest synchronously until the pool holds ``target_blocks`` of this source.

        Returns the blocks added. Raises the last error after
        ``max_failures`` failed harvests in a row.
        """
        added = 0
        failures = 0
        while self.level() < target_blocks:
            try:
                blocks = self.harvest_once()
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

    # -- background thread -------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (once)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="qrng-harvester", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background thread and release the node lock."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._release_lock()

    def wake(self) -> None:
        """Ask the thread to look at the pool level now (e.g. after a large take)."""
        self._wake.set()

    @property
    def running(self) -> bool:
        """True while the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def active(self) -> bool:
        """True when this process holds the node lock (or no lock is used)."""
        return self._lock_path is None or self._lock_file is not None

    def _acquire_lock(self) -> bool:
        if self._lock_path is None or self._lock_file is not None:
            return True
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self._lock_path, "ab")  # noqa: SIM115 - held for the thread's life
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._lock_file = fh
        return True

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._acquire_lock():
                self._wait(5.0)  # another process of this node harvests
                continue
            try:
                level = self.level()
            except QuantumRNGError as exc:
                log.warning("pool level unavailable: %s", exc.message)
                self._wait(self._backoff())
                continue
            if level < self.low_water:
                self._filling = True
            elif level >= self.high_water:
                self._filling = False
            if not self._filling:
                self._wait(1.0)
                continue
            try:
                self.harvest_once()
            except QuantumRNGError as exc:
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
        with self._mutex:
            data: dict[str, Any] = {
                "source": self.source.kind,
                "running": self.running,
                "active": self.active,
                "pid": os.getpid(),
                "harvests": self.harvests,
                "dropped": self.dropped,
                "source_errors": self.source_errors,
                "blocks_added": self.blocks_added,
                "credited_bits_added": self.credited_bits_added,
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
