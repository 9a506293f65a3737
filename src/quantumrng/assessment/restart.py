"""SP 800-90B restart tests (§3.1.4): the sanity check and the validation test.

The data is 1000 restarts of the noise source, 1000 samples after each: a
1000 x 1000 matrix whose row i is restart i (§3.1.4.1; NIST's ``ea_restart``
reads it row after row from a file).

- Sanity check (§3.1.4.3): in no row and no column may one value occur
  more than X_cutoff times. ``ea_restart`` simulates X_cutoff, the
  1 - alpha quantile (alpha = 1 - 0.99^(1/2000)) of the largest count
  among 1000 draws from the worst distribution of min-entropy H_I (as many
  values of probability 2^-H_I as fit, plus one holding the rest); this
  module computes that quantile exactly instead (see :func:`restart_cutoff`).
- Validation test (§3.1.4.2): H_r and H_c, the entropy estimates of the row
  and column datasets, must both be at least H_I / 2. By default they are
  the most common value estimate (§6.3.1), as for a source on the IID track
  (``ea_restart -i``); a non-IID source passes its own estimator.

The validated entropy is min(H_r, H_c, H_I).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quantumrng.assessment._checks import check_bits_per_symbol, check_sample_values
from quantumrng.assessment.iid import mcv_estimate

__all__ = [
    "RESTARTS",
    "RESTART_ALPHA",
    "SAMPLES_PER_RESTART",
    "Estimator",
    "RestartResult",
    "most_common_value",
    "restart_cutoff",
    "restart_tests",
]

RESTARTS = 1000  # rows, §3.1.4.1
SAMPLES_PER_RESTART = 1000  # columns, §3.1.4.1
#: False-rejection rate of one row or column count in the sanity check, §3.1.4.3.
RESTART_ALPHA = 1.0 - math.exp(math.log(0.99) / (RESTARTS + SAMPLES_PER_RESTART))

#: An entropy estimator: (samples, bits per sample) -> min-entropy per sample.
Estimator = Callable[[npt.NDArray[np.uint8], int], float]


@dataclass(frozen=True)
class RestartResult:
    """The restart tests on one restart matrix (§3.1.4).

    ``max_row_count`` (X_r) and ``max_column_count`` (X_c) are the largest
    count of one value in a row and in a column; the sanity check passes
    when neither exceeds ``cutoff``. ``h_row`` and ``h_column`` (H_r, H_c)
    are capped at ``k`` bits per sample as ``ea_restart`` caps them.
    """

    passed: bool  # sanity check AND validation
    sanity_check: bool  # max(X_r, X_c) <= X_cutoff, §3.1.4.3
    validation: bool  # min(H_r, H_c) >= H_I / 2, §3.1.4.2
    h_row: float
    h_column: float
    h_restart: float  # min(H_r, H_c)
    h_initial: float
    max_row_count: int
    max_column_count: int
    cutoff: int

    @property
    def h_assessed(self) -> float:
        """min(H_r, H_c, H_I): the entropy per sample the restart tests let stand (0 if failed)."""
        return min(self.h_restart, self.h_initial) if self.passed else 0.0


def most_common_value(samples: npt.NDArray[np.uint8], bits_per_symbol: int) -> float:
    """The most common value estimate (§6.3.1) of ``samples``, bits per sample (as ea_restart)."""
    return mcv_estimate(int(np.bincount(samples, minlength=1).max()), int(samples.size))


def restart_tests(
    matrix: npt.ArrayLike,
    bits_per_symbol: int,
    h_initial: float,
    *,
    estimator: Estimator | None = None,
) -> RestartResult:
    """Run the restart sanity check and validation test (§3.1.4) on a 1000 x 1000 matrix.

    Row i holds the 1000 samples taken after restart i. ``h_initial`` is
    H_I, the initial entropy estimate in bits per sample (0 to k).
    ``estimator`` gives H_r and H_c from the row and column datasets
    (default: the most common value estimate, the IID track's).
    """
    k = check_bits_per_symbol(bits_per_symbol)
    h_i = float(h_initial)
    if not (0.0 <= h_i <= k):
        raise ValueError(f"H_I must be from 0 to {k} bits per sample, not {h_initial}")
    array = np.asarray(matrix)
    if array.shape != (RESTARTS, SAMPLES_PER_RESTART):
        raise ValueError(
            f"restart data must be {RESTARTS} restarts x {SAMPLES_PER_RESTART} samples, "
            f"not {' x '.join(map(str, array.shape)) or 'a scalar'}"
        )
    rows = check_sample_values(array, k)
    columns = np.ascontiguousarray(rows.T)

    x_r = _max_count(rows)
    x_c = _max_count(columns)
    cutoff = restart_cutoff(h_i)
    estimate = estimator or most_common_value
    h_r = min(float(k), float(estimate(rows.ravel(), k)))
    h_c = min(float(k), float(estimate(columns.ravel(), k)))
    sanity = max(x_r, x_c) <= cutoff
    validation = not min(h_r, h_c) < h_i / 2.0
    return RestartResult(
        passed=sanity and validation,
        sanity_check=sanity,
        validation=validation,
        h_row=h_r,
        h_column=h_c,
        h_restart=min(h_r, h_c),
        h_initial=h_i,
        max_row_count=x_r,
        max_column_count=x_c,
        cutoff=cutoff,
    )


def _max_count(lines: npt.NDArray[np.uint8]) -> int:
    """The largest number of times one value occurs in one row of ``lines``."""
    offsets = np.arange(lines.shape[0], dtype=np.int64)[:, None] * 256
    counts = np.bincount((lines + offsets).ravel(), minlength=lines.shape[0] * 256)
    return int(counts.max())


@functools.lru_cache(maxsize=64)
def restart_cutoff(h_initial: float, samples: int = SAMPLES_PER_RESTART) -> int:
    """X_cutoff of the sanity check for H_I = ``h_initial`` (§3.1.4.3).

    The smallest x with P[max count <= x] >= 1 - alpha, where the counts are
    those of ``samples`` draws from ea_restart's worst case for H_I: floor(1/p)
    values of probability p = 2^-H_I and, if 1/p is not whole, one more with
    the rest. ea_restart estimates this quantile from 5,000,000 simulated
    rows; here it is computed: by Poissonisation, P[all counts <= x] is
    P[S = n, all <= x] / P[S = n] for independent Poisson counts of means n p_j
    and S their sum, and the numerator is the degree-n coefficient of the
    product of the truncated Poisson generating functions.
    """
    if not (h_initial >= 0.0 and math.isfinite(h_initial)):
        raise ValueError("H_I must be a non-negative number")
    p = 2.0**-h_initial
    likely = math.floor(1.0 / p)
    rest = 1.0 - likely * p if math.ceil(1.0 / p) > likely else 0.0
    target = 1.0 - RESTART_ALPHA

    def cdf(x: int) -> float:
        return _all_at_most(x, samples, p, likely, rest)

    low, high = -1, samples  # cdf(-1) = 0 < target <= cdf(samples) = 1
    while high - low > 1:
        mid = (low + high) // 2
        if cdf(mid) >= target:
            high = mid
        else:
            low = mid
    return high


def _poisson(mean: float, top: int) -> npt.NDArray[np.float64]:
    """Poisson(mean) probabilities of 0..top."""
    i = np.arange(top + 1, dtype=np.float64)
    if mean == 0.0:
        out = np.zeros(top + 1)
        out[0] = 1.0
        return out
    log_factorial = np.array([math.lgamma(v + 1.0) for v in range(top + 1)])
    pmf: npt.NDArray[np.float64] = np.exp(i * math.log(mean) - mean - log_factorial)
    return pmf


def _all_at_most(x: int, n: int, p: float, likely: int, rest: float) -> float:
    """P[no count exceeds x] for n draws: ``likely`` values of probability p, one of ``rest``."""
    cell = _poisson(n * p, min(x, n))
    power = np.zeros(n + 1)
    power[0] = 1.0
    base = np.zeros(n + 1)
    base[: cell.size] = cell
    e = likely
    while e:
        if e & 1:
            power = np.convolve(power, base)[: n + 1]
        e >>= 1
        if e:
            base = np.convolve(base, base)[: n + 1]
    if rest > 0.0:
        power = np.convolve(power, _poisson(n * rest, min(x, n)))[: n + 1]
    total = _poisson(float(n), n)[n]  # P[S = n], S ~ Poisson(n)
    return float(min(1.0, power[n] / total))
