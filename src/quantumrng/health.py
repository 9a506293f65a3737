"""SP 800-90B health tests on raw bit streams: RCT, APT, bias, start-up.

Low-level part of the data path (sources -> **health** -> conditioning).
The pure functions work on one stream (a 1-D array of samples, vectorised
with numpy); :class:`HealthMonitor` keeps the per-source state that makes
the tests continuous across harvests.

- Repetition Count Test, SP 800-90B §4.4.1.
- Adaptive Proportion Test, SP 800-90B §4.4.2.
- Start-up test, SP 800-90B §4.3 (the continuous tests on >= 1024 samples).
- Most Common Value estimate, SP 800-90B §6.3.1.
- Bias monitor (ours, not in the standard): the count of the commoner bit
  value in a harvest must stay below what the assessed min-entropy allows,
  at a 2^-20 false-alarm level (see :func:`bias_cutoff`).
- Failure states, SP 800-90B §4.3: a failed harvest is an *intermittent*
  failure (dropped; the next harvest is tested afresh); ``persistent_after``
  failed harvests in a row are a *persistent* failure, which stops the
  source until a new start-up test passes. A harvest is *confirmed* once
  the next one passes (its unfinished APT window and RCT run were then
  completed by passing tests; a pass right after a failure confirms
  nothing, since the failure restarted the tests); the accepted harvests not
  yet confirmed when a failure turns persistent are listed for quarantine.
- Credit is not decided here: it is the source's assessment
  (:mod:`quantumrng.assessment.source`), given to :meth:`HealthMonitor.check`.

Reports and snapshots carry statistics only, never raw bits.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from quantumrng.errors import HealthTestFailure

if TYPE_CHECKING:
    from quantumrng.sources.base import Harvest

__all__ = [
    "ALPHA_EXP",
    "APT_WINDOW",
    "STARTUP_SAMPLES",
    "AptResult",
    "HealthMonitor",
    "HealthReport",
    "RctResult",
    "adaptive_proportion_test",
    "apt_cutoff",
    "bias_cutoff",
    "is_biased",
    "summarize_failures",
    "mcv_min_entropy",
    "rct_cutoff",
    "repetition_count_test",
]

ALPHA_EXP = 20  # false-positive probability 2^-20 per test, SP 800-90B §4.4
APT_WINDOW = 1024  # samples per APT window for binary data, SP 800-90B §4.4.2
STARTUP_SAMPLES = 1024  # samples per stream in the start-up test, SP 800-90B §4.3
PERSISTENT_AFTER = 3  # failed harvests in a row that make a failure persistent (§4.3)
MAX_UNCONFIRMED = 1024  # accepted harvests awaiting confirmation that are remembered
MCV_Z = 2.576  # 99% upper confidence bound, SP 800-90B §6.3.1

TESTS = ("startup", "rct", "apt", "bias", "repeat")
STATES = ("startup", "ok", "intermittent", "persistent")


def _check_h(h: float) -> None:
    if not (h > 0.0 and math.isfinite(h)):
        raise ValueError("min-entropy per sample must be positive and finite")


def rct_cutoff(h: float, alpha_exp: int = ALPHA_EXP) -> int:
    """Return the RCT cutoff C = 1 + ceil(alpha_exp / H) (SP 800-90B §4.4.1)."""
    _check_h(h)
    if alpha_exp < 1:
        raise ValueError("alpha_exp must be positive")
    return 1 + math.ceil(alpha_exp / h)


@functools.lru_cache(maxsize=64)
def apt_cutoff(h: float, window: int = APT_WINDOW, alpha_exp: int = ALPHA_EXP) -> int:
    """Return the APT cutoff C = 1 + CRITBINOM(W, 2^-H, 1 - alpha) (SP 800-90B §4.4.2).

    That is the smallest c with P[Binom(W, p) >= c] <= 2^-alpha_exp, for
    p = 2^-H as a float. The tail is summed exactly in integers: p is a
    dyadic rational num/den, so den^W * P[X = k] = comb(W, k) num^k (den-num)^(W-k).
    """
    _check_h(h)
    if window < 1 or alpha_exp < 1:
        raise ValueError("window and alpha_exp must be positive")
    p: float = 2.0**-h
    num, den = p.as_integer_ratio()
    if num == 0:
        raise ValueError("min-entropy per sample is too large")
    rest = den - num
    whole = den**window
    term = num**window  # den^W * P[X = W]
    tail = 0
    k = window
    while True:
        tail += term
        if tail << alpha_exp > whole:  # P[X >= k] > alpha, so k is one too small
            return k + 1
        term = term * k * rest // ((window - k + 1) * num)  # den^W * P[X = k - 1], exact
        k -= 1


def bias_cutoff(samples: int, h: float, alpha_exp: int = ALPHA_EXP) -> int:
    """Return the smallest count of the commoner bit value that fails the bias monitor.

    A binary stream of min-entropy H has no value more likely than
    p = 2^-H, so the commoner value's count K in n samples is at most
    Binom(n, p) in distribution. The cutoff is the normal approximation of
    its upper 2^-(alpha_exp+1) quantile, n p + z sqrt(n p (1-p)); halving
    alpha covers both values (ones or zeros), so a source that meets its
    assessment fails with probability about 2^-alpha_exp or less. The
    approximation is rough for small n, where the cutoff exceeds n anyway.
    """
    _check_h(h)
    if samples < 0 or alpha_exp < 1:
        raise ValueError("samples must be non-negative and alpha_exp positive")
    p: float = 2.0**-h
    z = -NormalDist().inv_cdf(2.0 ** -(alpha_exp + 1))
    return math.floor(samples * p + z * math.sqrt(samples * p * (1.0 - p))) + 1


def is_biased(stream: npt.ArrayLike, cutoff: int) -> bool:
    """Return True when 0s or 1s occur at least ``cutoff`` times in a bit stream."""
    bits = np.asarray(stream).ravel()
    ones = int(np.count_nonzero(bits))
    return max(ones, bits.size - ones) >= cutoff


def summarize_failures(failures: Sequence[tuple[str, int]]) -> str:
    """Summarise (test, stream) failures in one short line: "rct on 16 streams, bias on 3"."""
    by_test: dict[str, list[int]] = {}
    for test, stream in failures:
        by_test.setdefault(test, []).append(stream)
    parts = []
    for test, streams in by_test.items():
        if len(streams) > 3:
            parts.append(f"{test} on {len(streams)} streams")
        else:
            parts.append(
                f"{test} on stream{'s' if len(streams) > 1 else ''} " + ", ".join(map(str, streams))
            )
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class RctResult:
    """Outcome of a Repetition Count Test over one stream.

    ``index`` is the sample at which a run first reached the cutoff;
    ``run`` is the (value, length) of the final run, to pass as ``run_in``
    of the next call so that the test is continuous.
    """

    failed: bool
    index: int | None
    run: tuple[int, int]


@dataclass(frozen=True, slots=True)
class AptResult:
    """Outcome of an Adaptive Proportion Test over one stream.

    ``index`` is the sample at which a window's count first reached the
    cutoff; ``window`` is the (reference value, count, samples seen) of the
    unfinished last window, to pass as ``window_in`` of the next call.
    """

    failed: bool
    index: int | None
    window: tuple[int, int, int]


def repetition_count_test(
    stream: npt.ArrayLike, cutoff: int, run_in: tuple[int, int] = (0, 0)
) -> RctResult:
    """Run the Repetition Count Test (SP 800-90B §4.4.1) on one stream.

    Fails when some value repeats ``cutoff`` times in a row. ``run_in`` is
    the (value, length) of the run that ended the previous samples; a
    length of 0 means none.
    """
    if cutoff < 1:
        raise ValueError("cutoff must be positive")
    samples = np.asarray(stream).ravel()
    n = samples.size
    if n == 0:
        return RctResult(False, None, run_in)
    starts = np.concatenate(([0], np.flatnonzero(samples[1:] != samples[:-1]) + 1))
    lengths = np.diff(np.append(starts, n)).astype(np.int64)
    carried = run_in[1] if run_in[1] > 0 and samples[0] == run_in[0] else 0
    lengths[0] += carried
    bad = np.flatnonzero(lengths >= cutoff)
    index = None
    if bad.size:
        first = int(bad[0])
        offset = carried if first == 0 else 0
        index = max(int(starts[first]), int(starts[first]) + cutoff - 1 - offset)
    return RctResult(index is not None, index, (int(samples[-1]), int(lengths[-1])))


def _first_reach(matches: npt.NDArray[np.bool_], start: int, cutoff: int) -> int | None:
    """Return the first position where ``start`` plus the running match count reaches cutoff."""
    hits = np.flatnonzero(np.cumsum(matches, dtype=np.int64) + start >= cutoff)
    return int(hits[0]) if hits.size else None


def adaptive_proportion_test(
    stream: npt.ArrayLike,
    cutoff: int,
    window: int = APT_WINDOW,
    window_in: tuple[int, int, int] = (0, 0, 0),
) -> AptResult:
    """Run the Adaptive Proportion Test (SP 800-90B §4.4.2) on one stream.

    The stream is cut into windows of ``window`` samples; in each, the count
    B of samples equal to the window's first sample (that one included)
    must stay below ``cutoff``. A last, unfinished window is tested as far
    as it goes and returned for the next call; ``window_in`` continues the
    previous call's unfinished window (samples seen 0 means none).
    """
    if cutoff < 1 or window < 1:
        raise ValueError("cutoff and window must be positive")
    samples = np.asarray(stream).ravel()
    ref, count, seen = window_in
    index: int | None = None
    pos = 0
    if 0 < seen < window:
        head = samples[: window - seen]
        matches = head == ref
        hit = _first_reach(matches, count, cutoff)
        if hit is not None:
            index = hit
        count += int(np.count_nonzero(matches))
        seen += head.size
        pos = head.size
        if seen < window:
            return AptResult(index is not None, index, (ref, count, seen))

    rest = samples[pos:]
    full = rest.size // window
    if full:
        windows = rest[: full * window].reshape(full, window)
        matches_2d = windows == windows[:, :1]
        bad = np.flatnonzero(matches_2d.sum(axis=1) >= cutoff)
        if bad.size and index is None:
            first = int(bad[0])
            hit = _first_reach(matches_2d[first], 0, cutoff)
            index = None if hit is None else pos + first * window + hit

    tail = rest[full * window :]
    state = (0, 0, 0)
    if tail.size:
        tail_ref = int(tail[0])
        matches = tail == tail_ref
        hit = _first_reach(matches, 0, cutoff)
        if hit is not None and index is None:
            index = pos + full * window + hit
        state = (tail_ref, int(np.count_nonzero(matches)), int(tail.size))
    return AptResult(index is not None, index, state)


def _mcv(max_count: int, samples: int) -> float:
    p_hat = max_count / samples
    p_u = min(1.0, p_hat + MCV_Z * math.sqrt(p_hat * (1.0 - p_hat) / (samples - 1)))
    return max(0.0, -math.log2(p_u))


def mcv_min_entropy(stream: npt.ArrayLike) -> float:
    """Return the Most Common Value min-entropy estimate (SP 800-90B §6.3.1), bits per sample.

    p_hat = max count / L; p_u = min(1, p_hat + 2.576 sqrt(p_hat (1 - p_hat) / (L - 1)));
    H = -log2(p_u).
    """
    samples = np.asarray(stream).ravel()
    if samples.size < 2:
        raise ValueError("the MCV estimate needs at least 2 samples")
    if samples.dtype.kind in "bu" and samples.dtype.itemsize == 1:
        counts = np.bincount(samples.view(np.uint8))
    else:
        _, counts = np.unique(samples, return_counts=True)
    return _mcv(int(counts.max()), samples.size)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The verdict on one harvest, per stream (column).

    ``failures`` lists (test, stream) pairs, test one of ``startup``,
    ``rct``, ``apt``, ``bias``. ``credit_per_stream`` is, per stream, the
    assessed credit given to ``check`` (bits per bit) when the harvest
    passed and is creditable, else 0.0; ``credited_bits`` is samples times
    their sum. ``state`` is the monitor's state after this harvest (one of
    :data:`STATES`); when it turned ``persistent`` with this harvest,
    ``quarantine`` lists the harvest ids whose blocks must not be served.
    """

    passed: bool
    failures: list[tuple[str, int]]
    min_entropy: list[float]
    ones_fraction: list[float]
    credit_per_stream: list[float]
    credited_bits: float
    startup: bool = False
    state: str = "ok"
    quarantine: tuple[str, ...] = ()


class HealthMonitor:
    """Continuous SP 800-90B health testing of one source, harvest after harvest.

    The RCT run and the APT's unfinished window carry over from one
    accepted harvest to the next (§4.4: the tests are continuous). A failed
    harvest is dropped, so its samples are discarded and the carried state
    restarts with the next harvest. Until a harvest of at least
    ``startup_samples`` samples per stream has passed (the start-up test,
    §4.3), ``ready`` is False and shorter harvests fail as ``startup``; a
    change of width restarts that. Thread-safe.
    """

    def __init__(
        self,
        *,
        window: int = APT_WINDOW,
        alpha_exp: int = ALPHA_EXP,
        startup_samples: int = STARTUP_SAMPLES,
        persistent_after: int = PERSISTENT_AFTER,
    ) -> None:
        if window < 1 or alpha_exp < 1 or startup_samples < 1 or persistent_after < 1:
            raise ValueError(
                "window, alpha_exp, startup_samples and persistent_after must be positive"
            )
        self._window = window
        self._alpha_exp = alpha_exp
        self._startup_samples = startup_samples
        self._persistent_after = persistent_after
        self._failed_in_row = 0
        self._persistent: tuple[str, int] | None = None
        self._unconfirmed: list[str] = []
        self._lock = threading.Lock()
        self._checked = 0
        self._dropped = 0
        self._failures: Counter[str] = Counter()
        self._cutoffs: dict[str, float] | None = None
        self._restart(0)

    def _restart(self, width: int) -> None:
        self._width = width
        self._ready = False
        self._forget_carry()
        self._accepted_samples = 0
        self._accepted_ones = np.zeros(width, dtype=np.int64)
        self._last_ones_fraction: list[float] = []
        self._last_min_entropy: list[float] = []

    def _forget_carry(self) -> None:
        self._rct: list[tuple[int, int]] = [(0, 0)] * self._width
        self._apt: list[tuple[int, int, int]] = [(0, 0, 0)] * self._width

    @property
    def dropped(self) -> int:
        """Harvests that failed a test (the caller drops them)."""
        return self._dropped

    @property
    def ready(self) -> bool:
        """True once the start-up test has passed (and no persistent failure since)."""
        with self._lock:
            return self._ready and self._persistent is None

    @property
    def state(self) -> str:
        """One of :data:`STATES`."""
        with self._lock:
            return self._state_locked()

    @property
    def persistent_failure(self) -> tuple[str, int] | None:
        """The (test, stream) whose failure stopped the source, or None."""
        with self._lock:
            return self._persistent

    def _state_locked(self) -> str:
        if self._persistent is not None:
            return "persistent"
        if not self._ready:
            return "startup"
        return "intermittent" if self._failed_in_row else "ok"

    def record_failure(self, test: str, stream: int = -1) -> tuple[str, tuple[str, ...]]:
        """Count a failure found outside :meth:`check` (e.g. ``repeat``: a device gave
        a harvest it gave before) like a failed harvest; return the state and, when
        it turned persistent, the harvest ids to quarantine."""
        with self._lock:
            self._dropped += 1
            self._failures[test] += 1
            self._forget_carry()
            self._failed_in_row += 1
            quarantine: tuple[str, ...] = ()
            if self._persistent is None and self._failed_in_row >= self._persistent_after:
                self._persistent = (test, stream)
                self._ready = False
                quarantine = tuple(self._unconfirmed)
                self._unconfirmed = []
            return self._state_locked(), quarantine

    def fail_persistently(self, test: str, stream: int) -> None:
        """Enter the persistent failure state (e.g. as recorded by another process)."""
        with self._lock:
            self._persistent = (test, stream)
            self._ready = False
            self._unconfirmed.clear()
            self._forget_carry()

    def reset(self) -> None:
        """Leave a persistent failure: the source must pass a new start-up test (§4.3)."""
        with self._lock:
            self._persistent = None
            self._failed_in_row = 0
            self._unconfirmed.clear()
            self._ready = False
            self._forget_carry()

    def check(
        self,
        harvest: Harvest,
        *,
        credit: Sequence[float] | None = None,
        h: float | None = None,
    ) -> HealthReport:
        """Test a harvest and return the verdict; a failure is counted, never raised.

        ``credit`` is the assessed credit per stream (bits per bit), None
        for none; ``h`` the min-entropy per bit the cutoffs assume (§4.4),
        by default the source's claim ``harvest.assessed_entropy``. In the
        persistent failure state every harvest fails until :meth:`reset`.
        """
        columns = np.ascontiguousarray(harvest.bits().T)
        samples, width = harvest.samples, harvest.width
        if h is None:
            h = harvest.assessed_entropy
        if credit is not None and len(credit) != width:
            raise ValueError("need one credit per stream")
        rct_c = rct_cutoff(h, self._alpha_exp)
        apt_c = apt_cutoff(h, self._window, self._alpha_exp)
        bias_c = bias_cutoff(samples, h, self._alpha_exp)
        ones = columns.sum(axis=1, dtype=np.int64)
        commoner = np.maximum(ones, samples - ones)
        min_entropy = [_mcv(int(c), samples) if samples >= 2 else 0.0 for c in commoner]
        ones_fraction = [int(k) / samples if samples else 0.0 for k in ones]

        with self._lock:
            if self._persistent is not None:
                return HealthReport(
                    passed=False,
                    failures=[self._persistent],
                    min_entropy=min_entropy,
                    ones_fraction=ones_fraction,
                    credit_per_stream=[0.0] * width,
                    credited_bits=0.0,
                    state="persistent",
                )
            if width != self._width:
                self._restart(width)
            startup = not self._ready
            failures: list[tuple[str, int]] = []
            if startup and samples < self._startup_samples:
                failures.extend(("startup", i) for i in range(width))
            rct_out: list[tuple[int, int]] = []
            apt_out: list[tuple[int, int, int]] = []
            for i, column in enumerate(columns):
                rct = repetition_count_test(column, rct_c, run_in=self._rct[i])
                apt = adaptive_proportion_test(column, apt_c, self._window, self._apt[i])
                rct_out.append(rct.run)
                apt_out.append(apt.window)
                failures.extend(
                    (name, i)
                    for name, failed in (
                        ("rct", rct.failed),
                        ("apt", apt.failed),
                        ("bias", is_biased(column, bias_c)),
                    )
                    if failed
                )
            passed = not failures

            self._checked += 1
            self._cutoffs = {
                "assessed_entropy": h,
                "rct": rct_c,
                "apt": apt_c,
                "apt_window": self._window,
                "bias": bias_c,
                "bias_samples": samples,
            }
            self._last_ones_fraction = ones_fraction
            self._last_min_entropy = min_entropy
            quarantine: tuple[str, ...] = ()
            if passed:
                self._rct, self._apt = rct_out, apt_out
                self._ready = True
                self._accepted_samples += samples
                self._accepted_ones += ones
                if self._failed_in_row:  # tested afresh after a failure: confirms nothing
                    self._unconfirmed = self._unconfirmed[-MAX_UNCONFIRMED + 1 :]
                    self._unconfirmed.append(harvest.provenance.harvest_id)
                else:
                    self._unconfirmed = [harvest.provenance.harvest_id]
                self._failed_in_row = 0
            else:
                self._dropped += 1
                self._failures.update(name for name, _ in failures)
                self._forget_carry()
                self._failed_in_row += 1
                if self._failed_in_row >= self._persistent_after:
                    self._persistent = failures[0]
                    self._ready = False
                    quarantine = tuple(self._unconfirmed)
                    self._unconfirmed = []
            state = self._state_locked()

        if passed and harvest.creditable and credit is not None:
            credited = [max(0.0, min(1.0, float(c))) for c in credit]
        else:
            credited = [0.0] * width
        return HealthReport(
            passed=passed,
            failures=failures,
            min_entropy=min_entropy,
            ones_fraction=ones_fraction,
            credit_per_stream=credited,
            credited_bits=samples * math.fsum(credited),
            startup=startup,
            state=state,
            quarantine=quarantine,
        )

    def assess(self, harvest: Harvest) -> HealthReport:
        """Test a harvest; raise :class:`HealthTestFailure` if it fails (fail loud)."""
        report = self.check(harvest)
        if not report.passed:
            test, stream = report.failures[0]
            more = len(report.failures) - 1
            raise HealthTestFailure(
                f"health test {test!r} failed on stream {stream} of a "
                f"{harvest.provenance.source!r} harvest"
                + (f" ({more} more failures)" if more else "")
            )
        return report

    def snapshot(self) -> dict[str, Any]:
        """Return plain, JSON-ready counters and statistics (no raw bits) for status."""
        with self._lock:
            accepted = self._accepted_samples
            return {
                "ready": self._ready and self._persistent is None,
                "state": self._state_locked(),
                "failed_in_row": self._failed_in_row,
                "persistent_after": self._persistent_after,
                "persistent_failure": None
                if self._persistent is None
                else {"test": self._persistent[0], "stream": self._persistent[1]},
                "harvests_checked": self._checked,
                "harvests_dropped": self._dropped,
                "failures": {name: self._failures.get(name, 0) for name in TESTS},
                "streams": self._width,
                "samples_accepted": accepted,
                "ones_fraction": [
                    int(k) / accepted if accepted else None for k in self._accepted_ones
                ],
                "last_ones_fraction": list(self._last_ones_fraction),
                "last_min_entropy": list(self._last_min_entropy),
                "cutoffs": None if self._cutoffs is None else dict(self._cutoffs),
            }
