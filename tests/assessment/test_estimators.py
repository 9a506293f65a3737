"""SP 800-90B non-IID estimators (§6.3), held to NIST's ea_non_iid on deterministic data sets.

The figures in ``reference/non_iid/`` are NIST's own output for the data sets
of ``datasets.py`` (see its README): every estimator, on the samples and on
their bitstring, must agree within NIST's printed precision, and the integers
NIST printed (modes, collision counts, tuple lengths, predictor hits and runs)
exactly.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quantumrng.assessment import estimators as est
from quantumrng.assessment.estimators import (
    BINARY_ONLY,
    ESTIMATOR_NAMES,
    NonIidResult,
    map_to_alphabet,
    non_iid_assessment,
    to_bitstring,
)

from . import datasets

REFERENCE = Path(__file__).parent / "reference" / "non_iid"
#: NIST prints its summary with 6 decimals; our figures agree to ~1e-13.
TOLERANCE = 1e-6

FAST = [d.name for d in datasets.DATASETS if not d.slow]
SLOW = [d.name for d in datasets.DATASETS if d.slow]
ALL = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in FAST + SLOW]


def reference(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((REFERENCE / f"{name}.json").read_text())
    return result


@functools.cache
def symbols(name: str) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return datasets.BY_NAME[name].symbols()


@functools.cache
def assessed(name: str, truncate: bool = False) -> NonIidResult:
    data = datasets.BY_NAME[name]
    return non_iid_assessment(symbols(name), data.bits_per_symbol, truncate_bitstring=truncate)


def mismatches(ours: dict[str, float] | None, theirs: dict[str, Any] | None) -> list[str]:
    if theirs is None:
        return [] if ours is None else ["we have a bitstring assessment, NIST has none"]
    if ours is None:
        return ["NIST has a bitstring assessment, we have none"]
    if set(ours) != set(theirs):
        return [f"estimators differ: ours {sorted(ours)}, NIST {sorted(theirs)}"]
    return [
        f"{name}: ours {ours[name]!r}, NIST {figures['min_entropy']!r}"
        for name, figures in theirs.items()
        if not abs(ours[name] - figures["min_entropy"]) <= TOLERANCE
    ]


# ---------------------------------------------------------------------------
# Agreement with NIST


@pytest.mark.parametrize("name", ALL)
def test_the_generator_still_makes_the_bytes_nist_assessed(name: str) -> None:
    ref = reference(name)
    assert symbols(name).size == ref["samples"]
    assert datasets.sha256(symbols(name)) == ref["sha256"]


@pytest.mark.parametrize("name", ALL)
def test_every_estimate_agrees_with_nist(name: str) -> None:
    ref = reference(name)
    result = assessed(name)
    problems = mismatches(result.estimators, ref["original"])
    problems += [
        f"bitstring {p}" for p in mismatches(result.bitstring_estimators, ref["bitstring"])
    ]
    assert not problems, "\n".join(problems)
    assert result.h_original == pytest.approx(ref["h_original"], abs=TOLERANCE)
    if ref["h_bitstring"] is not None:
        assert result.h_bitstring == pytest.approx(ref["h_bitstring"], abs=TOLERANCE)
        bits = ref["bits_per_symbol"]
        assessed_min = min(result.h_original, bits * result.h_bitstring)
        assert assessed_min == pytest.approx(ref["assessed"], abs=bits * TOLERANCE)
    else:
        assert result.h_bitstring == result.h_original
        assert result.h_original == pytest.approx(ref["assessed"], abs=TOLERANCE)


@pytest.mark.slow
def test_the_truncated_bitstring_agrees_with_nist_t() -> None:
    ref = reference("byte_uniform_1m_truncated")
    result = assessed("byte_uniform_1m", truncate=True)
    problems = mismatches(result.estimators, ref["original"])
    problems += [
        f"bitstring {p}" for p in mismatches(result.bitstring_estimators, ref["bitstring"])
    ]
    assert not problems, "\n".join(problems)
    assert result.h_bitstring == pytest.approx(ref["h_bitstring"], abs=TOLERANCE)


PREDICTORS = ("multi_mcw", "lag", "multi_mmc", "lz78y")


def counts(data: np.ndarray[Any, np.dtype[np.uint8]], k: int, name: str) -> tuple[int, int, int]:
    """A predictor's (C, N, longest run) from its kernel, as NIST prints them (r = run + 1)."""
    if name == "multi_mcw":
        result = est._multi_mcw_kernel(data, k, np.array(est._MCW_WINDOWS, dtype=np.int64))
    elif name == "lag":
        result = est._lag_kernel(data, est._LAG_DEPTH)
    elif name == "multi_mmc":
        if k == 2:
            result = est._multi_mmc_binary(data, est._MMC_DEPTH, est._MMC_MAX_ENTRIES)
        else:
            result = est._multi_mmc_generic(data, k, est._MMC_DEPTH, est._MMC_MAX_ENTRIES)
    elif k == 2:
        result = est._lz78y_binary(data, est._LZ78Y_B, est._LZ78Y_MAX_DICT)
    else:
        result = est._lz78y_generic(data, est._LZ78Y_B, est._LZ78Y_MAX_DICT)
    correct, n, run = result
    return correct, n, run + 1


@pytest.mark.parametrize(
    ("name", "part"),
    [(n, "original") for n in ("binary_uniform", "binary_biased", "binary_markov", "nibble_sparse")]
    + [("nibble_sparse", "bitstring"), ("byte_two_valued", "original")],
)
def test_predictor_counts_are_nists(name: str, part: str) -> None:
    ref = reference(name)[part]
    data, k = map_to_alphabet(symbols(name))
    if part == "bitstring":
        data, k = to_bitstring(symbols(name), datasets.BY_NAME[name].bits_per_symbol), 2
    for predictor in PREDICTORS:
        nist = ref[predictor]
        assert counts(data, k, predictor) == (nist["C"], nist["N"], nist["r"]), predictor


@pytest.mark.parametrize("name", FAST)
def test_modes_collisions_and_tuple_lengths_are_nists(name: str) -> None:
    ref = reference(name)
    parts = [("original", *map_to_alphabet(symbols(name)))]
    if ref["bitstring"] is not None:
        bits = to_bitstring(symbols(name), ref["bits_per_symbol"])
        parts.append(("bitstring", bits, 2))
    for part, data, k in parts:
        nist = ref[part]
        assert int(np.bincount(data).max()) == nist["most_common_value"]["mode"], part
        if "collision" in nist:
            v, total, _ = est._collision_walk(data)
            assert (v, total) == (nist["collision"]["v"], nist["collision"]["sum_t"]), part
        tuples = est._tuples(data, k)
        u = tuples.u(35)
        assert u - 1 == nist["t_tuple"]["t"], part
        assert (u, tuples.v) == (nist["lrs"]["u"], nist["lrs"]["v"]), part


# ---------------------------------------------------------------------------
# Which estimators run on what (as ea_non_iid -i)


def test_binary_samples_get_all_ten_and_no_bitstring() -> None:
    result = assessed("binary_uniform")
    assert tuple(result.estimators) == ESTIMATOR_NAMES
    assert result.bitstring_estimators is None
    assert result.h_bitstring == result.h_original == min(result.estimators.values())


def test_multi_valued_samples_skip_the_binary_only_estimators_and_add_a_bitstring() -> None:
    result = assessed("byte_uniform")
    assert tuple(result.estimators) == tuple(n for n in ESTIMATOR_NAMES if n not in BINARY_ONLY)
    assert result.bitstring_estimators is not None
    assert tuple(result.bitstring_estimators) == ESTIMATOR_NAMES
    assert result.h_original == min(result.estimators.values())
    assert result.h_bitstring == min(result.bitstring_estimators.values())


def test_wide_samples_of_two_values_are_assessed_as_binary() -> None:
    result = assessed("byte_two_valued")  # 8-bit samples, 2 distinct values
    assert tuple(result.estimators) == ESTIMATOR_NAMES
    assert result.bitstring_estimators is None


def test_truncation_changes_nothing_below_a_million_bits() -> None:
    data = datasets.nibble_sparse(20_000)
    truncated = non_iid_assessment(data, 4, truncate_bitstring=True)
    assert truncated == non_iid_assessment(data, 4)


def test_the_alphabet_is_translated_to_the_values_present() -> None:
    mapped, k = map_to_alphabet(np.array([7, 3, 200, 3, 7], dtype=np.uint8))
    assert k == 3
    assert mapped.tolist() == [1, 0, 2, 0, 1]


def test_the_bitstring_is_each_sample_most_significant_bit_first() -> None:
    assert to_bitstring([5, 2, 7], 3).tolist() == [1, 0, 1, 0, 1, 0, 1, 1, 1]
    assert to_bitstring(np.array([0x80, 0x01], dtype=np.uint8), 8).tolist() == [1] + [0] * 14 + [1]
    assert to_bitstring([1, 0], 1).tolist() == [1, 0]


# ---------------------------------------------------------------------------
# Known answers: the worked examples of SP 800-90B §6.3 (sequences and figures
# as the standard prints them; it rounds to 4 digits and uses Z = 2.576 where
# NIST's tool uses 2.5758293..., hence the tolerance), with the small
# parameters the examples use (cutoff 3, d = 4, windows 3/5/7/9, D = 3, B = 4).

EXAMPLE_BITS = [1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 0]
EXAMPLE_BITS += [1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0]
EXAMPLE_TUPLES = np.array(
    [2, 2, 0, 1, 0, 2, 0, 1, 2, 1, 2, 0, 1, 2, 1, 0, 0, 1, 0, 0, 0], dtype=np.uint8
)
EXAMPLE_PREDICT = np.array([2, 1, 3, 2, 1, 3, 1, 3, 1, 2, 1, 3, 2], dtype=np.uint8) - 1


def u8(values: list[int]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.array(values, dtype=np.uint8)


def test_most_common_value_example() -> None:
    s = [0, 1, 1, 2, 0, 1, 2, 2, 0, 1, 0, 1, 1, 0, 2, 2, 1, 0, 2, 1]
    assert est.most_common_value(s, 3) == pytest.approx(0.5363, abs=5e-4)


def test_collision_example() -> None:
    assert est.collision(EXAMPLE_BITS) == pytest.approx(0.4483, abs=5e-4)


def test_markov_example() -> None:
    assert est.markov(EXAMPLE_BITS) == pytest.approx(0.761, abs=5e-4)


def test_compression_example() -> None:
    data = u8([*EXAMPLE_BITS, 1, 1, 1, 0, 0, 0, 1, 1])
    assert est._compression_estimate(data, 4, 6) == pytest.approx(0.1345, abs=5e-4)


def test_t_tuple_and_lrs_examples() -> None:
    tuples = est._tuples(EXAMPLE_TUPLES, 3)
    assert tuples.q[1] == 9  # 0 occurs 9 times
    assert tuples.q[2] == 4  # (0, 1) occurs 4 times
    assert tuples.u(3) == 4  # so t = 3 with the example's cutoff 3
    assert est._t_tuple_from(tuples, 3) == pytest.approx(0.273, abs=5e-4)
    assert est._lrs_from(tuples, 3) == pytest.approx(0.6146, abs=5e-4)


def test_multi_mcw_example() -> None:
    data = u8([1, 2, 1, 0, 2, 1, 1, 2, 2, 0, 0, 0])
    found = est._multi_mcw_kernel(data, 3, np.array([3, 5, 7, 9], dtype=np.int64))
    assert found == (3, 9, 1)
    assert est._prediction_estimate(*found, 3) == pytest.approx(0.3908, abs=5e-4)


def test_lag_example() -> None:
    found = est._lag_kernel(EXAMPLE_PREDICT[:10].copy(), 3)
    assert found == (2, 9, 2)
    assert est._prediction_estimate(*found, 3) == pytest.approx(0.735, abs=5e-4)


def test_multi_mmc_example() -> None:
    found = est._multi_mmc_generic(EXAMPLE_PREDICT[:9].copy(), 3, 3, 100_000)
    assert found == (3, 7, 2)
    assert est._prediction_estimate(*found, 3) == pytest.approx(0.0755, abs=5e-4)


def test_lz78y_example() -> None:
    found = est._lz78y_generic(EXAMPLE_PREDICT, 4, 65_536)
    assert found == (4, 8, 2)
    assert est._prediction_estimate(*found, 3) == pytest.approx(0.0191, abs=5e-4)


# ---------------------------------------------------------------------------
# Properties


def test_a_constant_sequence_has_no_entropy() -> None:
    zeros = np.zeros(20_000, dtype=np.uint8)
    for name in ESTIMATOR_NAMES:
        assert getattr(est, name)(zeros, 2) == pytest.approx(0.0, abs=1e-3), name
    for name in ESTIMATOR_NAMES:
        if name not in BINARY_ONLY:
            assert getattr(est, name)(zeros + 3, 4) == pytest.approx(0.0, abs=1e-3), name


def test_one_value_is_no_entropy_at_all() -> None:
    result = non_iid_assessment(np.full(5000, 9, dtype=np.uint8), 4)
    assert result.estimators == dict.fromkeys(ESTIMATOR_NAMES, 0.0)
    assert result.bitstring_estimators is None
    assert result.h_original == result.h_bitstring == 0.0


def test_a_short_period_is_predicted() -> None:
    data = np.tile(np.array([0, 1, 2, 3, 4], dtype=np.uint8), 2000)
    for name in ("t_tuple", "lag", "multi_mmc", "lz78y"):
        assert getattr(est, name)(data, 5) < 0.01, name


def test_estimates_stay_within_the_alphabet() -> None:
    result = assessed("byte_uniform")
    assert all(0.0 <= h <= 8.0 for h in result.estimators.values())
    assert result.bitstring_estimators is not None
    assert all(0.0 <= h <= 1.0 for h in result.bitstring_estimators.values())


#: Flawed controls: (data set, part, estimators that must drop, by at least) against
#: the uniform set of the same width. A biased source fools none; a correlated one
#: with uniform marginals fools only the Most Common Value estimate, as it should.
FLAWED = [
    ("binary_biased", "original", ESTIMATOR_NAMES, 0.1),
    ("binary_markov", "original", ESTIMATOR_NAMES[1:], 0.1),
    ("byte_biased", "original", tuple(n for n in ESTIMATOR_NAMES if n not in BINARY_ONLY), 0.9),
    ("byte_sticky", "original", ("t_tuple", "lrs", "multi_mcw", "lag", "multi_mmc", "lz78y"), 5.0),
    ("byte_biased", "bitstring", ESTIMATOR_NAMES, 0.1),
]


@pytest.mark.parametrize(("flawed", "part", "names", "drop"), FLAWED)
def test_every_estimator_drops_on_a_flawed_source(
    flawed: str, part: str, names: tuple[str, ...], drop: float
) -> None:
    uniform = "binary_uniform" if flawed.startswith("binary") else "byte_uniform"

    def figures(name: str) -> dict[str, float]:
        result = assessed(name)
        found = result.estimators if part == "original" else result.bitstring_estimators
        assert found is not None
        return found

    good, bad = figures(uniform), figures(flawed)
    for name in names:
        assert bad[name] < good[name] - drop, (name, good[name], bad[name])


# ---------------------------------------------------------------------------
# Internal consistency of the fast paths


@pytest.mark.parametrize("seed", range(4))
def test_the_general_predictors_match_the_binary_ones_on_bits(seed: int) -> None:
    bits = datasets.binary_markov(30_000, seed=seed)
    assert est._multi_mmc_generic(bits, 2, 16, 100_000) == est._multi_mmc_binary(bits, 16, 100_000)
    assert est._multi_mmc_generic(bits, 2, 16, 500) == est._multi_mmc_binary(bits, 16, 500)
    assert est._lz78y_generic(bits, 16, 65_536) == est._lz78y_binary(bits, 16, 65_536)
    assert est._lz78y_generic(bits, 16, 700) == est._lz78y_binary(bits, 16, 700)


def lag_reference(data: np.ndarray[Any, np.dtype[np.uint8]], depth: int) -> tuple[int, int, int]:
    """SP 800-90B §6.3.8 in NIST's order, one lag at a time (slow, plain Python)."""
    scores = [0] * depth
    winner = high = correct = run = max_run = 0
    values = data.tolist()
    for i in range(1, len(values)):
        if values[i] == values[i - winner - 1]:
            correct, run = correct + 1, run + 1
            max_run = max(max_run, run)
        else:
            run = 0
        for off in range(min(i, depth)):
            if values[i - off - 1] == values[i]:
                scores[off] += 1
                if scores[off] >= high:
                    winner, high = off, scores[off]
    return correct, len(values) - 1, max_run


@pytest.mark.parametrize(("k", "seed"), [(2, 1), (3, 2), (5, 3)])
def test_the_vectorised_lag_predictor_is_nists(k: int, seed: int) -> None:
    data = (datasets.byte_sticky(3000, seed=seed) % k).astype(np.uint8)
    assert est._lag_kernel(data, 16) == lag_reference(data, 16)
    assert est._lag_kernel(data, 128) == lag_reference(data, 128)


def tuples_reference(data: np.ndarray[Any, np.dtype[np.uint8]]) -> tuple[list[int], list[int]]:
    """Q[t] and the pair counts for t = 1..LRS, by counting every tuple (slow)."""
    raw = data.tobytes()
    q: list[int] = []
    pairs: list[int] = []
    t = 1
    while True:
        seen: dict[bytes, int] = {}
        for i in range(len(raw) - t + 1):
            seen[raw[i : i + t]] = seen.get(raw[i : i + t], 0) + 1
        if max(seen.values()) < 2:
            return q, pairs
        q.append(max(seen.values()))
        pairs.append(sum(c * (c - 1) // 2 for c in seen.values()))
        t += 1


@pytest.mark.parametrize(
    ("data", "k"),
    [
        (datasets.binary_biased(3000), 2),
        (datasets.byte_sticky(1500) % 7, 7),
        (np.tile(np.array([0, 1, 1], dtype=np.uint8), 400), 2),  # long repeats: the slow path
        (datasets.byte_biased(1500), 256),
    ],
)
def test_tuple_counts_match_counting_every_tuple(data: np.ndarray[Any, Any], k: int) -> None:
    data = data.astype(np.uint8)
    _, k = map_to_alphabet(data)
    tuples = est._tuples(map_to_alphabet(data)[0], max(k, 2))
    q, pairs = tuples_reference(data)
    assert tuples.v == len(q)
    assert tuples.q[1:].tolist() == q
    assert tuples.pairs[1:].tolist() == pairs


def test_the_suffix_array_paths_agree() -> None:
    data = datasets.binary_markov(50_000)
    fast, overflow = est._lcp_from_keys(np.sort(est._suffix_keys(data, 1, 57)), 1, 57)
    assert not overflow
    assert np.array_equal(fast, est._lcp(data, *est._suffix_array(data, 2)))
    _, overflow = est._lcp_from_keys(np.sort(est._suffix_keys(data, 1, 8)), 1, 8)
    assert overflow  # the keys alone would not do for width 8


@pytest.mark.parametrize("seed", range(6))
def test_the_suffix_array_is_the_sorted_suffixes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = [2, 3, 256][seed % 3]
    n = int(rng.integers(1, 400))
    if seed < 3:
        data = rng.integers(0, k, n).astype(np.uint8)
    else:  # periods and long runs: the recursion of SA-IS
        data = np.tile(rng.integers(0, k, int(rng.integers(1, 7))), n)[:n].astype(np.uint8)
    raw = data.tobytes()
    sa, rank = est._suffix_array(data, k)
    assert sa.tolist() == sorted(range(n), key=lambda i: raw[i:])
    assert rank[sa].tolist() == list(range(n))


# ---------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("samples", "bits", "message"),
    [
        (np.array([], dtype=np.uint8), 8, "empty"),
        (np.array([0, 1, 2], dtype=np.uint8), 1, "1-bit values 0..1, found 2"),
        (np.array([0, 16], dtype=np.uint8), 4, "4-bit values 0..15, found 16"),
        (np.array([0, 1], dtype=np.int64) - 2, 4, "found -2"),
        (np.array([0, 1], dtype=np.uint8), 0, "bits_per_symbol must be 1..8"),
        (np.array([0, 1], dtype=np.uint8), 9, "bits_per_symbol must be 1..8"),
        (np.array([0, 1], dtype=np.uint8), True, "bits_per_symbol must be an integer"),
        (np.array([0.0, 1.0]), 1, "must be integers"),
        (np.zeros((2, 2), dtype=np.uint8), 1, "one-dimensional"),
    ],
)
def test_the_assessment_refuses_bad_input(samples: Any, bits: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        non_iid_assessment(samples, bits)
    if bits in range(1, 9) and not isinstance(bits, bool):
        with pytest.raises(ValueError, match=message):
            to_bitstring(samples, bits)


def test_estimators_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        est.lag([], 2)
    with pytest.raises(ValueError, match=r"must lie in 0\.\.2, found 3"):
        est.most_common_value([0, 3], 3)
    with pytest.raises(ValueError, match=r"alphabet_size must be 2\.\.256"):
        est.lz78y([0, 0], 1)
    with pytest.raises(ValueError, match="binary data only"):
        est.markov([0, 1, 2], 3)
    with pytest.raises(ValueError, match="compression needs at least 6006 samples"):
        est.compression(np.zeros(6005, dtype=np.uint8))
    with pytest.raises(ValueError, match="multi_mcw needs at least 4096 samples"):
        est.multi_mcw(np.zeros(4095, dtype=np.uint8), 2)


def test_estimators_that_do_not_apply_are_left_out() -> None:
    data = datasets.binary_uniform(3000)  # too short for compression and MultiMCW
    result = non_iid_assessment(data, 1)
    assert "compression" not in result.estimators
    assert "multi_mcw" not in result.estimators
    assert {"most_common_value", "lag", "lz78y"} <= set(result.estimators)
