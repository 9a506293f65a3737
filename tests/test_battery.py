"""The SP 800-22 battery (quantumrng.battery): known answers, internals, power, false alarms.

Known answers are the worked examples of NIST SP 800-22 Rev. 1a: each section's small
example, and the figures for the first million bits of the binary expansion of e
(the §2.x.8 examples and the e column of Appendix B). The expansion of e is computed
here, not read from a file.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from quantumrng import battery
from quantumrng.battery import Bits, TestResult

MILLION = 1_000_000


def bits(text: str) -> Bits:
    return np.frombuffer(text.encode(), dtype=np.uint8) - ord("0")


@functools.cache
def e_bits(n: int) -> Bits:
    """The first n bits of e = 10.10110111111...b (integer part included, as the
    reference code's data/data.e has them): Σ 1/k! by binary splitting."""
    terms, log2_fact = 2, 1.0
    while log2_fact < n + 64:
        terms += 1
        log2_fact += math.log2(terms)

    def split(a: int, b: int) -> tuple[int, int]:  # Σ_{a<k≤b} a!/k! as p/q, q = b!/a!
        if b - a == 1:
            return 1, b
        mid = (a + b) // 2
        p1, q1 = split(a, mid)
        p2, q2 = split(mid, b)
        return p1 * q2 + p2, q1 * q2

    p, q = split(0, terms)
    digits = bin(((q + p) << (n + 64)) // q)[2:]
    return bits(digits[:n])


#: §2.1.8 etc.: ε, the first 100 bits of the binary expansion of π.
PI_100 = bits(
    "1100100100001111110110101010001000100001011010001100001000110100"
    "110001001100011001100010100010111000"
)
#: §2.4.8: the 128-bit example.
LONGEST_128 = bits(
    "11001100000101010110110001001100111000000000001001001101010100010001001111010110"
    "100000001101011111001100111001101101100010110010"
)


def overlapping_pi_reference(m: int, block: int, classes: int) -> tuple[float, ...]:
    """The reference code's (sts 2.1.2) approximate §2.8 class probabilities, which
    produced the figures printed for e: Pr(u) for u < K, the rest to K."""
    eta = (block - m + 1) / 2**m / 2

    def pr(u: int) -> float:
        if u == 0:
            return math.exp(-eta)
        return sum(
            math.exp(
                -eta
                - u * math.log(2)
                + ell * math.log(eta)
                - math.lgamma(ell + 1)
                + math.lgamma(u)
                - math.lgamma(ell)
                - math.lgamma(u - ell + 1)
            )
            for ell in range(1, u + 1)
        )

    pis = [pr(u) for u in range(classes)]
    return (*pis, 1 - sum(pis))


#: The reference code's §2.10 probabilities (0.01047 where 1/96 = 0.0104167 is meant).
LINEAR_PI_REFERENCE = (0.01047, 0.03125, 0.125, 0.5, 0.25, 0.0625, 0.020833)


def test_e_bits_are_the_binary_expansion_of_e() -> None:
    assert "".join(map(str, e_bits(40))) == "1010110111111000010101000101100010100010"
    assert int("".join(map(str, e_bits(64))), 2) / 2**62 == pytest.approx(math.e, rel=1e-15)


# Small worked examples (§2.x.4 and §2.x.8 with short ε) ----------------------------

SMALL_EXAMPLES: list[tuple[str, Callable[[], tuple[float, ...]], tuple[float, ...]]] = [
    ("2.1.4", lambda: battery.frequency(bits("1011010101")), (0.527089,)),
    ("2.1.8", lambda: battery.frequency(PI_100), (0.109599,)),
    ("2.2.4", lambda: battery.block_frequency(bits("0110011010"), 3), (0.801252,)),
    ("2.2.8", lambda: battery.block_frequency(PI_100, 10), (0.706438,)),
    ("2.3.4", lambda: battery.runs(bits("1001101011")), (0.147232,)),
    ("2.3.8", lambda: battery.runs(PI_100), (0.500798,)),
    ("2.4.8", lambda: battery.longest_run_of_ones(LONGEST_128), (0.180609,)),
    (
        "2.7.4",
        lambda: battery.non_overlapping_template(bits("10100100101110010110"), 3, (0b001,), 2),
        (0.344154,),
    ),
    ("2.11.4", lambda: battery.serial(bits("0011011101"), 3), (0.808792, 0.670320)),
    ("2.12.4", lambda: battery.approximate_entropy(bits("0100110101"), 3), (0.261961,)),
    ("2.12.8", lambda: battery.approximate_entropy(PI_100, 2), (0.235301,)),
    ("2.13.8", lambda: battery.cumulative_sums(PI_100), (0.219194, 0.114866)),
]


@pytest.mark.parametrize(
    ("example", "compute", "expected"), SMALL_EXAMPLES, ids=[e[0] for e in SMALL_EXAMPLES]
)
def test_worked_examples_of_each_section(
    example: str, compute: Callable[[], tuple[float, ...]], expected: tuple[float, ...]
) -> None:
    assert compute() == pytest.approx(expected, abs=1e-6)


def test_cusum_worked_example_forward() -> None:
    """§2.13.4 prints 0.4116588 from a rounded intermediate; the forward p-value."""
    assert battery.cumulative_sums(bits("1011010111"))[0] == pytest.approx(0.4116588, abs=1e-6)


# The first million bits of e (§2.x.8 and Appendix B) ------------------------------------

E_EXAMPLES: list[tuple[str, Callable[[Bits], tuple[float, ...]], tuple[float, ...]]] = [
    ("2.1 frequency", battery.frequency, (0.953749,)),
    ("2.2 block frequency M=128", lambda b: battery.block_frequency(b, 128), (0.211072,)),
    ("2.3 runs", battery.runs, (0.561917,)),
    ("2.4 longest run", battery.longest_run_of_ones, (0.718945,)),
    ("2.5 rank", battery.binary_matrix_rank, (0.306156,)),
    ("2.6 dft", battery.spectral, (0.847187,)),
    (
        "2.7 non-overlapping B=000000001",
        lambda b: battery.non_overlapping_template(b)[:1],
        (0.078790,),
    ),
    (
        "2.8 overlapping (reference probabilities)",
        lambda b: battery.overlapping_template(
            b, probabilities=overlapping_pi_reference(9, 1032, 5)
        ),
        (0.110434,),
    ),
    ("2.9 universal", battery.maurers_universal, (0.282568,)),
    (
        "2.10 linear complexity M=500 (reference probabilities)",
        lambda b: battery.linear_complexity(b, 500, LINEAR_PI_REFERENCE),
        (0.826335,),
    ),
    (
        "2.10.8 linear complexity M=1000 (reference probabilities)",
        lambda b: battery.linear_complexity(b, 1000, LINEAR_PI_REFERENCE),
        (0.845406,),
    ),
    ("2.11 serial m=16", lambda b: battery.serial(b, 16)[:1], (0.766182,)),
    ("2.11.8 serial m=2", lambda b: battery.serial(b, 2), (0.843764, 0.561915)),
    ("2.12 approximate entropy m=10", lambda b: battery.approximate_entropy(b, 10), (0.700073,)),
    ("2.13 cumulative sums", battery.cumulative_sums, (0.669887, 0.724266)),
    (
        "2.14.8 random excursions",
        battery.random_excursions,
        (0.573306, 0.197996, 0.164011, 0.007779, 0.786868, 0.440912, 0.797854, 0.778186),
    ),
    (
        "2.15.8 random excursions variant",
        battery.random_excursions_variant,
        # x = -9 .. -1, 1 .. 9
        (
            *(0.858946, 0.794755, 0.576249, 0.493417, 0.633873, 0.917283, 0.934708),
            *(0.816012, 0.826009, 0.137861, 0.200642, 0.441254, 0.939291, 0.505683),
            *(0.445935, 0.512207, 0.538635, 0.593930),
        ),
    ),
]


@pytest.mark.parametrize(
    ("test", "compute", "expected"), E_EXAMPLES, ids=[e[0] for e in E_EXAMPLES]
)
def test_million_bits_of_e(
    test: str, compute: Callable[[Bits], tuple[float, ...]], expected: tuple[float, ...]
) -> None:
    assert compute(e_bits(MILLION)) == pytest.approx(expected, abs=1.01e-6)


def test_rank_on_100000_bits_of_e() -> None:
    """§2.5.8."""
    assert battery.binary_matrix_rank(e_bits(100_000)) == pytest.approx((0.532069,), abs=1e-6)


def test_the_battery_s_own_probabilities_on_e() -> None:
    """With the exact §2.10 probabilities (1/96, ...) and the exact §2.8 table the
    battery uses, in place of the reference code's, the same bits give these."""
    e = e_bits(MILLION)
    assert battery.linear_complexity(e) == pytest.approx((0.826202,), abs=1e-6)
    assert battery.overlapping_template(e) == pytest.approx((0.159027,), abs=1e-6)


# Internals against plain loops ----------------------------------------------------------


def linear_complexity_loop(s: list[int]) -> int:
    """Berlekamp-Massey over GF(2), textbook form."""
    n = len(s)
    c, b = [1] + [0] * n, [1] + [0] * n
    length, m = 0, -1
    for i in range(n):
        d = s[i]
        for j in range(1, length + 1):
            d ^= c[j] & s[i - j]
        if d:
            t = c[:]
            for j in range(n - i + m):
                c[i - m + j] ^= b[j]
            if 2 * length <= i:
                length, m, b = i + 1 - length, i, t
    return length


def rank_loop(rows: list[int]) -> int:
    rank = 0
    rows = rows[:]
    while rows:
        pivot = rows.pop()
        if pivot:
            rank += 1
            low = pivot & -pivot
            rows = [r ^ pivot if r & low else r for r in rows]
    return rank


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=12))
def test_vectorised_berlekamp_massey_agrees_with_the_textbook(blocks: list[bytes]) -> None:
    rows = np.stack([battery.bits_of(b) for b in blocks])
    rows[0, :] = 0  # degenerate rows too
    if len(blocks) > 1:
        rows[1, :-1] = 0
    got = battery._linear_complexities(rows)
    assert list(got) == [linear_complexity_loop(list(map(int, r))) for r in rows]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(min_size=128, max_size=128), min_size=1, max_size=8), st.data())
def test_vectorised_rank_agrees_with_elimination(blocks: list[bytes], data: st.DataObject) -> None:
    words = np.frombuffer(b"".join(blocks), dtype=">u4").reshape(-1, 32).astype(np.uint32)
    copy = data.draw(st.integers(0, 31))
    words[:, copy] = words[:, 0]  # a repeated row, so ranks below 32 occur
    got = battery._gf2_ranks(words, 32)
    assert list(got) == [rank_loop([int(w) for w in row]) for row in words]


def test_aperiodic_template_sets_match_the_reference_code() -> None:
    assert battery.aperiodic_templates(2) == (0b01, 0b10)
    assert battery.aperiodic_templates(3) == (0b001, 0b011, 0b100, 0b110)
    assert len(battery.aperiodic_templates(9)) == 148  # the reference code's template9
    assert len(battery.aperiodic_templates(10)) == 284


def test_non_overlapping_counts_are_scanned_without_overlap() -> None:
    """A sequential §2.7 scan (skip m after a match) on random bits gives the same p."""
    sample = battery.bits_of(os.urandom(4096))
    m, blocks, template = 9, 8, battery.aperiodic_templates(9)[5]
    block = sample.size // blocks
    pattern = [int(c) for c in format(template, "09b")]
    counts = []
    for j in range(blocks):
        row, i, w = list(sample[j * block : (j + 1) * block]), 0, 0
        while i <= block - m:
            if row[i : i + m] == pattern:
                w, i = w + 1, i + m
            else:
                i += 1
        counts.append(w)
    mu = (block - m + 1) / 2**m
    var = block * (1 / 2**m - (2 * m - 1) / 2 ** (2 * m))
    chi2 = sum((w - mu) ** 2 for w in counts) / var
    expected = stats.chi2.sf(chi2, blocks)
    got = battery.non_overlapping_template(sample, m, (template,), blocks)
    assert got == pytest.approx((expected,), rel=1e-9)


# The battery: shape, skips, pass rule -----------------------------------------------------


def test_run_covers_sections_2_1_to_2_15_in_order() -> None:
    results = battery.run(os.urandom(MILLION // 8))
    assert [r.section for r in results] == [f"2.{i}" for i in range(1, 16)]
    assert len({r.name for r in results}) == 15
    for r in results:
        if r.skipped is None:
            assert r.p_values and (not r.labels or len(r.labels) == len(r.p_values))
    by_name = {r.name: r for r in results}
    assert len(by_name["non_overlapping_template"].p_values) == 148
    assert by_name["cumulative_sums"].labels == ("forward", "backward")
    assert by_name["serial"].parameters == "m=16"


def test_short_input_skips_tests_with_their_minimum() -> None:
    results = {r.name: r for r in battery.run(os.urandom(1000))}  # 8,000 bits
    ran = {name for name, r in results.items() if r.skipped is None}
    assert ran == {
        "frequency",
        "block_frequency",
        "runs",
        "longest_run",
        "dft",
        "serial",
        "approximate_entropy",
        "cumulative_sums",
    }
    rank = results["rank"]
    assert rank.skipped == "needs at least 38,912 bits, got 8,000"
    assert rank.p_values == () and rank.passed and rank.min_p_value is None


def test_excursions_skip_when_the_walk_has_fewer_than_500_cycles() -> None:
    drift = np.random.default_rng(1).random(MILLION) < 0.502  # walks away from zero
    data = np.packbits(drift.astype(np.uint8)).tobytes()
    results = {r.name: r for r in battery.run(data)}
    for name in ("random_excursions", "random_excursions_variant"):
        reason = results[name].skipped
        assert reason is not None and "cycles, fewer than 500" in reason


def test_a_test_passes_when_each_p_value_clears_alpha_over_their_number() -> None:
    rng = np.random.default_rng(7)
    data = rng.bytes(MILLION // 8)
    for r in battery.run(data, alpha=0.5):
        if r.skipped is None:
            assert r.passed == (min(r.p_values) >= 0.5 / len(r.p_values))
    assert not all(r.passed for r in battery.run(data, alpha=1.0))


def test_the_battery_runs_a_million_bits_in_seconds() -> None:
    import time

    data = os.urandom(MILLION // 8)
    start = time.perf_counter()
    battery.run(data)
    assert time.perf_counter() - start < 10  # bench/battery.py measures it properly


# Properties -------------------------------------------------------------------------------

PURE: list[tuple[str, Callable[[Bits], tuple[float, ...]], int]] = [
    ("frequency", battery.frequency, 1),
    ("block_frequency", lambda b: battery.block_frequency(b, 8), 8),
    ("runs", battery.runs, 2),
    ("longest_run", battery.longest_run_of_ones, 128),
    ("rank", lambda b: battery.binary_matrix_rank(b, 4, 4), 16),
    ("dft", battery.spectral, 2),
    ("non_overlapping", lambda b: battery.non_overlapping_template(b, 3, blocks=2), 8),
    ("overlapping", lambda b: battery.overlapping_template(b, 2, 10, (0.3, 0.2, 0.5)), 10),
    ("universal", lambda b: battery.maurers_universal(b, 2, 4), 16),
    ("linear_complexity", lambda b: battery.linear_complexity(b, 16), 16),
    ("serial", lambda b: battery.serial(b, 3), 8),
    ("approximate_entropy", lambda b: battery.approximate_entropy(b, 2), 8),
    ("cumulative_sums", battery.cumulative_sums, 1),
]

bit_arrays = st.one_of(
    st.binary(min_size=16, max_size=512).map(battery.bits_of),
    st.tuples(st.integers(0, 1), st.integers(128, 4096)).map(
        lambda t: np.full(t[1], t[0], dtype=np.uint8)
    ),
    st.tuples(st.integers(1, 64), st.integers(128, 4096)).map(
        lambda t: (np.arange(t[1]) // t[0] % 2).astype(np.uint8)
    ),
)


@pytest.mark.parametrize(("name", "test", "least"), PURE, ids=[p[0] for p in PURE])
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(sample=bit_arrays)
def test_p_values_lie_in_the_unit_interval(
    name: str, test: Callable[[Bits], tuple[float, ...]], least: int, sample: Bits
) -> None:
    if sample.size < least:
        return
    for p in test(sample):
        assert 0.0 <= p <= 1.0, (name, p)


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=6000))
def test_run_on_any_bytes_gives_p_values_or_a_reason(data: bytes) -> None:
    for r in battery.run(data):
        assert isinstance(r, TestResult)
        if r.skipped is None:
            assert r.p_values and all(0.0 <= p <= 1.0 for p in r.p_values)
        else:
            assert r.p_values == () and r.passed


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 4096))
def test_excursion_tests_are_not_applicable_to_a_periodic_walk(period: int) -> None:
    """An alternating or periodic sequence revisits zero constantly but never strays:
    excursion tests must either say so or report p-values in [0, 1]."""
    sample = (np.arange(MILLION) // period % 2).astype(np.uint8)
    for test in (battery.random_excursions, battery.random_excursions_variant):
        try:
            ps = test(sample)
        except battery.NotApplicable:
            continue
        assert all(0.0 <= p <= 1.0 for p in ps)


# Power: flawed controls fail the tests that should catch them ----------------------------


def lfsr_bits(n: int, seed: int) -> Bits:
    """x^31 + x^28 + 1 (primitive): linear complexity 31 everywhere."""
    out = np.zeros(n + 31, dtype=np.uint8)
    out[:31] = battery.bits_of(seed.to_bytes(4, "big"))[:31] | np.eye(1, 31, 0, dtype=np.uint8)[0]
    for t in range(31, n + 31, 28):
        end = min(t + 28, n + 31)
        out[t:end] = out[t - 31 : end - 31] ^ out[t - 28 : end - 28]
    return out[31:]


def flawed(flaw: str) -> bytes:
    rng = np.random.default_rng(20261203)
    if flaw == "bias":  # P(1) = 0.51
        sample = (rng.random(MILLION) < 0.51).astype(np.uint8)
    elif flaw == "stuck_bit":  # the last bit of every byte stuck at 1
        sample = battery.bits_of(rng.bytes(MILLION // 8))
        sample[7::8] = 1
    elif flaw == "stuck_pattern":  # one byte in 16 stuck at 0x5a
        arr = np.frombuffer(bytearray(rng.bytes(MILLION // 8)), dtype=np.uint8).copy()
        arr[::16] = 0x5A
        sample = np.unpackbits(arr)
    elif flaw == "short_period":  # 2,048 random bytes over and over
        sample = np.tile(battery.bits_of(rng.bytes(2048)), MILLION // (2048 * 8) + 1)[:MILLION]
    elif flaw == "lcg_low_bit":  # the low bit of x -> 69069 x + 1 mod 2^32 (period 2)
        x = np.empty(MILLION, dtype=np.uint64)
        x[0] = 12345
        for i in range(1, 64):
            x[i] = (69069 * int(x[i - 1]) + 1) % 2**32
        x = np.resize(x[:64], MILLION)
        sample = (x & np.uint64(1)).astype(np.uint8)
    elif flaw == "lfsr":
        sample = lfsr_bits(MILLION, 0x2545F491)
    else:
        raise AssertionError(flaw)
    return np.packbits(sample).tobytes()


@pytest.mark.parametrize(
    ("flaw", "caught_by"),
    [
        ("bias", {"frequency", "cumulative_sums", "block_frequency"}),
        ("stuck_bit", {"frequency", "dft", "serial", "approximate_entropy"}),
        ("stuck_pattern", {"non_overlapping_template", "serial", "approximate_entropy"}),
        ("short_period", {"serial", "approximate_entropy", "non_overlapping_template"}),
        ("lcg_low_bit", {"runs", "dft", "serial", "longest_run"}),
        ("lfsr", {"linear_complexity", "rank"}),
    ],
)
def test_flawed_generators_fail_the_tests_that_should_catch_them(
    flaw: str, caught_by: set[str]
) -> None:
    failed = {r.name for r in battery.run(flawed(flaw)) if not r.passed}
    assert caught_by <= failed


@settings(max_examples=8, deadline=None)
@given(st.floats(0.505, 0.6), st.booleans(), st.integers(0, 2**32))
def test_any_bias_fails_frequency_and_cusums(bias: float, ones: bool, seed: int) -> None:
    draws = np.random.default_rng(seed).random(MILLION) < bias
    sample = (draws if ones else ~draws).astype(np.uint8)
    assert battery.frequency(sample)[0] < 1e-6
    assert max(battery.cumulative_sums(sample)) < 1e-6


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 4096), st.integers(0, 2**32))
def test_any_repetition_within_4_kib_fails_serial(period: int, seed: int) -> None:
    block = battery.bits_of(np.random.default_rng(seed).bytes(period))
    sample = np.tile(block, MILLION // block.size + 1)[:MILLION]
    assert max(battery.serial(sample, 16)) < 1e-6


# False alarms: good output passes at the expected rate -----------------------------------


def test_os_urandom_fails_at_most_the_expected_rate() -> None:
    """40 samples of 100,000 bits: each of the ten tests that run falsely fails at most
    1 % of the time, so more than 14 failures in the 400 (test, sample) pairs has
    probability 2e-5. The p-values of the one-p-value tests whose statistic is not
    coarsely discrete (not rank, not longest run) are also uniform (Kolmogorov-Smirnov
    at 1e-4)."""
    failures, continuous = 0, list[float]()
    for _ in range(40):
        for r in battery.run(os.urandom(12_500)):
            if r.skipped is None:
                failures += not r.passed
                if len(r.p_values) == 1 and r.name not in {"rank", "longest_run"}:
                    continuous.extend(r.p_values)
    assert failures <= 14
    assert stats.kstest(continuous, "uniform").pvalue > 1e-4


def test_os_urandom_passes_the_whole_battery_on_a_million_bits() -> None:
    """Four runs of all fifteen tests: at most 60 x 1 % expected false failures, so
    more than 6 has probability 2.4e-6."""
    results = [r for _ in range(4) for r in battery.run(os.urandom(MILLION // 8))]
    assert sum(not r.passed for r in results) <= 6
