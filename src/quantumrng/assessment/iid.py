"""SP 800-90B IID tests: the permutation tests (§5.1), the chi-square tests and the LRS test (§5.2).

A source may take the IID track (its min-entropy is the most common value
estimate, §6.3.1) only when its samples pass all of them (§5). Each test
follows NIST's reference tool ``ea_iid`` (SP800-90B_EntropyAssessment
1.1.7) so that statistics and verdicts agree with it:

- Samples are read as the tool reads a file: one per element, ``k`` bits
  wide. Values that do not occur are skipped by "translating" the
  samples to 0..A-1 (A the number of distinct values); the tests below run
  on the translated samples except where noted.
- Data with two distinct values (A = 2) is "binary" (§5.1): the
  directional-run, periodicity and covariance statistics run on the counts
  of ones per 8 samples (Conversion I), the collision statistics on 8-sample
  bytes (Conversion II), the median is 0.5.
- The excursion and compression statistics run on the samples as given, so
  does the covariance statistic for non-binary data. The compression
  statistic is the bzip2 (level 5) length of the samples written in
  decimal, separated by spaces.
- The permutation loop runs at most 10,000 shuffles; a statistic stops
  once more than 5 shuffles have ranked at or above it and more than 5 at
  or below it (it passes), and fails if it never gets there.
- The chi-square tests merge expected counts below 5 in increasing order
  of expectation, as the tool does; they fail at p < 0.001. The LRS test
  fails when a repeat as long as the longest one is less likely than 1/1000.

The shuffles come from a numpy Generator (Fisher-Yates, as ea_iid), so
counts differ from run to run and from NIST's; the statistics on the
original samples, and the verdicts short of chance, do not. ea_iid is
built with ``-march=native`` and GCC contracts ``a * b + c`` to a fused
multiply-add on such machines; the excursion statistic and the MCV bound
are computed the same way here, so they agree to the last bit with a build
on any x86-64 machine since 2013 (Haswell). Statistics are computed in
compiled loops (numba) and the shuffles are scored on a few threads; for a
given Generator state the outcome does not depend on the thread count.
"""

from __future__ import annotations

import bz2
import math
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

import numba
import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba.extending import intrinsic

from quantumrng.assessment._checks import check_samples
from quantumrng.assessment.estimators import longest_repeat

__all__ = [
    "MIN_TEST_SAMPLES",
    "PERMUTATIONS",
    "PERMUTATION_TESTS",
    "ChiSquareOutcome",
    "IidResult",
    "LrsOutcome",
    "PermutationOutcome",
    "chi_square_details",
    "chi_square_tests",
    "iid_assessment",
    "lrs_details",
    "lrs_test",
    "mcv_estimate",
    "most_common_value",
    "permutation_tests",
]

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: The §5.1 statistics, named and ordered as NIST's ea_iid names and orders them.
PERMUTATION_TESTS: tuple[str, ...] = (
    "excursion",
    "numDirectionalRuns",
    "lenDirectionalRuns",
    "numIncreasesDecreases",
    "numRunsMedian",
    "lenRunsMedian",
    "avgCollision",
    "maxCollision",
    "periodicity(1)",
    "periodicity(2)",
    "periodicity(8)",
    "periodicity(16)",
    "periodicity(32)",
    "covariance(1)",
    "covariance(2)",
    "covariance(8)",
    "covariance(16)",
    "covariance(32)",
    "compression",
)
PERMUTATIONS = 10_000  # shuffles in the permutation tests, §5.1
EARLY_STOP = 5  # a statistic is decided once more than 5 shuffles fall on each side, §5.1
LAGS = (1, 2, 8, 16, 32)  # periodicity and covariance lags, §5.1.9-5.1.10
CHI_SQUARE_ALPHA = 0.001  # §5.2
LRS_ALPHA = 0.001  # §5.2.5
MIN_EXPECTED = 5.0  # smallest expected count of a chi-square bin, §5.2.1-5.2.2
BZ2_LEVEL = 5  # bzip2 block size (in 100k) ea_iid compresses with, §5.1.11
ZALPHA = 2.5758293035489008  # 99% upper bound, §6.3.1 (ea_iid's constant)
#: Fewest samples the tests run on. §3.1.1 asks for 1,000,000; below 1,000
#: some statistics are undefined (ea_iid asserts).
MIN_TEST_SAMPLES = 1_000
_COMPRESSION = len(PERMUTATION_TESTS) - 1
_NUMERIC = _COMPRESSION  # statistics 0..17 come from one compiled pass


@dataclass(frozen=True)
class PermutationOutcome:
    """One §5.1 statistic: its value on the samples and how the shuffles ranked against it.

    ``greater``, ``equal`` and ``less`` count shuffles whose statistic was
    above, equal to or below ``value`` (NIST's C[i][0], C[i][1], C[i][2]);
    the test passes when greater + equal > 5 and equal + less > 5.
    """

    name: str
    value: float
    greater: int
    equal: int
    less: int
    passed: bool


@dataclass(frozen=True)
class ChiSquareOutcome:
    """A chi-square test (§5.2.1-5.2.4): statistic, degrees of freedom, p-value, verdict."""

    statistic: float
    df: int
    p_value: float
    passed: bool


@dataclass(frozen=True)
class LrsOutcome:
    """The LRS test (§5.2.5).

    ``length`` is W, the longest repeated substring; ``p_col`` the collision
    probability of one sample; ``probability`` Pr(X >= 1), the chance of a
    repeat of length W among independent samples. Passes when it is >= 1/1000.
    """

    length: int
    p_col: float
    probability: float
    passed: bool


@dataclass(frozen=True)
class IidResult:
    """All IID tests on one sequence (§5) and the MCV estimates the IID track credits."""

    passed: bool  # permutation AND chi-square AND LRS
    permutation: tuple[PermutationOutcome, ...]
    chi_square_independence: bool
    chi_square_goodness_of_fit: bool
    lrs: bool
    h_original: float  # MCV estimate on the samples, §6.3.1
    h_bitstring: float  # MCV on the bitstring when k > 1 (== h_original when k == 1)


# --------------------------------------------------------------------------------------
# The samples as ea_iid reads them


@dataclass(frozen=True)
class _Samples:
    raw: U8  # the samples as given
    symbols: U8  # translated to 0..alphabet-1 (ea_iid's "symbols")
    values: U8  # symbols -> raw
    bits: int
    alphabet: int
    translated: bool
    mean: float  # mean of the raw samples
    median: float  # median of the translated samples; 0.5 for binary data

    @property
    def binary(self) -> bool:
        return self.alphabet == 2

    @property
    def n(self) -> int:
        return int(self.raw.size)


def _samples(symbols: npt.ArrayLike, bits_per_symbol: int) -> _Samples:
    """Check ``symbols`` and translate them as ea_iid's read_file does, or raise ValueError."""
    raw, k = check_samples(
        symbols,
        bits_per_symbol,
        minimum=MIN_TEST_SAMPLES,
        use="test",
        need="the IID tests need",
    )
    counts = np.bincount(raw, minlength=1 << k)
    values = np.flatnonzero(counts).astype(np.uint8)
    alphabet = int(values.size)
    if alphabet < 2:
        raise ValueError(
            f"every sample is {int(values[0])}: one value carries no entropy "
            "(NIST's tools refuse such data)"
        )
    translated = alphabet < int(raw.max()) + 1
    if translated:
        table = np.zeros(256, dtype=np.uint8)
        table[values] = np.arange(alphabet, dtype=np.uint8)
        mapped = table[raw]
    else:
        mapped = raw
    n = int(raw.size)
    mean = int(np.dot(counts, np.arange(counts.size))) / n
    if alphabet == 2:
        median = 0.5  # §5.1.5-5.1.6
    else:
        cumulative = np.cumsum(counts[values])  # counts of the translated symbols
        half = n // 2

        def order_statistic(i: int) -> int:
            return int(np.searchsorted(cumulative, i, side="right"))

        if n % 2:
            median = float(order_statistic(half))
        else:
            median = (order_statistic(half) + order_statistic(half - 1)) / 2.0
    return _Samples(raw, mapped, values, k, alphabet, translated, mean, median)


# --------------------------------------------------------------------------------------
# Most common value (§6.3.1)


def _fma(a: float, b: float, c: float) -> float:
    """a * b + c rounded once (as ea_iid's FMA-contracted arithmetic computes it)."""
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def mcv_estimate(mode_count: int, samples: int) -> float:
    """MCV min-entropy (§6.3.1) when the commonest value occurs ``mode_count`` times in ``samples``.

    -log2 of the 99% upper bound p_u = p + 2.576 sqrt(p (1 - p) / (n - 1)),
    the sum taken as one fused multiply-add as in ea_iid's build.
    """
    p = mode_count / samples
    upper = min(1.0, _fma(ZALPHA, math.sqrt(p * (1.0 - p) / (samples - 1.0)), p))
    return -math.log2(upper)


def most_common_value(symbols: npt.ArrayLike, bits_per_symbol: int) -> tuple[float, float]:
    """Return (H_original, H_bitstring), the MCV estimates of §6.3.1 (bits per sample, per bit).

    H_bitstring is taken on the samples' ``k``-bit big-endian bitstring
    (§3.1.3); for k = 1 it equals H_original. (ea_iid assesses the
    bitstring only when more than two values occur; this does whenever
    k > 1, which can only lower min(H_original, k H_bitstring).)
    """
    data = _samples(symbols, bits_per_symbol)
    return _mcv_pair(data)


def _mcv_pair(data: _Samples) -> tuple[float, float]:
    counts = np.bincount(data.raw, minlength=256)
    h_original = mcv_estimate(int(counts.max()), data.n)
    if data.bits == 1:
        return h_original, h_original
    ones = int(np.dot(counts, _POPCOUNT))
    blen = data.n * data.bits
    return h_original, mcv_estimate(max(ones, blen - ones), blen)


_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.int64)


# --------------------------------------------------------------------------------------
# Compiled kernels (numba). Each is a plain function, compiled once and cached.


def _njit(function: Callable[..., object]) -> object:
    return numba.njit(cache=True, nogil=True)(function)


def _fused_intrinsic(context: Any, a: Any, b: Any, c: Any) -> tuple[Any, Any]:
    """a * b + c with one rounding in compiled code (LLVM's fma intrinsic)."""
    signature = numba.float64(numba.float64, numba.float64, numba.float64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        double = ir.DoubleType()
        function = builder.module.declare_intrinsic(
            "llvm.fma", [double], ir.FunctionType(double, [double] * 3)
        )
        return builder.call(function, args)

    return signature, codegen


_fused = cast(Callable[[float, float, float], float], intrinsic(_fused_intrinsic))


def _shuffle_py(data: U8, words: npt.NDArray[np.uint32], top: int) -> int:
    """Fisher-Yates from index ``top`` down, j uniform in [0, i] by Lemire's method.

    Consumes 32-bit ``words``; returns the index still to do (0 when done)
    if they run out.
    """
    w = 0
    nwords = words.size
    i = top
    while i > 0:
        s = np.uint64(i + 1)
        if w >= nwords:
            return i
        m = np.uint64(words[w]) * s
        w += 1
        low = m & np.uint64(0xFFFFFFFF)
        if low < s:
            t = (np.uint64(0x100000000) - s) % s
            while low < t:
                if w >= nwords:
                    return i
                m = np.uint64(words[w]) * s
                w += 1
                low = m & np.uint64(0xFFFFFFFF)
        j = np.int64(m >> np.uint64(32))
        tmp = data[i]
        data[i] = data[j]
        data[j] = tmp
        i -= 1
    return 0


def _runs_py(seq: U8, median: float, kind: int, out: F64) -> None:
    """Directional runs (kind 0, §5.1.2-5.1.4) or runs about the median (kind 1, §5.1.5-5.1.6)."""
    n = seq.size
    m = n - 1 if kind == 0 else n
    if m <= 0:
        out[0] = 0.0
        out[1] = 0.0
        out[2] = 0.0
        return
    runs = 1
    longest = 0
    run = 1
    ups = 0
    prev = 0
    for i in range(m):
        below = seq[i] > seq[i + 1] if kind == 0 else seq[i] < median
        cur = -1 if below else 1
        if cur == 1:
            ups += 1
        if i > 0:
            if cur == prev:
                run += 1
            else:
                runs += 1
                if run > longest:
                    longest = run
                run = 1
        prev = cur
    if run > longest:
        longest = run
    out[0] = runs
    out[1] = longest
    out[2] = max(ups, m - ups)


def _statistics_py(
    symbols: U8,
    raw: U8,
    active: npt.NDArray[np.bool_],
    binary: bool,
    alphabet: int,
    mean: float,
    median: float,
    out: F64,
) -> None:
    """Statistics 0..17 of PERMUTATION_TESTS (all but compression) for the active ones."""
    n = symbols.size
    if active[0]:  # excursion, §5.1.1, on the raw samples
        total = 0.0
        best = 0.0
        for i in range(n):
            total += raw[i]
            d = abs(_fused(-float(i + 1), mean, total))  # ea_iid's build contracts to an FMA
            if d > best:
                best = d
        out[0] = best

    need_c1 = False
    for t in range(1, 4):
        need_c1 = need_c1 or active[t]
    for t in range(8, 18):
        need_c1 = need_c1 or active[t]
    nb = (n + 7) // 8
    ones = np.zeros(nb if binary and need_c1 else 0, dtype=np.uint8)  # Conversion I
    if binary and need_c1:
        for i in range(n):
            ones[i // 8] += symbols[i]
    seq = ones if binary else symbols

    tmp = np.zeros(3, dtype=np.float64)
    if active[1] or active[2] or active[3]:  # §5.1.2-5.1.4
        _runs(seq, 0.0, 0, tmp)
        out[1] = tmp[0]
        out[2] = tmp[1]
        out[3] = tmp[2]
    if active[4] or active[5]:  # §5.1.5-5.1.6, never converted
        _runs(symbols, median, 1, tmp)
        out[4] = tmp[0]
        out[5] = tmp[1]

    if active[6] or active[7]:  # §5.1.7-5.1.8
        if binary:  # Conversion II: 8 samples to a byte, first sample high
            col = np.zeros(nb, dtype=np.uint8)
            for i in range(n):
                col[i // 8] += symbols[i] << (7 - i % 8)
            size = 256
        else:
            col = symbols
            size = alphabet
        seen = np.zeros(size, dtype=np.int64)
        stamp = 1
        start = 0
        count = 0
        total_len = 0
        longest = 0
        for pos in range(col.size):
            v = col[pos]
            if seen[v] == stamp:
                length = pos - start + 1
                total_len += length
                count += 1
                if length > longest:
                    longest = length
                stamp += 1
                start = pos + 1
            else:
                seen[v] = stamp
        out[6] = total_len / count if count > 0 else np.nan
        out[7] = longest

    for t in range(5):  # periodicity, §5.1.9
        if active[8 + t]:
            p = LAGS[t]
            hits = 0
            for i in range(seq.size - p):
                if seq[i] == seq[i + p]:
                    hits += 1
            out[8 + t] = hits
    cov = ones if binary else raw
    for t in range(5):  # covariance, §5.1.10 (raw samples unless binary)
        if active[13 + t]:
            p = LAGS[t]
            acc = np.int64(0)
            for i in range(cov.size - p):
                acc += np.int64(cov[i]) * np.int64(cov[i + p])
            out[13 + t] = acc


def _score_py(stats: F64, original: F64, active: npt.NDArray[np.bool_], counts: I64) -> None:
    """Count one shuffle's statistics against the original's; retire those decided (§5.1)."""
    for t in range(active.size):
        if active[t]:
            if stats[t] > original[t]:
                counts[t, 0] += 1
            elif stats[t] == original[t]:
                counts[t, 1] += 1
            else:
                counts[t, 2] += 1
            if (
                counts[t, 0] + counts[t, 1] > EARLY_STOP
                and counts[t, 1] + counts[t, 2] > EARLY_STOP
            ):
                active[t] = False


def _text_py(raw: U8, out: U8) -> int:
    """Write the samples as "%u " text into ``out``; return the length without the last space."""
    at = 0
    for i in range(raw.size):
        v = raw[i]
        if v >= 100:
            out[at] = 48 + v // 100
            at += 1
        if v >= 10:
            out[at] = 48 + (v // 10) % 10
            at += 1
        out[at] = 48 + v % 10
        out[at + 1] = 32
        at += 2
    return at - 1 if at > 0 else 0


def _proportions_py(counts: I64, n: int) -> F64:
    """ea_iid's proportions: 1/n added once per occurrence (not count/n, which may round apart)."""
    p = np.zeros(counts.size, dtype=np.float64)
    step = 1.0 / n
    for s in range(counts.size):
        acc = 0.0
        for _ in range(counts[s]):
            acc += step
        p[s] = acc
    return p


_shuffle = cast(Callable[[U8, npt.NDArray[np.uint32], int], int], _njit(_shuffle_py))
_runs = cast(Callable[[U8, float, int, F64], None], _njit(_runs_py))
_statistics = cast(
    Callable[[U8, U8, npt.NDArray[np.bool_], bool, int, float, float, F64], None],
    _njit(_statistics_py),
)
_score = cast(Callable[[F64, F64, npt.NDArray[np.bool_], I64], None], _njit(_score_py))
_text = cast(Callable[[U8, U8], int], _njit(_text_py))
_proportions = cast(Callable[[I64, int], F64], _njit(_proportions_py))


# --------------------------------------------------------------------------------------
# Permutation tests (§5.1)


def _evaluate(data: _Samples, symbols: U8, active: npt.NDArray[np.bool_]) -> F64:
    """The active §5.1 statistics of one arrangement of the (translated) samples; NaN elsewhere."""
    out = np.full(len(PERMUTATION_TESTS), np.nan)
    raw = data.values[symbols] if data.translated else symbols
    if active[:_NUMERIC].any():
        _statistics(symbols, raw, active, data.binary, data.alphabet, data.mean, data.median, out)
    if active[_COMPRESSION]:
        out[_COMPRESSION] = _compression(raw)
    return out


def _compression(raw: U8) -> float:
    """§5.1.11: the bzip2 length of the samples in decimal, space-separated (as ea_iid)."""
    text = np.empty(4 * raw.size, dtype=np.uint8)
    length = _text(raw, text)
    return float(len(bz2.compress(text[:length].data, BZ2_LEVEL)))


def _workers() -> int:
    """Threads for the permutation tests: the CPUs this process may use, at most 4."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cpus or 1))


def permutation_tests(
    symbols: npt.ArrayLike,
    bits_per_symbol: int,
    *,
    permutations: int = PERMUTATIONS,
    rng: np.random.Generator | None = None,
) -> tuple[PermutationOutcome, ...]:
    """Run the §5.1 permutation tests; return one outcome per statistic of PERMUTATION_TESTS.

    Each shuffle is scored only on the statistics still undecided; the loop
    ends when all are decided or after ``permutations`` shuffles. ``rng``
    (default: a fresh Generator seeded by the OS) drives the shuffles; for a
    given ``rng`` state the result is the same whatever the thread count.
    """
    data = _samples(symbols, bits_per_symbol)
    _check_permutations(permutations)
    return _permutation_tests(data, permutations, rng or np.random.default_rng())


def _check_permutations(permutations: int) -> None:
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
        raise ValueError(f"permutations must be a positive integer, not {permutations!r}")


def _permutation_tests(
    data: _Samples, permutations: int, rng: np.random.Generator
) -> tuple[PermutationOutcome, ...]:
    tests = len(PERMUTATION_TESTS)
    active = np.ones(tests, dtype=np.bool_)
    original = _evaluate(data, data.symbols, active)
    counts = np.zeros((tests, 3), dtype=np.int64)
    current = data.symbols.copy()

    def shuffled() -> U8:
        """The next shuffle (Fisher-Yates on the previous one, as ea_iid), as a copy."""
        top = current.size - 1
        while top > 0:
            words = rng.bit_generator.random_raw(top // 2 + 64).view(np.uint32)
            top = _shuffle(current, words, top)
        return current.copy()

    workers = _workers()
    # Shuffles are drawn in order and scored in order; workers compute the
    # statistics of the next few ahead, for the statistics undecided when
    # each was drawn (a superset of those undecided when it is scored).
    # Results past the end are dropped, so the outcome is the sequential one.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[F64]] = deque()
        drawn = 0
        while active.any():
            while len(pending) <= workers and drawn < permutations:
                pending.append(pool.submit(_evaluate, data, shuffled(), active.copy()))
                drawn += 1
            if not pending:
                break
            _score(pending.popleft().result(), original, active, counts)
        for future in pending:
            future.cancel()

    outcomes = []
    for i, name in enumerate(PERMUTATION_TESTS):
        greater, equal, less = (int(c) for c in counts[i])
        passed = greater + equal > EARLY_STOP and equal + less > EARLY_STOP
        outcomes.append(PermutationOutcome(name, float(original[i]), greater, equal, less, passed))
    return tuple(outcomes)


# --------------------------------------------------------------------------------------
# Chi-square tests (§5.2.1-5.2.4)


def chi_square_p_value(statistic: float, df: int) -> float:
    """Upper tail of the chi-square distribution, Q(df/2, statistic/2) (1.0 when df is 0)."""
    return _gamma_q(df / 2.0, statistic / 2.0)


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma function Q(a, x): series below a + 1, else Lentz."""
    if x <= 0.0 or a <= 0.0:
        return 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    eps = 1e-16
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(100_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * eps:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return math.exp(log_front) * h


def _bins(expected: F64) -> tuple[I64, F64]:
    """Merge cells into bins of expectation >= 5, as ea_iid does; return (bin per cell, bin sums).

    Cells are taken in increasing expectation (ties by index); a bin closes
    once it holds at least 5, and a short last bin joins the one before.
    """
    order = np.lexsort((np.arange(expected.size), expected))
    bin_of = np.empty(expected.size, dtype=np.int64)
    sums: list[float] = []
    current = 0.0
    for cell in order.tolist():
        if current >= MIN_EXPECTED:
            sums.append(current)
            current = 0.0
        bin_of[cell] = len(sums)
        current += float(expected[cell])
    if sums and current < MIN_EXPECTED:
        bin_of[bin_of == len(sums)] = len(sums) - 1
        sums[-1] += current
    else:
        sums.append(current)
    return bin_of, np.array(sums, dtype=np.float64)


def _pearson(observed: I64, expected: F64) -> float:
    """Sum of (o - e)^2 / e, added left to right as ea_iid does."""
    terms = np.square(observed - expected) / expected
    return float(np.cumsum(terms)[-1]) if terms.size else 0.0


def _independence(data: _Samples) -> tuple[float, int]:
    n, a, s = data.n, data.alphabet, data.symbols
    if data.binary:  # §5.2.3
        ones = int(np.count_nonzero(s))
        p1 = ones / n
        p0 = 1.0 - p1
        low = min(p0, p1)
        m = 11
        while m > 1 and not math.pow(low, m) * (n // m) >= 5:
            m -= 1
        if m < 2:
            return 0.0, 0
        blocks = n // m
        weights = np.left_shift(1, np.arange(m - 1, -1, -1))
        tuples = s[: blocks * m].reshape(blocks, m).astype(np.int64) @ weights
        occurrences = np.bincount(tuples, minlength=1 << m)
        statistic = 0.0
        for i in range(1 << m):
            w = i.bit_count()
            e = math.pow(p1, w) * math.pow(p0, m - w) * blocks
            d = int(occurrences[i]) - e
            statistic += d * d / e
        return statistic, (1 << m) - 2
    p = _proportions(np.bincount(s, minlength=a).astype(np.int64), n)  # §5.2.1
    expected = (np.outer(p, p) * math.floor(n * 0.5)).ravel()
    bin_of, sums = _bins(expected)
    pairs = s[0 : 2 * (n // 2) : 2].astype(np.int64) * a + s[1 : 2 * (n // 2) : 2]
    observed = np.bincount(bin_of[pairs], minlength=sums.size)
    return _pearson(observed, sums), int(sums.size) - a


def _goodness_of_fit(data: _Samples) -> tuple[float, int]:
    n, a, s = data.n, data.alphabet, data.symbols
    sub = n // 10
    if data.binary:  # §5.2.4
        ones = int(np.count_nonzero(s))
        p1 = ones / n
        e0 = (1.0 - p1) * sub
        e1 = p1 * sub
        statistic = 0.0
        for o1 in np.count_nonzero(s[: 10 * sub].reshape(10, sub), axis=1).tolist():
            o0 = sub - o1
            statistic += (o0 - e0) ** 2 / e0 + (o1 - e1) ** 2 / e1
        return statistic, 9
    p = _proportions(np.bincount(s, minlength=a).astype(np.int64), n)  # §5.2.2
    bin_of, sums = _bins(p * math.floor(n / 10.0))
    statistic = 0.0
    for j in range(10):
        observed = np.bincount(bin_of[s[j * sub : (j + 1) * sub]], minlength=sums.size)
        statistic += _pearson(observed, sums)
    return statistic, 9 * (int(sums.size) - 1)


def chi_square_details(
    symbols: npt.ArrayLike, bits_per_symbol: int
) -> tuple[ChiSquareOutcome, ChiSquareOutcome]:
    """Return the chi-square independence and goodness-of-fit outcomes (§5.2.1-5.2.4)."""
    data = _samples(symbols, bits_per_symbol)
    return _chi_square(data)


def _chi_square(data: _Samples) -> tuple[ChiSquareOutcome, ChiSquareOutcome]:
    outcomes = []
    for statistic, df in (_independence(data), _goodness_of_fit(data)):
        p_value = chi_square_p_value(statistic, df)
        outcomes.append(ChiSquareOutcome(statistic, df, p_value, p_value >= CHI_SQUARE_ALPHA))
    return outcomes[0], outcomes[1]


def chi_square_tests(symbols: npt.ArrayLike, bits_per_symbol: int) -> tuple[bool, bool]:
    """Return (independence passed, goodness of fit passed), §5.2.1-5.2.4 at p >= 0.001."""
    independence, fit = chi_square_details(symbols, bits_per_symbol)
    return independence.passed, fit.passed


# --------------------------------------------------------------------------------------
# Longest repeated substring (§5.2.5)


def lrs_details(symbols: npt.ArrayLike, bits_per_symbol: int) -> LrsOutcome:
    """Return the LRS test's W, P_col, Pr(X >= 1) and verdict (§5.2.5), in long double as ea_iid."""
    return _lrs(_samples(symbols, bits_per_symbol))


def _lrs(data: _Samples) -> LrsOutcome:
    n = data.n
    p = _proportions(np.bincount(data.symbols, minlength=data.alphabet).astype(np.int64), n)
    ld = np.longdouble
    p_col = ld(0)
    for value in p.astype(ld):
        p_col += value * value
    if p_col > ld(1) - np.finfo(ld).eps:
        return LrsOutcome(n - 1, float(p_col), 1.0, True)
    w = longest_repeat(data.symbols, data.alphabet)
    pairs = (n - w + 1) * (n - w) // 2  # (n - W + 1) choose 2
    log_no_collision = np.log1p(-np.power(p_col, ld(w)))
    exponent = ld(pairs) * log_no_collision
    probability = ld(1) - np.exp(exponent)
    passed = bool(np.log(ld(repr(1.0 - LRS_ALPHA))) >= exponent)  # logl(0.999L)
    return LrsOutcome(int(w), float(p_col), float(probability), passed)


def lrs_test(symbols: npt.ArrayLike, bits_per_symbol: int) -> bool:
    """Return whether the longest repeat is as likely as IID samples allow (§5.2.5)."""
    return lrs_details(symbols, bits_per_symbol).passed


# --------------------------------------------------------------------------------------
# Everything (§5)


def iid_assessment(
    symbols: npt.ArrayLike,
    bits_per_symbol: int,
    *,
    permutations: int = PERMUTATIONS,
    rng: np.random.Generator | None = None,
) -> IidResult:
    """Run every IID test of §5, with the MCV estimates (§6.3.1) the IID track credits."""
    data = _samples(symbols, bits_per_symbol)
    _check_permutations(permutations)
    independence, fit = _chi_square(data)
    lrs = _lrs(data)
    permutation = _permutation_tests(data, permutations, rng or np.random.default_rng())
    h_original, h_bitstring = _mcv_pair(data)
    passed = all(o.passed for o in permutation) and independence.passed and fit.passed
    return IidResult(
        passed=passed and lrs.passed,
        permutation=permutation,
        chi_square_independence=independence.passed,
        chi_square_goodness_of_fit=fit.passed,
        lrs=lrs.passed,
        h_original=h_original,
        h_bitstring=h_bitstring,
    )
