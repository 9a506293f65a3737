"""SP 800-90B non-IID min-entropy estimators (§6.3.1-§6.3.10), as NIST's ``ea_non_iid`` has them.

Each estimator returns the min-entropy per sample, in bits, of a sequence of
symbols over an alphabet of a given size. :func:`non_iid_assessment` is the
initial entropy estimate of §3.1.3 (``ea_non_iid -i``): the estimators on the
samples (H_original) and, for multi-bit samples, on their bitstring
(H_bitstring).

The figures follow NIST's reference implementation (SP800-90B_EntropyAssessment
1.1.7, ``cpp/non_iid``) rather than the standard's pseudo-code where the two
differ in detail: its confidence bounds (Z = 2.5758293035489008), its solution
of the collision and compression equations, its tie-breaking in the
predictors, the MultiMMC cap of 100 000 entries per depth and the LZ78Y cap of
65 536 dictionary entries, and its order of dictionary updates. Where NIST
computes in ``long double`` (prediction bounds, t-tuple, LRS) so do we
(``np.longdouble``), except in the compression estimate's G function (double
here: about 1e-14 apart). The tests hold every figure to NIST's own output.

The sequential predictors and the suffix array are numba kernels; the rest is
numpy. Everything here is a pure function of its input.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numba
import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

__all__ = [
    "BINARY_ONLY",
    "ESTIMATOR_NAMES",
    "NonIidResult",
    "collision",
    "compression",
    "lag",
    "lrs",
    "lz78y",
    "map_to_alphabet",
    "markov",
    "most_common_value",
    "multi_mcw",
    "multi_mmc",
    "non_iid_assessment",
    "t_tuple",
    "to_bitstring",
]

ESTIMATOR_NAMES = (
    "most_common_value",  # §6.3.1
    "collision",  # §6.3.2
    "markov",  # §6.3.3
    "compression",  # §6.3.4
    "t_tuple",  # §6.3.5
    "lrs",  # §6.3.6
    "multi_mcw",  # §6.3.7
    "lag",  # §6.3.8
    "multi_mmc",  # §6.3.9
    "lz78y",  # §6.3.10
)
#: Estimators the standard defines for binary data only (§6.3.2-§6.3.4).
BINARY_ONLY = ("collision", "markov", "compression")

_ZALPHA = 2.5758293035489008  # z for a 99% upper bound, NIST's ZALPHA
_ZALPHA_L = np.longdouble("2.575829303548900384158")  # NIST's ZALPHA_L (long double)
_LDBL_EPSILON = np.finfo(np.longdouble).eps
_DBL_MIN = 2.2250738585072014e-308
_DBL_EPSILON = 2.220446049250313e-16
_ITERMAX = 1076  # bisection steps, NIST's ITERMAX
_BITSTRING_CAP = 1_000_000  # bits kept by ``-t`` (§3.1.3 allows the truncation)
_MAX_SAMPLES = 2**31 - 1  # int32 indices and counts in the kernels

_TUPLE_CUTOFF = 35  # §6.3.5: t-tuples occurring at least 35 times
_COMPRESSION_D = 1000  # §6.3.4: dictionary blocks
_COMPRESSION_B = 6  # §6.3.4: bits per block
_MCW_WINDOWS = (63, 255, 1023, 4095)  # §6.3.7
_LAG_DEPTH = 128  # §6.3.8: D
_MMC_DEPTH = 16  # §6.3.9: D
_MMC_MAX_ENTRIES = 100_000  # §6.3.9: entries per depth
_LZ78Y_B = 16  # §6.3.10: B
_LZ78Y_MAX_DICT = 65_536  # §6.3.10: dictionary entries

U8 = NDArray[np.uint8]
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
_Counts = tuple[int, int, int]  # a predictor's (C, N, longest run of correct predictions)


class _NotApplicable(ValueError):
    """The data cannot support this estimator (NIST skips it)."""


def _jit(func: Callable[..., Any]) -> Any:
    return numba.njit(cache=True)(func)


# ---------------------------------------------------------------------------
# Input checks, the alphabet, the bitstring


def _symbols(symbols: npt.ArrayLike, alphabet_size: int, minimum: int, name: str) -> U8:
    """Check a symbol sequence for an estimator and return it as contiguous uint8."""
    if isinstance(alphabet_size, bool) or not 2 <= alphabet_size <= 256:
        raise ValueError(f"alphabet_size must be 2..256, got {alphabet_size!r}")
    arr = np.asarray(symbols)
    if arr.ndim != 1:
        raise ValueError(f"symbols must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("symbols is empty")
    if arr.dtype.kind not in "uib":
        raise ValueError(f"symbols must be integers, got dtype {arr.dtype}")
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high >= alphabet_size:
        raise ValueError(
            f"symbols must lie in 0..{alphabet_size - 1}, found {low if low < 0 else high}"
        )
    if arr.size > _MAX_SAMPLES:
        raise ValueError(f"at most {_MAX_SAMPLES} samples, got {arr.size}")
    if arr.size < minimum:
        raise _NotApplicable(f"{name} needs at least {minimum} samples, got {arr.size}")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _samples(symbols: npt.ArrayLike, bits_per_symbol: int) -> U8:
    """Check samples of ``bits_per_symbol`` bits, one per element, as NIST reads a file."""
    if isinstance(bits_per_symbol, bool) or not isinstance(bits_per_symbol, int | np.integer):
        raise ValueError(f"bits_per_symbol must be an integer 1..8, got {bits_per_symbol!r}")
    if not 1 <= bits_per_symbol <= 8:
        raise ValueError(f"bits_per_symbol must be 1..8, got {bits_per_symbol}")
    arr = np.asarray(symbols)
    if arr.ndim != 1:
        raise ValueError(f"symbols must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("symbols is empty")
    if arr.dtype.kind not in "uib":
        raise ValueError(f"symbols must be integers, got dtype {arr.dtype}")
    if arr.size * bits_per_symbol > _MAX_SAMPLES:
        raise ValueError(
            f"at most {_MAX_SAMPLES} bits of samples, got {arr.size * bits_per_symbol}"
        )
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high >= 1 << bits_per_symbol:
        raise ValueError(
            f"symbols must be {bits_per_symbol}-bit values 0..{(1 << bits_per_symbol) - 1}, "
            f"found {low if low < 0 else high}"
        )
    return np.ascontiguousarray(arr, dtype=np.uint8)


def to_bitstring(symbols: npt.ArrayLike, bits_per_symbol: int) -> U8:
    """Expand each ``bits_per_symbol``-bit sample to its bits, most significant first (§3.1.3).

    This is the bitstring NIST's tool builds for H_bitstring, from the samples
    as read (before any translation of the alphabet).
    """
    arr = _samples(symbols, bits_per_symbol)
    bits = np.unpackbits(arr[:, np.newaxis], axis=1)[:, 8 - bits_per_symbol :]
    return np.ascontiguousarray(bits.reshape(-1))


def map_to_alphabet(symbols: npt.ArrayLike) -> tuple[U8, int]:
    """Translate the values that occur onto 0..k-1 in their order; return them and k.

    NIST's tool does this to every file it reads: the alphabet size k that the
    estimators see is the number of distinct values present, not 2^bits.
    """
    arr = np.asarray(symbols)
    if arr.ndim != 1 or arr.dtype.kind not in "uib":
        raise ValueError("symbols must be a one-dimensional array of integers")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise ValueError("symbols must be 0..255")
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    present = np.bincount(arr, minlength=256) > 0
    table = (np.cumsum(present) - 1).astype(np.uint8)
    return table[arr], int(present.sum())


# ---------------------------------------------------------------------------
# Shared numerics: NIST's float comparison and the predictors' bound (§6.3.7-§6.3.10)


def _rel_epsilon_equal(a: float, b: float, max_abs: float, max_rel: float, max_ulp: int) -> bool:
    """NIST's relEpsilonEqual: relative closeness, else within ``max_ulp`` ULPs."""
    if math.isnan(a) or math.isnan(b):
        return False
    if a == b:
        return True
    if math.isinf(a) or math.isinf(b):
        return False
    abs_a, abs_b = abs(a), abs(b)
    if abs_a > abs_b:
        a, b = b, a
        abs_a, abs_b = abs_b, abs_a
    diff = abs(b - a)
    if abs_a < _DBL_MIN or diff < _DBL_MIN or math.isinf(diff) or abs_b * max_rel < _DBL_MIN:
        return diff <= max_abs
    if diff <= abs_b * max_rel:
        return True
    if math.copysign(1.0, a) != math.copysign(1.0, b):
        return False
    a_int = struct.unpack("<q", struct.pack("<d", abs_a))[0]
    b_int = struct.unpack("<q", struct.pack("<d", abs_b))[0]
    return bool(b_int - a_int <= max_ulp)


def _close(a: float, b: float) -> bool:
    return _rel_epsilon_equal(a, b, _DBL_MIN, _DBL_EPSILON, 4)


def _in_open(x: float, a: float, b: float) -> bool:
    return (b < x < a) if a > b else (a < x < b)


def _in_closed(x: float, a: float, b: float) -> bool:
    return (b <= x <= a) if a > b else (a <= x <= b)


def _run_bound(p: float, r: int, n: int) -> float:
    """log of the probability of no run of r successes in n+1 trials (§6.3.7 step 10), as NIST.

    NIST's prediction_estimate_function, evaluated in long double.
    """
    ld = np.longdouble
    pl = ld(p)
    q = ld(1) - pl
    rl = ld(r)
    x = ld(1)
    x_last = ld(0)
    i = 0
    with np.errstate(all="ignore"):
        while i <= 65 and (x - x_last) > _LDBL_EPSILON * x:
            x_last = x
            x = ld(1) + q * np.power(pl, rl) * np.power(x, rl + ld(1))
            i += 1
        value = (
            np.log(ld(1) - pl * x) - np.log((rl + ld(1) - rl * x) * q) - (ld(n) + ld(1)) * np.log(x)
        )
    return float(value)


def _p_local(max_run: int, n: int, low_domain: float) -> float:
    """Solve for P_local by NIST's bisection (calc_p_local)."""
    log_alpha = math.log(0.99)
    high_domain = 1.0
    lbound, hbound = low_domain, high_domain
    lvalue, hvalue = math.inf, -math.inf
    p = (lbound + hbound) / 2.0
    p_val = _run_bound(p, max_run + 1, n)
    for _ in range(_ITERMAX):
        if _close(p_val, log_alpha):
            break
        if log_alpha < p_val:
            lbound, lvalue = p, p_val
        else:
            hbound, hvalue = p, p_val
        if lbound >= hbound:
            p = min(max(lbound, hbound), high_domain)
            break
        if not (
            _in_closed(lbound, low_domain, high_domain)
            and _in_closed(hbound, low_domain, high_domain)
        ):
            p = high_domain
            break
        if not _in_closed(log_alpha, lvalue, hvalue):
            p = high_domain
            break
        last_p = p
        p = (lbound + hbound) / 2.0
        if not _in_open(p, lbound, hbound):
            p = hbound
            break
        if last_p == p:
            p = hbound
            break
        p_val = _run_bound(p, max_run + 1, n)
        if not _in_closed(p_val, lvalue, hvalue):
            p = hbound
            break
    return p


def _prediction_estimate(correct: int, n: int, max_run: int, k: int) -> float:
    """Min-entropy from a predictor's C correct of N and longest run (§6.3.7 steps 9-12)."""
    cur_max = 1.0 / k
    p_global = correct / n
    if p_global > 0:
        p_global_prime = min(
            1.0, p_global + _ZALPHA * math.sqrt((p_global * (1.0 - p_global)) / (n - 1.0))
        )
    else:
        p_global_prime = 1.0 - math.pow(0.01, 1.0 / n)
    cur_max = max(cur_max, p_global_prime)
    if cur_max < 1.0 and _run_bound(cur_max, max_run + 1, n) > math.log(0.99):
        cur_max = max(cur_max, _p_local(max_run, n, cur_max))
    return _bits(cur_max)


def _bits(p: float) -> float:
    """-log2(p), with +0.0 for p = 1."""
    return -math.log2(p) + 0.0


# ---------------------------------------------------------------------------
# §6.3.1 Most Common Value


def most_common_value(symbols: npt.ArrayLike, alphabet_size: int) -> float:
    """Most Common Value estimate (§6.3.1): the upper bound on the commonest value's probability."""
    data = _symbols(symbols, alphabet_size, 2, "most_common_value")
    mode = int(np.bincount(data, minlength=alphabet_size).max())
    length = data.size
    p_max = mode / length
    upper = min(1.0, p_max + _ZALPHA * math.sqrt(p_max * (1.0 - p_max) / (length - 1.0)))
    return _bits(upper)


# ---------------------------------------------------------------------------
# §6.3.2 Collision


def _collision_walk_py(data: U8) -> tuple[int, int, float]:
    """Walk to each collision: the count v, the sum of the t_i and of their squares."""
    length = data.size
    i = 0
    v = 0
    squares = 0.0
    while i < length - 1:
        if data[i] == data[i + 1]:
            t = 2
        elif i < length - 2:
            t = 3
        else:
            break
        v += 1
        squares += t * t
        i += t
    return v, i, squares


_collision_walk = cast(Callable[[U8], tuple[int, int, float]], _jit(_collision_walk_py))


def _binary(symbols: npt.ArrayLike, alphabet_size: int, minimum: int, name: str) -> U8:
    if alphabet_size != 2:
        raise ValueError(f"{name} is defined for binary data only (alphabet_size 2)")
    return _symbols(symbols, 2, minimum, name)


def collision(symbols: npt.ArrayLike, alphabet_size: int = 2) -> float:
    """Collision estimate (§6.3.2), binary data only.

    NIST solves step 7 in closed form: with F(q) = q(2q^2+2q+1) the mean
    collision time is 2 + 2p - 2p^2, so p = 1/2 + sqrt(5/4 - X'/2).
    """
    data = _binary(symbols, alphabet_size, 2, "collision")
    v, total, squares = _collision_walk(data)
    if v < 2:
        raise _NotApplicable("collision needs at least two collisions")
    mean = total / v
    sigma = math.sqrt((squares - (total * mean)) / (v - 1))
    mean -= _ZALPHA * sigma / math.sqrt(v)
    mean = max(mean, 2.0)
    if mean < 2.5:
        return _bits(0.5 + math.sqrt(1.25 - 0.5 * mean))
    return 1.0


# ---------------------------------------------------------------------------
# §6.3.3 Markov


def markov(symbols: npt.ArrayLike, alphabet_size: int = 2) -> float:
    """Markov estimate (§6.3.3), binary data only: the likeliest 128-bit path of a Markov chain."""
    data = _binary(symbols, alphabet_size, 2, "markov")
    length = data.size
    first, second = data[:-1], data[1:]
    zero = first == 0
    c_0 = int(np.count_nonzero(zero))
    c_00 = int(np.count_nonzero(zero & (second == 0)))
    c_10 = int(np.count_nonzero(~zero & (second == 0)))
    c_1 = length - 1 - c_0
    p_00, p_01 = (c_00 / c_0, 1.0 - c_00 / c_0) if c_0 > 0 else (0.0, 0.0)
    p_10, p_11 = (c_10 / c_1, 1.0 - c_10 / c_1) if c_1 > 0 else (0.0, 0.0)
    if data[-1] == 0:
        c_0 += 1
    p_0 = c_0 / length
    p_1 = 1.0 - p_0
    log2 = math.log2
    h_min = 128.0
    if p_00 > 0.0:
        h_min = min(h_min, -log2(p_0) - 127.0 * log2(p_00))
    if p_01 > 0.0 and p_10 > 0.0:
        h_min = min(h_min, -log2(p_0) - 64.0 * log2(p_01) - 63.0 * log2(p_10))
    if p_01 > 0.0 and p_11 > 0.0:
        h_min = min(h_min, -log2(p_0) - log2(p_01) - 126.0 * log2(p_11))
    if p_10 > 0.0 and p_00 > 0.0:
        h_min = min(h_min, -log2(p_1) - log2(p_10) - 126.0 * log2(p_00))
    if p_10 > 0.0 and p_01 > 0.0:
        h_min = min(h_min, -log2(p_1) - 64.0 * log2(p_10) - 63.0 * log2(p_01))
    if p_11 > 0.0:
        h_min = min(h_min, -log2(p_1) - 127.0 * log2(p_11))
    return min(h_min / 128.0, 1.0) + 0.0


# ---------------------------------------------------------------------------
# §6.3.4 Compression


def _compression_sums_py(data: U8, d: int, b: int) -> tuple[float, float]:
    """Maurer's statistic over blocks d+1.. (Kahan sums of log2 distances and their squares)."""
    num_blocks = data.size // b
    last = np.zeros(1 << b, dtype=np.int64)
    for i in range(d):
        block = 0
        for j in range(b):
            block |= (int(data[i * b + j]) & 1) << (b - j - 1)
        last[block] = i + 1
    x = 0.0
    x_comp = 0.0
    sq = 0.0
    sq_comp = 0.0
    for i in range(d, num_blocks):
        block = 0
        for j in range(b):
            block |= (int(data[i * b + j]) & 1) << (b - j - 1)
        value = math.log2(i + 1 - last[block])
        y = value - x_comp
        t = x + y
        x_comp = (t - x) - y
        x = t
        y = value * value - sq_comp
        t = sq + y
        sq_comp = (t - sq) - y
        sq = t
        last[block] = i + 1
    return x, sq


_compression_sums = cast(Callable[[U8, int, int], tuple[float, float]], _jit(_compression_sums_py))


def _compression_g_py(z: float, d: int, num_blocks: int, log2s: NDArray[np.float64]) -> float:
    """NIST's G(z) (UL's recurrence, Kahan sums); ``log2s[i]`` is log2(i)."""
    a_sum = 0.0
    a_comp = 0.0
    first = 0.0
    first_comp = 0.0
    v = num_blocks - d
    b_term = 1.0 - z
    b_i = b_term
    for i in range(2, d + 1):
        y = log2s[i] * b_i - a_comp
        t = a_sum + y
        a_comp = (t - a_sum) - y
        a_sum = t
        b_i *= b_term
    a_d1 = a_sum
    truncated = False
    for i in range(d + 1, num_blocks):
        ai = log2s[i] * b_i
        y = ai - a_comp
        t = a_sum + y
        a_comp = (t - a_sum) - y
        a_sum = t
        scaled = (num_blocks - i) * ai
        if scaled > 0.0:
            y = scaled - first_comp
            t = first + y
            first_comp = (t - first) - y
            first = t
        else:
            truncated = True
            break
        b_i *= b_term
    y = (num_blocks - d) * a_d1 - first_comp
    t = first + y
    first_comp = (t - first) - y
    first = t
    if not truncated:
        ai = log2s[num_blocks] * b_i
        y = ai - a_comp
        t = a_sum + y
        a_comp = (t - a_sum) - y
        a_sum = t
    return 1.0 / v * z * (z * first + (a_sum - a_d1))


_compression_g = cast(
    Callable[[float, int, int, NDArray[np.float64]], float], _jit(_compression_g_py)
)


def compression(symbols: npt.ArrayLike, alphabet_size: int = 2) -> float:
    """Compression estimate (§6.3.4), binary only: Maurer's universal statistic on 6-bit blocks."""
    b, d = _COMPRESSION_B, _COMPRESSION_D
    data = _binary(symbols, alphabet_size, b * (d + 1), "compression")
    return _compression_estimate(data, d, b)


def _compression_estimate(data: U8, d: int, b: int) -> float:
    num_blocks = data.size // b
    v = num_blocks - d
    x, sq = _compression_sums(data, d, b)
    x /= v
    sigma = 0.5907 * math.sqrt(sq / (v - 1.0) - x * x)
    x -= _ZALPHA * sigma / math.sqrt(v)
    with np.errstate(divide="ignore"):
        log2s = np.log2(np.arange(num_blocks + 1, dtype=np.float64))
    alph = 1 << b
    low_domain, high_domain = 1.0 / alph, 1.0

    def expected(p: float) -> float:
        q = (1.0 - p) / (alph - 1.0)
        g_p = _compression_g(p, d, num_blocks, log2s)
        return g_p + (alph - 1.0) * _compression_g(q, d, num_blocks, log2s)

    p = -1.0
    if expected(low_domain) > x:
        lbound, hbound = low_domain, high_domain
        lvalue, hvalue = math.inf, -math.inf
        p = (lbound + hbound) / 2.0
        p_val = expected(p)
        for _ in range(_ITERMAX):
            if _close(p_val, x):
                break
            if x < p_val:
                lbound, lvalue = p, p_val
            else:
                hbound, hvalue = p, p_val
            if lbound >= hbound:
                p = min(max(lbound, hbound), high_domain)
                break
            if not (
                _in_closed(lbound, low_domain, high_domain)
                and _in_closed(hbound, low_domain, high_domain)
            ):
                p = low_domain
                break
            if not _in_closed(x, lvalue, hvalue):
                p = low_domain
                break
            last_p = p
            p = (lbound + hbound) / 2.0
            if not _in_open(p, lbound, hbound):
                p = hbound
                break
            if last_p == p:
                p = hbound
                break
            p_val = expected(p)
            if not _in_closed(p_val, lvalue, hvalue):
                p = hbound
                break
    if p > low_domain:
        return _bits(p) / b
    return 1.0


# ---------------------------------------------------------------------------
# §6.3.5 t-Tuple and §6.3.6 LRS: counts of every tuple length from one suffix array


def _suffix_keys_py(text: U8, bits: int, width: int) -> I64:
    """Each suffix's key: its first ``width`` symbols (``bits`` each, zero past the end), then
    min(length, width) in the low 6 bits.

    Keys sort as the suffixes' first ``width`` symbols, the end of the data
    counting as the smallest symbol; equal keys mean a common prefix of at
    least ``width`` symbols.
    """
    n = text.size
    keys = np.empty(n, dtype=np.int64)
    content = 0
    top_shift = bits * (width - 1)
    for i in range(n - 1, -1, -1):
        content = (content >> bits) | (int(text[i]) << top_shift)
        keys[i] = (content << 6) | min(n - i, width)
    return keys


_suffix_keys = cast(Callable[[U8, int, int], I64], _jit(_suffix_keys_py))


def _lcp_from_keys_py(keys: I64, bits: int, width: int) -> tuple[I32, bool]:
    """The LCP array (NIST's convention, see ``_lcp``) from the sorted suffix keys.

    Exact wherever adjacent keys differ; the flag says some adjacent pair
    shares ``width`` symbols or more (then the caller builds the suffix array).
    """
    n = keys.size
    lcp = np.zeros(n + 1, dtype=np.int32)
    overflow = False
    for r in range(1, n):
        a = keys[r - 1]
        b = keys[r]
        x = (a ^ b) >> 6
        common = width
        if x != 0:
            high = 0
            if x >> 32:
                x >>= 32
                high += 32
            if x >> 16:
                x >>= 16
                high += 16
            if x >> 8:
                x >>= 8
                high += 8
            if x >> 4:
                x >>= 4
                high += 4
            if x >> 2:
                x >>= 2
                high += 2
            if x >> 1:
                high += 1
            common = width - 1 - high // bits
        length = min(common, a & 63, b & 63)
        if length >= width:
            overflow = True
        lcp[r] = length
    return lcp, overflow


_lcp_from_keys = cast(Callable[[I64, int, int], tuple[I32, bool]], _jit(_lcp_from_keys_py))


def _induce_py(sa: I32, text: I32, stype: NDArray[np.bool_], count: I64) -> None:
    """SA-IS induced sorting: the L-type suffixes from the left, then the S-type from the right."""
    n = sa.size
    k = count.size
    heads = np.empty(k, dtype=np.int64)
    total = 0
    for c in range(k):
        heads[c] = total
        total += count[c]
    for i in range(n):
        j = sa[i] - 1
        if j >= 0 and not stype[j]:
            c = text[j]
            sa[heads[c]] = j
            heads[c] += 1
    tails = np.empty(k, dtype=np.int64)
    total = 0
    for c in range(k):
        total += count[c]
        tails[c] = total - 1
    for i in range(n - 1, -1, -1):
        j = sa[i] - 1
        if j >= 0 and stype[j]:
            c = text[j]
            sa[tails[c]] = j
            tails[c] -= 1


_induce = _jit(_induce_py)


def _sais_reduce_py(text: I32, k: int) -> tuple[I32, int, NDArray[np.bool_], I64]:
    """SA-IS, first half: sort and name the LMS substrings.

    Returns the reduced string (the names of the LMS substrings in text
    order), how many names, the suffix types (S = True) and symbol counts.
    """
    n = text.size
    sa = np.empty(n, dtype=np.int32)
    sa[:] = -1
    stype = np.zeros(n, dtype=np.bool_)
    stype[n - 1] = True
    for i in range(n - 2, -1, -1):
        stype[i] = text[i] < text[i + 1] or (text[i] == text[i + 1] and stype[i + 1])
    count = np.zeros(k, dtype=np.int64)
    for i in range(n):
        count[text[i]] += 1
    tails = np.empty(k, dtype=np.int64)
    total = 0
    for c in range(k):
        total += count[c]
        tails[c] = total - 1
    # LMS positions at their buckets' ends, then induce: the LMS substrings sorted
    for i in range(1, n):
        if stype[i] and not stype[i - 1]:
            c = text[i]
            sa[tails[c]] = i
            tails[c] -= 1
    _induce(sa, text, stype, count)
    m = 0
    for i in range(n):
        j = sa[i]
        if j > 0 and stype[j] and not stype[j - 1]:
            sa[m] = j
            m += 1
    for i in range(m, n):
        sa[i] = -1
    # name them (equal substrings, equal names), in text order after the first m slots
    name = 0
    prev = -1
    for i in range(m):
        pos = sa[i]
        differs = prev < 0
        d = 0
        while not differs:
            a = pos + d
            b = prev + d
            if text[a] != text[b] or stype[a] != stype[b]:
                differs = True
            elif d > 0 and ((stype[a] and not stype[a - 1]) or (stype[b] and not stype[b - 1])):
                break
            d += 1
        if differs:
            name += 1
            prev = pos
        sa[m + pos // 2] = name - 1
    j = n - 1
    for i in range(n - 1, m - 1, -1):
        if sa[i] >= 0:
            sa[j] = sa[i]
            j -= 1
    return sa[n - m :].copy(), name, stype, count


_sais_reduce = cast(
    Callable[[I32, int], tuple[I32, int, NDArray[np.bool_], I64]], _jit(_sais_reduce_py)
)


def _sais_expand_py(text: I32, stype: NDArray[np.bool_], count: I64, order: I32) -> I32:
    """SA-IS, second half: the LMS suffixes in ``order`` at their buckets' ends, then induce."""
    n = text.size
    k = count.size
    m = order.size
    lms = np.empty(m, dtype=np.int32)
    t = 0
    for i in range(1, n):
        if stype[i] and not stype[i - 1]:
            lms[t] = i
            t += 1
    sa = np.empty(n, dtype=np.int32)
    sa[:] = -1
    tails = np.empty(k, dtype=np.int64)
    total = 0
    for c in range(k):
        total += count[c]
        tails[c] = total - 1
    for i in range(m - 1, -1, -1):
        p = lms[order[i]]
        c = text[p]
        sa[tails[c]] = p
        tails[c] -= 1
    _induce(sa, text, stype, count)
    return sa


_sais_expand = cast(Callable[[I32, NDArray[np.bool_], I64, I32], I32], _jit(_sais_expand_py))


def _sais(text: I32, k: int) -> I32:
    """Suffix array of ``text`` by SA-IS (Nong, Zhang and Chan 2009), in linear time.

    ``text`` holds symbols 0..k-1 and ends with a 0 that occurs nowhere else.
    """
    if text.size == 1:
        return np.zeros(1, dtype=np.int32)
    reduced, names, stype, count = _sais_reduce(text, k)
    if names < reduced.size:
        order = _sais(reduced, names)
    else:
        order = np.empty(reduced.size, dtype=np.int32)
        order[reduced] = np.arange(reduced.size, dtype=np.int32)
    return _sais_expand(text, stype, count, order)


def _suffix_array(data: U8, alphabet_size: int) -> tuple[I32, I32]:
    """The suffix array of ``data`` (a suffix before any it is a prefix of) and its inverse."""
    text = np.empty(data.size + 1, dtype=np.int32)
    text[:-1] = data
    text[:-1] += 1
    text[-1] = 0
    sa = _sais(text, alphabet_size + 1)[1:].copy()
    rank = np.empty(data.size, dtype=np.int32)
    rank[sa] = np.arange(data.size, dtype=np.int32)
    return sa, rank


def _lcp_py(text: U8, sa: I32, rank: I32) -> I32:
    """Kasai's LCP array, NIST's convention: lcp[0] = lcp[n] = 0, lcp[r] = lcp(sa[r-1], sa[r])."""
    n = text.size
    lcp = np.zeros(n + 1, dtype=np.int32)
    h = 0
    for i in range(n):
        r = rank[i]
        if r > 0:
            j = sa[r - 1]
            while i + h < n and j + h < n and text[i + h] == text[j + h]:
                h += 1
            lcp[r] = h
            if h > 0:
                h -= 1
        else:
            h = 0
    return lcp


_lcp = cast(Callable[[U8, I32, I32], I32], _jit(_lcp_py))


def longest_repeat(data: U8, alphabet_size: int) -> int:
    """Length of the longest substring that occurs twice (overlaps allowed), for the
    LRS test (§5.2.5): the largest LCP of neighbouring suffixes."""
    if data.size < 2:
        return 0
    sa, rank = _suffix_array(data, alphabet_size)
    return int(_lcp(data, sa, rank).max())


def _tuple_counts_py(lcp: I32, v: int) -> tuple[I64, I64]:
    """For each length t <= v: the largest count of a t-tuple and the sum of C(count, 2).

    A bottom-up walk of the lcp intervals: an interval of ``size`` suffixes
    with lcp ``ell`` inside a parent with lcp ``parent`` is one tuple of each
    length parent+1..ell occurring ``size`` times. Returns the largest size
    per ell (its suffix maximum is Q[t]) and a difference array of the pair
    counts (its prefix sum is the LRS numerator).
    """
    n = lcp.size - 1
    largest = np.zeros(v + 2, dtype=np.int64)
    pairs = np.zeros(v + 2, dtype=np.int64)
    stack_lcp = np.zeros(v + 2, dtype=np.int64)
    stack_lb = np.zeros(v + 2, dtype=np.int64)
    top = 0
    for i in range(1, n + 1):
        li = lcp[i]
        lb = i - 1
        while li < stack_lcp[top]:
            ell = stack_lcp[top]
            lb = stack_lb[top]
            top -= 1
            size = i - lb
            parent = max(li, stack_lcp[top])
            if size > largest[ell]:
                largest[ell] = size
            c = size * (size - 1) // 2
            pairs[parent + 1] += c
            pairs[ell + 1] -= c
        if li > stack_lcp[top]:
            top += 1
            stack_lcp[top] = li
            stack_lb[top] = lb
    return largest, pairs


_tuple_counts = cast(Callable[[I32, int], tuple[I64, I64]], _jit(_tuple_counts_py))


@dataclass(frozen=True)
class _Tuples:
    """Tuple statistics of a sequence: Q[t] and the pair counts for t = 0..v."""

    n: int
    v: int  # length of the longest repeated substring
    q: I64  # q[t]: occurrences of the commonest t-tuple (q[0] unused)
    pairs: I64  # pairs[t]: sum over t-tuples of C(count, 2)

    def u(self, cutoff: int) -> int:
        """The smallest t with Q[t] < cutoff (v + 1 if none)."""
        below = np.flatnonzero(self.q[1 : self.v + 1] < cutoff)
        return int(below[0]) + 1 if below.size else self.v + 1


def _tuples(data: U8, alphabet_size: int) -> _Tuples:
    n = data.size
    bits = max(1, (alphabet_size - 1).bit_length())
    width = 57 // bits
    lcp, overflow = _lcp_from_keys(np.sort(_suffix_keys(data, bits, width)), bits, width)
    if overflow:
        sa, rank = _suffix_array(data, alphabet_size)
        lcp = _lcp(data, sa, rank)
        del sa, rank
    v = int(lcp.max())
    if v == 0:
        raise _NotApplicable("no symbol sequence repeats")
    largest, diff = _tuple_counts(lcp, v)
    q = np.maximum(np.maximum.accumulate(largest[::-1])[::-1], 1)[: v + 1]
    return _Tuples(n, v, q, np.cumsum(diff)[: v + 1])


def _upper_bound_l(p_max: np.longdouble, n: int) -> float:
    """-log2 of NIST's long double upper bound p_u = min(1, p + Z sqrt(p(1-p)/(n-1)))."""
    ld = np.longdouble
    pu = p_max + _ZALPHA_L * np.sqrt(p_max * (ld(1) - p_max) / ld(n - 1))
    pu = min(pu, ld(1))
    return float(-np.log2(pu)) + 0.0


def _max_root(numerators: I64, denominators: I64, t: I64) -> np.longdouble:
    """max over t of (numerator / denominator)^(1/t) in long double, as NIST (at least 0).

    Found in double first; only the candidates within 1e-9 of that maximum
    are evaluated in long double (there can be millions of t).
    """
    ld = np.longdouble
    rough = np.power(numerators / denominators, 1.0 / t)
    near = np.flatnonzero(rough >= rough.max() * (1 - 1e-9))
    exact = np.power(
        numerators[near].astype(ld) / denominators[near].astype(ld), ld(1) / t[near].astype(ld)
    )
    return max(ld(0), np.max(exact))


def _t_tuple_from(tuples: _Tuples, cutoff: int) -> float:
    u = tuples.u(cutoff)
    if u <= 1:
        raise _NotApplicable(f"t_tuple: no symbol occurs {cutoff} times")
    t = np.arange(1, u)
    return _upper_bound_l(_max_root(tuples.q[1:u], tuples.n - t + 1, t), tuples.n)


def _lrs_from(tuples: _Tuples, cutoff: int) -> float:
    u = tuples.u(cutoff)
    if tuples.v < u:
        raise _NotApplicable("lrs: no tuple longer than the t-tuple range repeats")
    t = np.arange(u, tuples.v + 1)
    rest = tuples.n - t
    choices = (rest * (rest + 1)) >> 1
    return _upper_bound_l(_max_root(tuples.pairs[u : tuples.v + 1], choices, t), tuples.n)


def t_tuple(symbols: npt.ArrayLike, alphabet_size: int) -> float:
    """t-Tuple estimate (§6.3.5): the commonest t-tuple for each t up to the last seen 35 times."""
    data = _symbols(symbols, alphabet_size, 2, "t_tuple")
    return _t_tuple_from(_tuples(data, alphabet_size), _TUPLE_CUTOFF)


def lrs(symbols: npt.ArrayLike, alphabet_size: int) -> float:
    """Longest Repeated Substring estimate (§6.3.6): collisions of the tuples beyond t-Tuple's."""
    data = _symbols(symbols, alphabet_size, 2, "lrs")
    return _lrs_from(_tuples(data, alphabet_size), _TUPLE_CUTOFF)


# ---------------------------------------------------------------------------
# §6.3.7 MultiMCW prediction


def _multi_mcw_py(data: U8, k: int, windows: I64) -> _Counts:
    """NIST's multi_mcw_test loop: (C, N, longest run). Ties go to the most recent symbol.

    Positions must stay below 2^31 (``_MAX_SAMPLES``) and windows below 2^23.
    """
    length = data.size
    nw = windows.size
    w_max = windows[nw - 1]
    counts = np.zeros((nw, k), dtype=np.int64)
    positions = np.zeros((nw, k), dtype=np.int64)
    max_counts = np.zeros(nw, dtype=np.int64)
    frequent = np.zeros(nw, dtype=np.int64)
    scoreboard = np.zeros(nw, dtype=np.int64)
    winner = 0
    correct = 0
    run = 0
    max_run = 0
    for i in range(w_max):
        s = data[i]
        for j in range(nw):
            if i < windows[j]:
                counts[j, s] += 1
                if max_counts[j] <= counts[j, s]:
                    max_counts[j] = counts[j, s]
                    frequent[j] = s
                positions[j, s] = i
    for i in range(windows[0], length):
        s = data[i]
        if frequent[winner] == s:
            correct += 1
            run += 1
            max_run = max(max_run, run)
        else:
            run = 0
        for j in range(nw):
            if i >= windows[j] and frequent[j] == s:
                scoreboard[j] += 1
                if scoreboard[j] >= scoreboard[winner]:
                    winner = j
        for j in range(nw):
            w = windows[j]
            if i >= w:
                old = data[i - w]
                counts[j, old] -= 1
                counts[j, s] += 1
                positions[j, s] = i
                if old != frequent[j] and max_counts[j] <= counts[j, s]:
                    max_counts[j] = counts[j, s]
                    frequent[j] = s
                elif old == frequent[j]:
                    # NIST rescans every symbol from (max - 1, i - w), taking each c
                    # with (count, last position) >= the best so far: the result is
                    # the largest (count, position, c), if it reaches that start.
                    top = 0
                    for c in range(k):
                        top = max(top, (counts[j, c] << 40) | (positions[j, c] << 9) | c)
                    if (top >> 9) >= (((max_counts[j] - 1) << 31) | (i - w)):
                        max_counts[j] = top >> 40
                        frequent[j] = top & 0x1FF
                    else:
                        max_counts[j] -= 1
    return correct, length - windows[0], max_run


_multi_mcw_kernel = cast(Callable[[U8, int, I64], _Counts], _jit(_multi_mcw_py))


def multi_mcw(symbols: npt.ArrayLike, alphabet_size: int) -> float:
    """MultiMCW prediction estimate (§6.3.7): the commonest value in windows of 63 to 4095."""
    data = _symbols(symbols, alphabet_size, _MCW_WINDOWS[-1] + 1, "multi_mcw")
    windows = np.array(_MCW_WINDOWS, dtype=np.int64)
    return _prediction_estimate(*_multi_mcw_kernel(data, alphabet_size, windows), alphabet_size)


# ---------------------------------------------------------------------------
# §6.3.8 Lag prediction


def _lag_py(data: U8, depth: int) -> _Counts:
    """NIST's lag_test: (C, N, longest run).

    NIST visits the matching lags from the shortest and takes each whose new
    score reaches the high score, so after a sample the winner is the longest
    matching lag with the highest new score, if that score reaches the old
    high score (always the top of the scoreboard). Once ``depth`` samples are
    in, the scores are updated in one branch-free pass over the window, kept
    oldest first (``scores[j]`` is lag ``depth - j``; ``depth`` <= 256).
    """
    length = data.size
    scores = np.zeros(depth, dtype=np.int64)
    winner = 0  # offset: the predictor is the sample winner + 1 back
    high = 0
    correct = 0
    run = 0
    max_run = 0
    for i in range(1, length):
        s = data[i]
        if s == data[i - winner - 1]:
            correct += 1
            run += 1
            max_run = max(max_run, run)
        else:
            run = 0
        if i < depth:
            for off in range(i):
                if data[i - off - 1] == s:
                    j = depth - 1 - off
                    scores[j] += 1
                    if scores[j] >= high:
                        winner = off
                        high = scores[j]
        else:
            # max of (score << 8 | 255 - j) over the hits: the top new score, and
            # among the lags that have it the longest (smallest j)
            window = data[i - depth : i]
            top = 0
            for j in range(depth):
                hit = np.int64(window[j] == s)
                score = scores[j] + hit
                scores[j] = score
                top = max(top, hit * ((score << 8) | (255 - j)))
            best = top >> 8
            if best > 0 and best >= high:
                winner = depth - 1 - (255 - (top & 255))
                high = best
    return correct, length - 1, max_run


_lag_kernel = cast(Callable[[U8, int], _Counts], _jit(_lag_py))


def lag(symbols: npt.ArrayLike, alphabet_size: int) -> float:
    """Lag prediction estimate (§6.3.8): the best predictor "the sample d back", d = 1..128."""
    data = _symbols(symbols, alphabet_size, 3, "lag")
    return _prediction_estimate(*_lag_kernel(data, _LAG_DEPTH), alphabet_size)


# ---------------------------------------------------------------------------
# Dictionaries of (prefix, next symbol) counts for MultiMMC and LZ78Y.
#
# Binary data use flat tables: the counts of prefix x of length m are at
# offset(m) + 2x, + 0 or 1 for the next bit, offset(m) = 2^(m+1) - 4.
#
# Other alphabets use two open-addressing hash tables. The prefix table is
# sized once for the most prefixes the estimator can make (its caps), so a
# prefix's row number is fixed and names it. A row is (tag, word0, word1,
# best): the words hold 7 symbols each, the latest in the low byte of word0;
# tag = length << 16 | the 15th and 16th symbols (never 0 for a used row);
# best = count << 8 | symbol is NIST's PostfixDictionary prediction, the
# commonest next symbol, the larger on ties (a larger count << 8 | symbol wins).
# The counts of (row, next symbol) are in a second table that grows.

_H1 = 0x9E3779B97F4A7C1
_H2 = 0x2545F4914F6CDD1D
_H3 = 0x94D049BB133111E


def _prefix_table(bound: int) -> I64:
    """An empty prefix table for up to ``bound`` prefixes (load at most 3/4)."""
    rows = 16
    while 3 * rows < 4 * bound:
        rows *= 2
    return np.zeros((rows, 4), dtype=np.int64)


def _prefix_slot_py(table: I64, tag: int, w0: int, w1: int) -> int:
    """The row of a prefix, or the empty row where it would go."""
    mask = table.shape[0] - 1
    h = w0 * _H1 + w1 * _H2 + tag
    h ^= h >> 29
    h *= _H3
    h ^= h >> 32
    slot = h & mask
    while True:
        t = table[slot, 0]
        if t == 0 or (t == tag and table[slot, 1] == w0 and table[slot, 2] == w1):
            return int(slot)
        slot = (slot + 1) & mask


_prefix_slot = _jit(_prefix_slot_py)


def _add_prefix_py(table: I64, tag: int, w0: int, w1: int) -> int:
    """The row of a prefix, added if absent (the table is sized never to fill)."""
    slot = _prefix_slot(table, tag, w0, w1)
    if table[slot, 0] == 0:
        table[slot, 0] = tag
        table[slot, 1] = w0
        table[slot, 2] = w1
        table[slot, 3] = 0
    return int(slot)


_add_prefix = _jit(_add_prefix_py)


def _count_slot_py(counts: I64, key: int) -> int:
    mask = counts.shape[0] - 1
    h = key * _H1
    h ^= h >> 31
    slot = h & mask
    while counts[slot, 0] != 0 and counts[slot, 0] != key:
        slot = (slot + 1) & mask
    return int(slot)


_count_slot = _jit(_count_slot_py)


def _grow_counts_py(counts: I64) -> I64:
    new = np.zeros((2 * counts.shape[0], 2), dtype=np.int64)
    for s in range(counts.shape[0]):
        if counts[s, 0] != 0:
            slot = _count_slot(new, counts[s, 0])
            new[slot, 0] = counts[s, 0]
            new[slot, 1] = counts[s, 1]
    return new


_grow_counts = _jit(_grow_counts_py)


def _bump_py(prefixes: I64, counts: I64, row: int, symbol: int, make_new: bool) -> int:
    """NIST's incrementPostfix: count ``symbol`` after prefix ``row``; 2 if new, 1 if counted."""
    key = row * 256 + symbol + 1
    slot = _count_slot(counts, key)
    if counts[slot, 0] == key:
        counts[slot, 1] += 1
        made = 1
    elif make_new:
        counts[slot, 0] = key
        counts[slot, 1] = 1
        made = 2
    else:
        return 0
    best = (counts[slot, 1] << 8) | symbol
    if best > prefixes[row, 3]:
        prefixes[row, 3] = best
    return made


_bump = _jit(_bump_py)


# ---------------------------------------------------------------------------
# §6.3.9 MultiMMC prediction


def _multi_mmc_binary_py(data: U8, depth: int, max_entries: int) -> _Counts:
    """NIST's binaryMultiMMCPredictionEstimate: (C, N, longest run). Ties predict 1.

    The counts of every depth are read before any is used (they are
    independent), so their cache misses overlap.
    """
    length = data.size
    table = np.zeros((1 << (depth + 2)) - 4, dtype=np.int32)  # counts < 2^31 = _MAX_SAMPLES
    entries = np.zeros(depth, dtype=np.int64)
    scoreboard = np.zeros(depth, dtype=np.int64)
    at = np.zeros(depth, dtype=np.int64)
    zeros = np.zeros(depth, dtype=np.int64)
    ones = np.zeros(depth, dtype=np.int64)
    winner = 0
    correct = 0
    run = 0
    max_run = 0
    pattern = 0
    for d in range(depth):
        pattern = (pattern << 1) | (int(data[d]) & 1)
        where = (1 << (d + 2)) - 4 + ((pattern & ((1 << (d + 1)) - 1)) << 1)
        table[where + (int(data[d + 1]) & 1)] = 1
        entries[d] = 1
    pattern = 0  # the bits before the one predicted, the latest lowest
    for i in range(2, length):
        pattern = ((pattern << 1) | (int(data[i - 1]) & 1)) & ((1 << depth) - 1)
        depths = min(depth, i - 1)
        for d in range(depths):
            where = (1 << (d + 2)) - 4 + ((pattern & ((1 << (d + 1)) - 1)) << 1)
            at[d] = where
            zeros[d] = table[where]
            ones[d] = table[where + 1]
        found = False
        cur_winner = winner
        y = int(data[i]) & 1
        prediction = 0
        for d in range(depths):
            c0 = zeros[d]
            c1 = ones[d]
            if d == 0 or found:
                prediction = 0 if c0 > c1 else 1
                found = (c0 | c1) != 0
            if found:
                hit = prediction == y
                score = scoreboard[d] + hit
                scoreboard[d] = score
                winner = d if (hit & (score >= scoreboard[winner])) else winner
                if d == cur_winner:
                    if hit:
                        correct += 1
                        run += 1
                        max_run = max(max_run, run)
                    else:
                        run = 0
                seen = c1 if y else c0
                if seen != 0:
                    table[at[d] + y] = seen + 1
                elif entries[d] < max_entries:
                    table[at[d] + y] = 1
                    entries[d] += 1
            elif entries[d] < max_entries:
                table[at[d] + y] = 1
                entries[d] += 1
    return correct, length - 2, max_run


_multi_mmc_binary = cast(Callable[[U8, int, int], _Counts], _jit(_multi_mmc_binary_py))


def _multi_mmc_general_py(
    data: U8, depth: int, max_entries: int, prefixes: I64, counts: I64
) -> _Counts:
    """NIST's multi_mmc_test for alphabets above 2: (C, N, longest run).

    Per sample, the lookups of all depths come first (they read only, and
    their cache misses overlap), then NIST's predictions and updates in order.
    ``counts`` is sized for every (prefix, symbol) pair the caps allow.
    """
    length = data.size
    n = length - 2
    entries = np.zeros(depth, dtype=np.int64)
    scoreboard = np.zeros(depth, dtype=np.int64)
    tags = np.zeros(depth, dtype=np.int64)
    word0 = np.zeros(depth, dtype=np.int64)
    word1 = np.zeros(depth, dtype=np.int64)
    rows = np.zeros(depth, dtype=np.int64)
    winner = 0
    correct = 0
    run = 0
    max_run = 0
    for d in range(min(depth, n)):
        words = np.zeros(3, dtype=np.int64)
        for m in range(1, d + 2):
            words[(m - 1) // 7] |= int(data[d + 1 - m]) << (8 * ((m - 1) % 7))
        row = _add_prefix(prefixes, ((d + 1) << 16) | words[2], words[0], words[1])
        _bump(prefixes, counts, row, int(data[d + 1]), True)
        entries[d] = 1
    for i in range(2, length):
        depths = min(depth, i - 1)
        w0 = 0
        w1 = 0
        w2 = 0
        chain = 0  # depths 0..chain-1 are prefixes seen before
        for d in range(depths):
            symbol = int(data[i - d - 1])
            if d < 7:
                w0 |= symbol << (8 * d)
            elif d < 14:
                w1 |= symbol << (8 * (d - 7))
            else:
                w2 |= symbol << (8 * (d - 14))
            tags[d] = ((d + 1) << 16) | w2
            word0[d] = w0
            word1[d] = w1
            if chain == d:
                row = _prefix_slot(prefixes, tags[d], w0, w1)
                rows[d] = row
                if prefixes[row, 0] != 0:
                    chain = d + 1
        cur_winner = winner
        y = int(data[i])
        for d in range(depths):
            if d < chain:
                row = rows[d]
                if (prefixes[row, 3] & 0xFF) == y:
                    scoreboard[d] += 1
                    if scoreboard[d] >= scoreboard[winner]:
                        winner = d
                    if d == cur_winner:
                        correct += 1
                        run += 1
                        max_run = max(max_run, run)
                elif d == cur_winner:
                    run = 0
                if _bump(prefixes, counts, row, y, entries[d] < max_entries) == 2:
                    entries[d] += 1
            elif entries[d] < max_entries:
                row = _add_prefix(prefixes, tags[d], word0[d], word1[d])
                _bump(prefixes, counts, row, y, True)
                entries[d] += 1
    return correct, n, max_run


_multi_mmc_general = cast(Callable[[U8, int, int, I64, I64], _Counts], _jit(_multi_mmc_general_py))


def multi_mmc(symbols: npt.ArrayLike, alphabet_size: int) -> float:
    """MultiMMC prediction estimate (§6.3.9): Markov models of order 1..16, 100 000 entries each."""
    binary = alphabet_size == 2
    data = _symbols(symbols, alphabet_size, 4 if binary else 3, "multi_mmc")
    if binary:
        counts = _multi_mmc_binary(data, _MMC_DEPTH, _MMC_MAX_ENTRIES)
    else:
        counts = _multi_mmc_generic(data, alphabet_size, _MMC_DEPTH, _MMC_MAX_ENTRIES)
    return _prediction_estimate(*counts, alphabet_size)


def _multi_mmc_generic(data: U8, k: int, depth: int, max_entries: int) -> _Counts:
    """MultiMMC on any alphabet, with a prefix table for the most prefixes it can make."""
    prefixes = sum(min(max_entries, data.size, k ** (d + 1)) for d in range(depth))
    pairs = sum(min(max_entries, data.size, k ** (d + 2)) for d in range(depth))
    rows = 16
    while 3 * rows < 4 * pairs:
        rows *= 2
    counts = np.zeros((rows, 2), dtype=np.int64)
    return _multi_mmc_general(data, depth, max_entries, _prefix_table(prefixes), counts)


# ---------------------------------------------------------------------------
# §6.3.10 LZ78Y prediction


def _lz78y_binary_py(data: U8, b: int, max_dict: int) -> _Counts:
    """NIST's binaryLZ78YPredictionEstimate: (C, N, longest run). Ties predict 1.

    As in MultiMMC, the counts of every prefix length are read up front.
    """
    length = data.size
    table = np.zeros((1 << (b + 2)) - 4, dtype=np.int32)  # counts < 2^31 = _MAX_SAMPLES
    at = np.zeros(b + 1, dtype=np.int64)
    zeros = np.zeros(b + 1, dtype=np.int64)
    ones = np.zeros(b + 1, dtype=np.int64)
    size = 0
    correct = 0
    run = 0
    max_run = 0
    pattern = 0
    for j in range(b):
        pattern |= (int(data[b - j - 1]) & 1) << j
        where = (1 << (j + 2)) - 4 + ((pattern & ((1 << (j + 1)) - 1)) << 1)
        table[where + (int(data[b]) & 1)] = 1
        size += 1
    full = 0  # the b bits before the one predicted, the latest lowest
    for j in range(b):
        full = (full << 1) | (int(data[j]) & 1)
    for i in range(b + 1, length):
        full = ((full << 1) | (int(data[i - 1]) & 1)) & ((1 << b) - 1)
        for j in range(1, b + 1):
            where = (1 << (j + 1)) - 4 + ((full & ((1 << j) - 1)) << 1)
            at[j] = where
            zeros[j] = table[where]
            ones[j] = table[where + 1]
        have = False
        prediction = 2
        max_count = 0
        y = int(data[i]) & 1
        for j in range(b, 0, -1):
            c0 = zeros[j]
            c1 = ones[j]
            count = max(c0, c1)
            if count != 0:
                if count > max_count:
                    max_count = count
                    have = True
                    prediction = 0 if c0 > c1 else 1
                table[at[j] + y] += 1
            elif size < max_dict:
                table[at[j] + y] = 1
                size += 1
        if have and prediction == y:
            correct += 1
            run += 1
            max_run = max(max_run, run)
        else:
            run = 0
    return correct, length - b - 1, max_run


_lz78y_binary = cast(Callable[[U8, int, int], _Counts], _jit(_lz78y_binary_py))


def _lz78y_general_py(data: U8, b: int, max_dict: int, prefixes: I64) -> _Counts:
    """NIST's LZ78Y_test for alphabets above 2: (C, N, longest run).

    Per sample, the lookups of all prefix lengths come first (read only, so
    their cache misses overlap), then NIST's prediction and updates in order.
    """
    length = data.size
    counts = np.zeros((1 << 12, 2), dtype=np.int64)
    filled = 0
    tags = np.zeros(b + 1, dtype=np.int64)
    word0 = np.zeros(b + 1, dtype=np.int64)
    word1 = np.zeros(b + 1, dtype=np.int64)
    rows = np.zeros(b + 1, dtype=np.int64)
    size = 0
    correct = 0
    run = 0
    max_run = 0
    for j in range(1, b + 1):
        words = np.zeros(3, dtype=np.int64)
        for m in range(1, j + 1):
            words[(m - 1) // 7] |= int(data[b - m]) << (8 * ((m - 1) % 7))
        row = _add_prefix(prefixes, (j << 16) | words[2], words[0], words[1])
        filled += _bump(prefixes, counts, row, int(data[b]), True) >> 1
        size += 1
    for i in range(b + 1, length):
        w0 = 0
        w1 = 0
        w2 = 0
        for m in range(1, b + 1):
            symbol = int(data[i - m])
            if m <= 7:
                w0 |= symbol << (8 * (m - 1))
            elif m <= 14:
                w1 |= symbol << (8 * (m - 8))
            else:
                w2 |= symbol << (8 * (m - 15))
            tags[m] = (m << 16) | w2
            word0[m] = w0
            word1[m] = w1
        have = False
        prediction = 0
        max_count = 0
        y = int(data[i])
        for j in range(1, b + 1):
            row = _prefix_slot(prefixes, tags[j], word0[j], word1[j])
            rows[j] = row if prefixes[row, 0] != 0 else -1
        for j in range(b, 0, -1):
            row = rows[j]
            if row >= 0:
                best = prefixes[row, 3]
                if (best >> 8) > max_count:
                    max_count = best >> 8
                    prediction = best & 0xFF
                    have = True
                filled += _bump(prefixes, counts, row, y, True) >> 1
            elif size < max_dict:
                row = _add_prefix(prefixes, tags[j], word0[j], word1[j])
                filled += _bump(prefixes, counts, row, y, True) >> 1
                size += 1
            if 2 * filled > counts.shape[0]:
                counts = _grow_counts(counts)
        if have and prediction == y:
            correct += 1
            run += 1
            max_run = max(max_run, run)
        else:
            run = 0
    return correct, length - b - 1, max_run


_lz78y_general = cast(Callable[[U8, int, int, I64], _Counts], _jit(_lz78y_general_py))


def lz78y(symbols: npt.ArrayLike, alphabet_size: int) -> float:
    """LZ78Y prediction estimate (§6.3.10): an LZ78-like dictionary of prefixes up to 16 symbols."""
    binary = alphabet_size == 2
    data = _symbols(symbols, alphabet_size, _LZ78Y_B + (3 if binary else 2), "lz78y")
    if binary:
        counts = _lz78y_binary(data, _LZ78Y_B, _LZ78Y_MAX_DICT)
    else:
        counts = _lz78y_generic(data, _LZ78Y_B, _LZ78Y_MAX_DICT)
    return _prediction_estimate(*counts, alphabet_size)


def _lz78y_generic(data: U8, b: int, max_dict: int) -> _Counts:
    """LZ78Y on any alphabet, with a prefix table for the most prefixes it can make."""
    return _lz78y_general(data, b, max_dict, _prefix_table(min(max_dict, b * data.size)))


# ---------------------------------------------------------------------------
# The assessment (§3.1.3, ea_non_iid -i)

_ESTIMATORS: dict[str, Callable[[U8, int], float]] = {
    "most_common_value": most_common_value,
    "collision": collision,
    "markov": markov,
    "compression": compression,
    "multi_mcw": multi_mcw,
    "lag": lag,
    "multi_mmc": multi_mmc,
    "lz78y": lz78y,
}


@dataclass(frozen=True)
class NonIidResult:
    """The §6.3 estimates of one data set, in bits.

    ``estimators`` are per sample, on the samples (translated to their
    alphabet, as NIST does); ``bitstring_estimators`` per bit, on the bitstring
    of multi-valued samples, else None. An estimator the data cannot support
    (too few samples; no tuple repeated 35 times) is left out, as NIST leaves
    it out. ``h_original`` is the least of ``estimators`` (per sample),
    ``h_bitstring`` the least of ``bitstring_estimators`` (per bit), or
    ``h_original`` when there is no bitstring. NIST's assessed entropy per
    sample is ``min(h_original, bits_per_symbol * h_bitstring)``.
    """

    estimators: dict[str, float]
    bitstring_estimators: dict[str, float] | None
    h_original: float
    h_bitstring: float


def _run_all(data: U8, alphabet_size: int, names: tuple[str, ...]) -> dict[str, float]:
    """Every estimator of ``names`` that applies, in ESTIMATOR_NAMES order."""
    results: dict[str, float] = {}
    tuples: _Tuples | None = None
    for name in names:
        try:
            if name in ("t_tuple", "lrs"):
                if tuples is None:
                    tuples = _tuples(data, alphabet_size)
                pick = _t_tuple_from if name == "t_tuple" else _lrs_from
                results[name] = pick(tuples, _TUPLE_CUTOFF)
            else:
                results[name] = _ESTIMATORS[name](data, alphabet_size)
        except _NotApplicable:
            continue
    return results


def non_iid_assessment(
    symbols: NDArray[np.uint8], bits_per_symbol: int, *, truncate_bitstring: bool = False
) -> NonIidResult:
    """The initial entropy estimate of a non-IID source (§3.1.3; ``ea_non_iid -i``).

    ``symbols`` holds one sample per element, each a ``bits_per_symbol``-bit
    value. As NIST's tool does: the values present are translated onto
    0..k-1 (k distinct values); all ten estimators run on them when k = 2, all
    but the binary-only ones (§6.3.2-§6.3.4) when k > 2. When k > 2 the samples
    are also expanded into their bitstring (``to_bitstring``, all of it; or its
    first 1 000 000 bits with ``truncate_bitstring``, NIST's ``-t``) and all ten
    run on that. Data of one value only get 0 from every estimator (NIST
    stops: "No entropy awarded").
    """
    samples = _samples(symbols, bits_per_symbol)
    data, k = map_to_alphabet(samples)
    if k < 2:
        zeros = dict.fromkeys(ESTIMATOR_NAMES, 0.0)
        return NonIidResult(zeros, None, 0.0, 0.0)
    names = ESTIMATOR_NAMES if k == 2 else tuple(n for n in ESTIMATOR_NAMES if n not in BINARY_ONLY)
    estimators = _run_all(data, k, names)
    h_original = min([float(bits_per_symbol), *estimators.values()])
    if k == 2:
        return NonIidResult(estimators, None, h_original, h_original)
    bits = to_bitstring(samples, bits_per_symbol)
    if truncate_bitstring:
        bits = bits[:_BITSTRING_CAP]
    bitstring = _run_all(bits, 2, ESTIMATOR_NAMES)
    h_bitstring = min([1.0, *bitstring.values()])
    return NonIidResult(estimators, bitstring, h_original, h_bitstring)
