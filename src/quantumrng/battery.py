"""NIST SP 800-22 Rev. 1a statistical tests on output (issue 13: the dashboard's battery).

Each test is a pure function of a bit array (``numpy`` ``uint8`` of zeros and ones)
returning its p-values; ``run`` applies the whole battery to bytes, skipping a test
(with the reason) below the input size the specification recommends for it (each
section's §2.x.7) or when the data leave it nothing to measure (§2.14, §2.15: fewer
than 500 cycles). P-values come from ``scipy.special`` (``gammaincc``, ``erfc``), as
the specification's ``igamc`` and ``erfc``. The loops of the reference code are
replaced by whole-array operations, so a million bits take well under a second or two.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
from numpy.typing import NDArray
from scipy import special

__all__ = [
    "ALPHA",
    "LINEAR_PI",
    "OVERLAPPING_PI",
    "TESTS",
    "NotApplicable",
    "Test",
    "TestResult",
    "aperiodic_templates",
    "approximate_entropy",
    "binary_matrix_rank",
    "bits_of",
    "block_frequency",
    "cumulative_sums",
    "frequency",
    "linear_complexity",
    "longest_run_of_ones",
    "maurers_universal",
    "non_overlapping_template",
    "overlapping_template",
    "random_excursions",
    "random_excursions_variant",
    "run",
    "runs",
    "serial",
    "spectral",
]

ALPHA = 0.01  # SP 800-22 §4.2.1: the significance level

Bits = NDArray[np.uint8]


@dataclass(frozen=True)
class TestResult:
    """One test of the battery on one sequence: its name (``frequency``, ``runs``, ...),
    the SP 800-22 section (``"2.1"``), its p-values (several for tests with several
    statistics, named by ``labels``), whether it passed, and why it did not run
    (``skipped``, e.g. a sequence shorter than the test's minimum) or None.

    A test with k p-values passes when each is at least ``alpha / k`` (Bonferroni), so
    every test, however many statistics it has, falsely fails good output at most a
    fraction ``alpha`` of the time. A skipped test has no p-values and failed nothing.
    """

    __test__ = False  # not a pytest class, whatever its name

    name: str
    section: str
    p_values: tuple[float, ...]
    passed: bool
    skipped: str | None = None
    labels: tuple[str, ...] = ()
    parameters: str = ""

    @property
    def min_p_value(self) -> float | None:
        """The smallest p-value, or None for a skipped test."""
        return min(self.p_values) if self.p_values else None


class NotApplicable(ValueError):
    """The data give the test nothing to measure (e.g. too few random-walk cycles)."""


def bits_of(data: bytes) -> Bits:
    """The bits of ``data``, most significant bit of each byte first (as ``run`` reads them)."""
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))


def _igamc(a: float, x: float) -> float:
    return float(special.gammaincc(a, x))


def _erfc(x: float) -> float:
    return float(special.erfc(x))


def _chi2(observed: NDArray[Any], expected: NDArray[Any]) -> float:
    return float(np.sum((observed - expected) ** 2 / expected))


# §2.1 ------------------------------------------------------------------------


def frequency(bits: Bits) -> tuple[float]:
    """§2.1 Frequency (monobit): are ones and zeros about equally common?"""
    n = bits.size
    s = 2 * int(np.count_nonzero(bits)) - n
    return (_erfc(abs(s) / math.sqrt(2 * n)),)


# §2.2 ------------------------------------------------------------------------


def block_frequency(bits: Bits, block: int = 128) -> tuple[float]:
    """§2.2 Frequency within a block: is the proportion of ones about 1/2 in every
    ``block``-bit block (chi-square over the N blocks)?"""
    n_blocks = bits.size // block
    ones = bits[: n_blocks * block].reshape(n_blocks, block).sum(axis=1, dtype=np.int64)
    chi2 = 4.0 * block * float(np.sum((ones / block - 0.5) ** 2))
    return (_igamc(n_blocks / 2, chi2 / 2),)


# §2.3 ------------------------------------------------------------------------


def runs(bits: Bits) -> tuple[float]:
    """§2.3 Runs: is the number of runs (maximal blocks of equal bits) as expected?
    P = 0 when the frequency prerequisite fails (|π - 1/2| ≥ 2/√n), as specified."""
    n = bits.size
    pi = np.count_nonzero(bits) / n
    if abs(pi - 0.5) >= 2 / math.sqrt(n):
        return (0.0,)
    v = 1 + int(np.count_nonzero(bits[1:] != bits[:-1]))
    q = pi * (1 - pi)
    return (_erfc(abs(v - 2 * n * q) / (2 * math.sqrt(2 * n) * q)),)


# §2.4 ------------------------------------------------------------------------

#: n at least, block size M, smallest class v0, class probabilities (§2.4.4, §3.4; the
#: reference code's more precise values for M = 128).
_LONGEST_RUN = (
    (750_000, 10_000, 10, (0.0882, 0.2092, 0.2483, 0.1933, 0.1208, 0.0675, 0.0727)),
    (
        6272,
        128,
        4,
        (0.1174035788, 0.242955959, 0.249363483, 0.17517706, 0.102701071, 0.112398847),
    ),
    (128, 8, 1, (0.21484375, 0.3671875, 0.23046875, 0.1875)),
)


def _longest_runs(rows: NDArray[np.uint8]) -> NDArray[np.int32]:
    """The longest run of ones in each row: at each bit, the distance back to the last
    zero (a zero column opens each row), maximised per row."""
    n_rows, width = rows.shape
    padded = np.zeros((n_rows, width + 1), dtype=np.uint8)
    padded[:, 1:] = rows
    flat = padded.ravel()
    index = np.arange(flat.size, dtype=np.int32)
    last_zero: NDArray[np.int32] = np.maximum.accumulate(np.where(flat == 0, index, 0))
    run_here = index - last_zero
    longest: NDArray[np.int32] = run_here.reshape(n_rows, width + 1).max(axis=1)
    return longest


def longest_run_of_ones(bits: Bits) -> tuple[float]:
    """§2.4 Longest run of ones in a block: are the longest runs of ones in M-bit blocks
    distributed as expected (M = 8, 128 or 10^4 by n)?"""
    n = bits.size
    _, block, v0, pis = next(row for row in _LONGEST_RUN if n >= row[0])
    n_blocks = n // block
    longest = _longest_runs(bits[: n_blocks * block].reshape(n_blocks, block))
    classes = np.clip(longest, v0, v0 + len(pis) - 1) - v0
    nu = np.bincount(classes, minlength=len(pis))
    return (_igamc((len(pis) - 1) / 2, _chi2(nu, n_blocks * np.array(pis)) / 2),)


# §2.5 ------------------------------------------------------------------------


def _gf2_ranks(rows: NDArray[np.uint32], width: int) -> NDArray[np.int64]:
    """Ranks over GF(2) of many matrices at once, each given as rows of bit masks."""
    count, height = rows.shape
    rows = rows.copy()
    rank = np.zeros(count, dtype=np.int64)
    used = np.zeros((count, height), dtype=bool)
    idx = np.arange(count)
    for column in range(width):
        has = (rows >> np.uint32(column)) & np.uint32(1) == 1
        candidates = has & ~used
        found = candidates.any(axis=1)
        pivot = candidates.argmax(axis=1)
        pivot_rows = rows[idx, pivot]
        clear = has & found[:, None]
        clear[idx, pivot] = False
        rows = np.where(clear, rows ^ pivot_rows[:, None], rows)
        used[idx[found], pivot[found]] = True
        rank += found
    return rank


def _rank_probability(r: int, m: int, q: int) -> float:
    """The probability that a random m x q matrix over GF(2) has rank r (§3.5)."""
    product = 1.0
    for i in range(r):
        product *= (1 - 2.0 ** (i - q)) * (1 - 2.0 ** (i - m)) / (1 - 2.0 ** (i - r))
    return 2.0 ** (r * (q + m - r) - m * q) * product


def binary_matrix_rank(bits: Bits, rows: int = 32, columns: int = 32) -> tuple[float]:
    """§2.5 Binary matrix rank: are the ranks of disjoint rows x columns matrices (filled
    row by row) full, full - 1 or lower as often as for random matrices?"""
    size = rows * columns
    count = bits.size // size
    matrices = bits[: count * size].reshape(count, rows, columns).astype(np.uint32)
    masks = matrices @ (np.uint32(1) << np.arange(columns, dtype=np.uint32))
    ranks = _gf2_ranks(masks.astype(np.uint32), columns)
    full = min(rows, columns)
    p_full = _rank_probability(full, rows, columns)
    p_less = _rank_probability(full - 1, rows, columns)
    expected = count * np.array([p_full, p_less, 1 - p_full - p_less])
    observed = np.array(
        [np.sum(ranks == full), np.sum(ranks == full - 1), np.sum(ranks < full - 1)]
    )
    return (math.exp(-_chi2(observed, expected) / 2),)


# §2.6 ------------------------------------------------------------------------


def spectral(bits: Bits) -> tuple[float]:
    """§2.6 Discrete Fourier transform: do fewer than 95 % of the first n/2 spectral
    peaks stay under the threshold √(n ln 20) than expected (periodic features)?"""
    n = bits.size
    modulus = np.abs(scipy.fft.rfft(2.0 * bits - 1.0)[: n // 2])
    threshold = math.sqrt(math.log(1 / 0.05) * n)
    n1 = int(np.count_nonzero(modulus < threshold))
    n0 = 0.95 * n / 2
    d = (n1 - n0) / math.sqrt(n * 0.95 * 0.05 / 4)
    return (_erfc(abs(d) / math.sqrt(2)),)


# §2.7, §2.8 ------------------------------------------------------------------


def _windows(bits: Bits, m: int, *, cyclic: bool = False) -> NDArray[np.int32]:
    """The value of every m-bit window (m ≤ 31, first bit most significant); ``cyclic``
    wraps the sequence's first m - 1 bits round to its end (§2.11, §2.12)."""
    n = bits.size
    ext = np.concatenate([bits, bits[: m - 1]]) if cyclic else bits
    count = n if cyclic else n - m + 1
    values = np.zeros(count, dtype=np.int32)
    for k in range(m):
        values <<= 1
        values |= ext[k : k + count]
    return values


def aperiodic_templates(m: int) -> tuple[int, ...]:
    """The m-bit templates that cannot overlap themselves (no proper prefix equals the
    suffix of its length), in increasing order: the reference code's template sets."""
    mask = (1 << m) - 1
    return tuple(
        t
        for t in range(1, mask)
        if all((t >> (m - k)) != (t & ((1 << k) - 1)) for k in range(1, m))
    )


def non_overlapping_template(
    bits: Bits, m: int = 9, templates: tuple[int, ...] | None = None, blocks: int = 8
) -> tuple[float, ...]:
    """§2.7 Non-overlapping template matching: does each aperiodic m-bit template occur
    (scanning without overlap) as often as expected in each of ``blocks`` blocks? One
    p-value per template. Aperiodic templates never overlap themselves, so the
    overlapping count the windows give is the non-overlapping count."""
    templates = aperiodic_templates(m) if templates is None else templates
    block = bits.size // blocks
    counts = np.stack(
        [
            np.bincount(_windows(bits[j * block : (j + 1) * block], m), minlength=1 << m)
            for j in range(blocks)
        ]
    )[:, list(templates)]
    mu = (block - m + 1) / 2**m
    var = block * (1 / 2**m - (2 * m - 1) / 2 ** (2 * m))
    chi2 = np.sum((counts - mu) ** 2, axis=0) / var
    return tuple(float(p) for p in special.gammaincc(blocks / 2, chi2 / 2))


#: §2.8.4: class probabilities for m = 9, M = 1032 (0, 1, 2, 3, 4, ≥ 5 matches), the
#: exact ones (Hamano and Kaneko); the reference code's approximation gives the
#: figures printed in §2.8.8 and Appendix B.
OVERLAPPING_PI = (0.364091, 0.185659, 0.139381, 0.100571, 0.070432, 0.139865)


def overlapping_template(
    bits: Bits,
    m: int = 9,
    block: int = 1032,
    probabilities: tuple[float, ...] = OVERLAPPING_PI,
) -> tuple[float]:
    """§2.8 Overlapping template matching: are the counts of (overlapping) runs of m
    ones in ``block``-bit blocks distributed as expected (classes 0, 1, ..., K - 1 and
    ≥ K matches for K + 1 probabilities)? The default probabilities hold for the
    specification's parameters, m = 9 and M = 1032, only."""
    if probabilities is OVERLAPPING_PI and (m, block) != (9, 1032):
        raise ValueError("the §2.8 probabilities are for m = 9 and M = 1032 only")
    n_blocks = bits.size // block
    rows = bits[: n_blocks * block].reshape(n_blocks, block)
    sums = np.cumsum(np.pad(rows, ((0, 0), (1, 0))), axis=1, dtype=np.int32)
    matches = np.count_nonzero(sums[:, m:] - sums[:, :-m] == m, axis=1)
    k = len(probabilities) - 1
    nu = np.bincount(np.minimum(matches, k), minlength=k + 1)
    return (_igamc(k / 2, _chi2(nu, n_blocks * np.array(probabilities)) / 2),)


# §2.9 ------------------------------------------------------------------------

#: L: (expected value, variance) of the statistic (§2.9.4, §3.9).
_UNIVERSAL = {
    1: (0.7326495, 0.690),
    2: (1.5374383, 1.338),
    3: (2.4016068, 1.901),
    4: (3.3112247, 2.358),
    5: (4.2534266, 2.705),
    6: (5.2177052, 2.954),
    7: (6.1962507, 3.125),
    8: (7.1836656, 3.238),
    9: (8.1764248, 3.311),
    10: (9.1723243, 3.356),
    11: (10.170032, 3.384),
    12: (11.168765, 3.401),
    13: (12.168070, 3.410),
    14: (13.167693, 3.416),
    15: (14.167488, 3.419),
    16: (15.167379, 3.421),
}
#: §2.9.7: the least n for each block length L.
_UNIVERSAL_N = (
    (1_059_061_760, 16),
    (496_435_200, 15),
    (231_669_760, 14),
    (107_560_960, 13),
    (49_643_520, 12),
    (22_753_280, 11),
    (10_342_400, 10),
    (4_654_080, 9),
    (2_068_480, 8),
    (904_960, 7),
    (387_840, 6),
)


def maurers_universal(
    bits: Bits, length: int | None = None, init: int | None = None
) -> tuple[float]:
    """§2.9 Maurer's universal statistical test: can the sequence be compressed (the
    mean log distance between repeats of L-bit blocks, after Q = 10·2^L initial
    blocks)? By default L and Q follow n (§2.9.7), which needs n ≥ 387,840."""
    n = bits.size
    if length is None:
        try:
            length = next(ell for least, ell in _UNIVERSAL_N if n >= least)
        except StopIteration:
            raise ValueError("Maurer's test needs n >= 387,840 bits") from None
    init = 10 * 2**length if init is None else init
    total = n // length
    tested = total - init
    values = bits[: total * length].reshape(total, length) @ (1 << np.arange(length)[::-1])
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    previous = np.zeros(total, dtype=np.int64)  # 1-based index of the last same block, or 0
    same = ordered[1:] == ordered[:-1]
    previous[order[1:][same]] = order[:-1][same] + 1
    index = np.arange(init + 1, total + 1)
    fn = float(np.sum(np.log2(index - previous[init:]))) / tested
    expected, variance = _UNIVERSAL[length]
    c = 0.7 - 0.8 / length + (4 + 32 / length) * tested ** (-3 / length) / 15
    sigma = c * math.sqrt(variance / tested)
    return (_erfc(abs(fn - expected) / (math.sqrt(2) * sigma)),)


# §2.10 -----------------------------------------------------------------------

#: §3.10: probabilities of the seven T classes, exactly (the reference code's 0.01047
#: for 1/96 gives the figures printed in §2.10.8 and Appendix B).
LINEAR_PI = (1 / 96, 1 / 32, 1 / 8, 1 / 2, 1 / 4, 1 / 16, 1 / 48)


def _shift_left(words: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Multiply bit polynomials (little-endian 64-bit words per row) by x."""
    out = words << np.uint64(1)
    out[:, 1:] |= words[:, :-1] >> np.uint64(63)
    return out


def _linear_complexities(rows: Bits) -> NDArray[np.int64]:
    """Berlekamp-Massey on every row at once, polynomials packed in 64-bit words."""
    count, length = rows.shape
    width = (length + 1 + 63) // 64
    one = np.uint64(1)
    state = np.zeros((count, width), dtype=np.uint64)  # bit i: s[t - i]
    c = np.zeros((count, width), dtype=np.uint64)
    c[:, 0] = one
    d_poly = np.zeros((count, width), dtype=np.uint64)
    d_poly[:, 0] = np.uint64(2)  # x^(t - m)·B(x), with B = 1, m = -1 at t = 0
    complexity = np.zeros(count, dtype=np.int64)
    column = rows.astype(np.uint64)
    for t in range(length):
        state = _shift_left(state)
        state[:, 0] |= column[:, t]
        folded = np.bitwise_xor.reduce(c & state, axis=1)
        discrepancy = (np.bitwise_count(folded) & 1).astype(bool)
        previous = c
        c = np.where(discrepancy[:, None], c ^ d_poly, c)
        lengthen = discrepancy & (2 * complexity <= t)
        complexity = np.where(lengthen, t + 1 - complexity, complexity)
        d_poly = _shift_left(np.where(lengthen[:, None], previous, d_poly))
    return complexity


def linear_complexity(
    bits: Bits, block: int = 500, probabilities: tuple[float, ...] = LINEAR_PI
) -> tuple[float]:
    """§2.10 Linear complexity: are the lengths of the shortest LFSRs generating each
    ``block``-bit block (Berlekamp-Massey) distributed as for random blocks?"""
    n_blocks = bits.size // block
    complexity = _linear_complexities(bits[: n_blocks * block].reshape(n_blocks, block))
    sign = -1.0 if block % 2 else 1.0
    mu = block / 2 + (9 + (-1) ** (block + 1)) / 36 - (block / 3 + 2 / 9) / 2**block
    t = sign * (complexity - mu) + 2 / 9
    classes = np.searchsorted(np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]), t, side="left")
    nu = np.bincount(classes, minlength=7)
    return (_igamc(3, _chi2(nu, n_blocks * np.array(probabilities)) / 2),)


# §2.11, §2.12 ----------------------------------------------------------------


def _cyclic_counts(bits: Bits, m: int) -> list[NDArray[np.int64]]:
    """Counts of every cyclic m-bit, (m-1)-bit, ..., 0-bit pattern (index = length)."""
    if m == 0:
        return [np.array([bits.size], dtype=np.int64)]
    counts = [np.bincount(_windows(bits, m, cyclic=True), minlength=1 << m)]
    for _ in range(m):
        counts.append(counts[-1][0::2] + counts[-1][1::2])
    return counts[::-1]


def serial(bits: Bits, m: int = 16) -> tuple[float, float]:
    """§2.11 Serial: are all 2^m overlapping m-bit patterns about equally common
    (∇ψ²m and ∇²ψ²m, two p-values)?"""
    n = bits.size
    counts = _cyclic_counts(bits, m)
    psi = [2.0**k / n * float(np.sum(counts[k].astype(np.float64) ** 2)) - n for k in range(m + 1)]
    psi_m2 = psi[m - 2] if m >= 2 else 0.0
    del1 = psi[m] - psi[m - 1]
    del2 = psi[m] - 2 * psi[m - 1] + psi_m2
    return (_igamc(2.0 ** (m - 2), del1 / 2), _igamc(2.0 ** (m - 3), del2 / 2))


def approximate_entropy(bits: Bits, m: int = 10) -> tuple[float]:
    """§2.12 Approximate entropy: do the frequencies of overlapping m- and (m+1)-bit
    patterns differ as little as for random bits?"""
    n = bits.size
    counts = _cyclic_counts(bits, m + 1)

    def phi(k: int) -> float:
        c = counts[k][counts[k] > 0] / n
        return float(np.sum(c * np.log(c)))

    apen = phi(m) - phi(m + 1)
    chi2 = 2.0 * n * (math.log(2) - apen)
    return (_igamc(2.0 ** (m - 1), chi2 / 2),)


# §2.13 -----------------------------------------------------------------------


def _cusum_p(z: int, n: int) -> float:
    """§2.13.4 step (4), with the reference code's truncating integer bounds."""
    root = math.sqrt(n)

    def phi(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(special.ndtr(x), dtype=np.float64)

    k1 = np.arange(int((-(n // z) + 1) / 4), int(((n // z) - 1) / 4) + 1, dtype=np.float64)
    k2 = np.arange(int((-(n // z) - 3) / 4), int(((n // z) - 1) / 4) + 1, dtype=np.float64)
    s1 = np.sum(phi((4 * k1 + 1) * z / root) - phi((4 * k1 - 1) * z / root))
    s2 = np.sum(phi((4 * k2 + 3) * z / root) - phi((4 * k2 + 1) * z / root))
    return min(1.0, max(0.0, float(1.0 - s1 + s2)))  # rounding can step just outside


def cumulative_sums(bits: Bits) -> tuple[float, float]:
    """§2.13 Cumulative sums: does the ±1 random walk stray too far from zero, read
    forward and backward (two p-values)?"""
    n = bits.size
    walk = np.cumsum(2 * bits.astype(np.int32) - 1, dtype=np.int32 if n < 2**31 else np.int64)
    forward = max(int(walk.max()), -int(walk.min()))
    total = int(walk[-1])
    head = walk[:-1]
    backward = abs(total)
    if head.size:
        backward = max(backward, total - int(head.min()), int(head.max()) - total)
    return (_cusum_p(forward, n), _cusum_p(backward, n))


# §2.14, §2.15 ----------------------------------------------------------------

EXCURSION_STATES = (-4, -3, -2, -1, 1, 2, 3, 4)
VARIANT_STATES = tuple(x for x in range(-9, 10) if x)


def _walk_cycles(bits: Bits) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """The ±1 walk, the cycle each step belongs to, and the number of cycles J; raises
    NotApplicable when J < max(0.005·√n, 500) (§2.14.7, the reference code's bound)."""
    walk = np.cumsum(2 * bits.astype(np.int64) - 1)
    zero = walk == 0
    cycles = int(np.count_nonzero(zero)) + int(walk[-1] != 0)
    least = max(0.005 * math.sqrt(bits.size), 500)
    if cycles < least:
        raise NotApplicable(f"{cycles} random-walk cycles, fewer than {least:g}")
    cycle = np.concatenate([[0], np.cumsum(zero[:-1])])
    return walk, cycle, cycles


def _excursion_pi(x: int) -> NDArray[np.float64]:
    """§3.14: probabilities that state x is visited 0, 1, ..., 4, ≥ 5 times in a cycle."""
    a = 1 - 1 / (2 * abs(x))
    pis = [a] + [a ** (k - 1) / (4 * x * x) for k in range(1, 5)] + [a**4 / (2 * abs(x))]
    return np.array(pis)


def random_excursions(bits: Bits) -> tuple[float, ...]:
    """§2.14 Random excursions: in the cycles of the ±1 walk, are states -4..-1, 1..4
    visited 0, 1, ..., ≥ 5 times as often as expected? Eight p-values."""
    walk, cycle, cycles = _walk_cycles(bits)
    near = (np.abs(walk) <= 4) & (walk != 0)
    states = walk[near]
    column = np.where(states < 0, states + 4, states + 3)
    visits = np.bincount(cycle[near] * 8 + column, minlength=cycles * 8).reshape(cycles, 8)
    visits = np.minimum(visits, 5)
    ps = []
    for i, x in enumerate(EXCURSION_STATES):
        nu = np.bincount(visits[:, i], minlength=6)
        ps.append(_igamc(2.5, _chi2(nu, cycles * _excursion_pi(x)) / 2))
    return tuple(ps)


def random_excursions_variant(bits: Bits) -> tuple[float, ...]:
    """§2.15 Random excursions variant: is each state -9..-1, 1..9 visited about J times
    in all (J cycles)? Eighteen p-values."""
    walk, _, cycles = _walk_cycles(bits)
    counts = np.bincount(walk[np.abs(walk) <= 9] + 9, minlength=19)
    return tuple(
        _erfc(abs(int(counts[x + 9]) - cycles) / math.sqrt(2 * cycles * (4 * abs(x) - 2)))
        for x in VARIANT_STATES
    )


# The battery -----------------------------------------------------------------


@dataclass(frozen=True)
class Test:
    """One test as ``run`` applies it: the least n it runs on (SP 800-22 §2.x.7) and how
    its parameters and labels follow from n."""

    __test__ = False

    name: str
    section: str
    min_bits: int
    apply: Callable[[Bits], tuple[tuple[float, ...], tuple[str, ...], str]]


def _log2(n: int) -> int:
    return n.bit_length() - 1


def _named(
    fn: Callable[[Bits], tuple[float, ...]], labels: tuple[str, ...] = (), params: str = ""
) -> Callable[[Bits], tuple[tuple[float, ...], tuple[str, ...], str]]:
    return lambda bits: (fn(bits), labels, params)


def _block_frequency(bits: Bits) -> tuple[tuple[float, ...], tuple[str, ...], str]:
    block = max(20, bits.size // 100 + 1)  # §2.2.7: M ≥ 20, M > 0.01·n, N < 100
    return block_frequency(bits, block), (), f"M={block}"


def _serial(bits: Bits) -> tuple[tuple[float, ...], tuple[str, ...], str]:
    m = min(16, _log2(bits.size) - 3)  # §2.11.7: m < ⌊log2 n⌋ - 2
    return serial(bits, m), ("del1", "del2"), f"m={m}"


def _approximate_entropy(bits: Bits) -> tuple[tuple[float, ...], tuple[str, ...], str]:
    m = min(10, _log2(bits.size) - 6)  # §2.12.7: m < ⌊log2 n⌋ - 5
    return approximate_entropy(bits, m), (), f"m={m}"


_TEMPLATES_9 = aperiodic_templates(9)

TESTS: tuple[Test, ...] = (
    Test("frequency", "2.1", 100, _named(frequency)),
    Test("block_frequency", "2.2", 100, _block_frequency),
    Test("runs", "2.3", 100, _named(runs)),
    Test("longest_run", "2.4", 128, _named(longest_run_of_ones)),
    Test("rank", "2.5", 38 * 32 * 32, _named(binary_matrix_rank, params="32x32")),
    Test("dft", "2.6", 1000, _named(spectral)),
    Test(
        "non_overlapping_template",
        "2.7",
        # no figure in §2.7.7: 8 blocks expecting at least 20 matches of each template
        8 * 20 * 2**9,
        _named(
            non_overlapping_template,
            tuple(format(t, "09b") for t in _TEMPLATES_9),
            "m=9, N=8",
        ),
    ),
    Test("overlapping_template", "2.8", 10**6, _named(overlapping_template, params="m=9")),
    Test("universal", "2.9", 387_840, _named(maurers_universal)),
    Test("linear_complexity", "2.10", 10**6, _named(linear_complexity, params="M=500")),
    Test("serial", "2.11", 128, _serial),
    Test("approximate_entropy", "2.12", 256, _approximate_entropy),
    Test("cumulative_sums", "2.13", 100, _named(cumulative_sums, ("forward", "backward"))),
    Test(
        "random_excursions",
        "2.14",
        10**6,
        _named(random_excursions, tuple(f"x={x:+d}" for x in EXCURSION_STATES)),
    ),
    Test(
        "random_excursions_variant",
        "2.15",
        10**6,
        _named(random_excursions_variant, tuple(f"x={x:+d}" for x in VARIANT_STATES)),
    ),
)


def run(data: bytes, *, alpha: float = ALPHA) -> list[TestResult]:
    """Run every test of the battery on ``data`` (bits in big-endian order per byte)."""
    bits = bits_of(data)
    results = []
    for test in TESTS:
        if bits.size < test.min_bits:
            reason = f"needs at least {test.min_bits:,} bits, got {bits.size:,}"
            results.append(TestResult(test.name, test.section, (), True, reason))
            continue
        try:
            p_values, labels, params = test.apply(bits)
        except NotApplicable as exc:
            results.append(TestResult(test.name, test.section, (), True, str(exc)))
            continue
        passed = min(p_values) >= alpha / len(p_values)
        results.append(TestResult(test.name, test.section, p_values, passed, None, labels, params))
    return results
