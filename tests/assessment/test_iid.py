"""SP 800-90B IID tests (§5) against NIST's ea_iid.

``reference/iid/reference.json`` holds what NIST's ``ea_iid`` 1.1.7 printed
(``-vv``: the statistics on the original samples, C[i][0..2] per
permutation statistic, the chi-square, LRS and MCV figures) for the data
sets of ``reference/iid/datasets.py``, with their SHA-256. The statistics
on the samples must agree exactly (chi-square p-values to 1e-9: both sides
approximate the incomplete gamma function). Verdicts must agree per test;
the shuffles are ours, so they are compared where they do not hang on
chance: with NIST's 10,000 shuffles (slow tests; 1,000 where the
compression statistic fails, as each shuffle then costs a bzip2 run) and,
in the default run, on the flawed controls with 100 shuffles, for the
statistics NIST failed or decided within 25 shuffles.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from quantumrng.assessment import iid
from quantumrng.assessment.estimators import longest_repeat
from quantumrng.assessment.iid import (
    MIN_TEST_SAMPLES,
    PERMUTATION_TESTS,
    chi_square_details,
    chi_square_tests,
    iid_assessment,
    lrs_details,
    lrs_test,
    most_common_value,
    permutation_tests,
)
from tests.assessment.reference.iid.datasets import BY_NAME, DATASETS, LARGE, sha256

REFERENCE: dict[str, Any] = json.loads(
    (Path(__file__).parent / "reference" / "iid" / "reference.json").read_text()
)["datasets"]
SMALL = [d.name for d in DATASETS]
LARGE_NAMES = [d.name for d in LARGE]
CONTROLS = [d.name for d in DATASETS if not d.iid]
SEED = 20261202

#: ea_iid's statistic names and order (permutation_tests.h, test_names).
NIST_NAMES = [
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
]


@functools.cache
def samples(name: str) -> npt.NDArray[np.uint8]:
    return BY_NAME[name].data()


def k_of(name: str) -> int:
    return BY_NAME[name].bits_per_symbol


def test_the_statistics_are_named_and_ordered_as_nist_does() -> None:
    assert list(PERMUTATION_TESTS) == NIST_NAMES
    for name, ref in REFERENCE.items():
        assert list(ref["permutation"]["tests"]) == NIST_NAMES, name


@pytest.mark.parametrize("name", SMALL + LARGE_NAMES)
def test_the_generator_reproduces_the_bytes_nist_assessed(name: str) -> None:
    ref = REFERENCE[name]
    data = samples(name)
    assert (data.size, k_of(name)) == (ref["samples"], ref["bits_per_symbol"])
    assert sha256(data) == ref["sha256"]


def _check_statistics(name: str) -> None:
    ref, data, k = REFERENCE[name], samples(name), k_of(name)
    outcomes = permutation_tests(data, k, permutations=1, rng=np.random.default_rng(SEED))
    for outcome in outcomes:
        assert outcome.value == ref["permutation"]["tests"][outcome.name]["value"], outcome.name

    independence, fit = chi_square_details(data, k)
    for got, want in (
        (independence, ref["chi_square"]["independence"]),
        (fit, ref["chi_square"]["goodness_of_fit"]),
    ):
        assert (got.statistic, got.df) == (want["statistic"], want["df"])
        assert got.p_value == pytest.approx(want["p_value"], rel=1e-9, abs=1e-300)

    lrs = lrs_details(data, k)
    assert lrs.length == ref["lrs"]["length"]
    assert lrs.p_col == pytest.approx(ref["lrs"]["p_col"], rel=1e-15)
    assert lrs.probability == pytest.approx(ref["lrs"]["probability"], rel=1e-12, abs=1e-300)

    h_original, h_bitstring = most_common_value(data, k)
    assert h_original == ref["mcv"]["h_original"]
    if ref["mcv"]["h_bitstring"] is not None:
        assert h_bitstring == ref["mcv"]["h_bitstring"]
    elif k == 1:
        assert h_bitstring == h_original
    # else: ea_iid gives no H_bitstring when only two values occur (alph_size == 2);
    # we follow §3.1.3 and assess the bitstring whenever k > 1.


@pytest.mark.parametrize("name", SMALL)
def test_the_statistics_of_the_samples_are_nists(name: str) -> None:
    _check_statistics(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE_NAMES)
def test_the_statistics_of_a_million_samples_are_nists(name: str) -> None:
    _check_statistics(name)


def _check_verdicts(name: str, permutations: int) -> iid.IidResult:
    """Our verdicts with ``permutations`` shuffles against NIST's with 10,000.

    With fewer shuffles, a statistic NIST passed only after many (its value
    sits far out, but not beyond 6 of 10,000 shuffles) may stay undecided, so
    such statistics are compared only with the full count.
    """
    ref, data, k = REFERENCE[name], samples(name), k_of(name)
    result = iid_assessment(data, k, permutations=permutations, rng=np.random.default_rng(SEED))
    compared = 0
    for o in result.permutation:
        nist = ref["permutation"]["tests"][o.name]
        shuffles = nist["greater"] + nist["equal"] + nist["less"]
        if permutations >= iid.PERMUTATIONS or not nist["passed"] or shuffles <= permutations // 4:
            assert o.passed == nist["passed"], (o, nist)
            compared += 1
        if not o.passed:  # undecided: fewer than 6 on one side after every shuffle
            assert o.greater + o.equal + o.less == permutations
    assert compared >= 10  # not vacuous
    assert result.chi_square_independence == ref["chi_square"]["independence"]["passed"]
    assert result.chi_square_goodness_of_fit == ref["chi_square"]["goodness_of_fit"]["passed"]
    assert result.lrs == ref["lrs"]["passed"]
    assert result.passed == ref["passed"]
    return result


#: Shuffles for the flawed controls in the default run.
CONTROL_BUDGET = 100
#: IID sets cheap enough for the default run (the others are slow tests).
QUICK_IID = ("sparse_nibbles", "biased_bits")


@pytest.mark.parametrize("name", CONTROLS)
def test_flawed_controls_fail_where_nist_fails_them(name: str) -> None:
    assert not _check_verdicts(name, CONTROL_BUDGET).passed


@pytest.mark.parametrize("name", QUICK_IID)
def test_iid_data_passes_as_with_nist(name: str) -> None:
    assert _check_verdicts(name, iid.PERMUTATIONS).passed


#: Shuffles where NIST's compression statistic failed: every shuffle then costs
#: a bzip2 run (NIST took 16 to 26 minutes on these sets).
COMPRESSION_FAILED_BUDGET = 1_000


@pytest.mark.slow
@pytest.mark.parametrize("name", SMALL + LARGE_NAMES)
def test_verdicts_with_nists_shuffle_count_are_nists(name: str) -> None:
    compression = REFERENCE[name]["permutation"]["tests"]["compression"]
    _check_verdicts(name, iid.PERMUTATIONS if compression["passed"] else COMPRESSION_FAILED_BUDGET)


def test_every_test_fails_on_some_flawed_control() -> None:
    """Each of the 22 IID tests is failed (by NIST and, above, by us) on a control."""
    failed: set[str] = set()
    for name in CONTROLS:
        ref = REFERENCE[name]
        failed |= {t for t, v in ref["permutation"]["tests"].items() if not v["passed"]}
        failed |= {
            f"chi_square_{t}"
            for t, v in ref["chi_square"].items()
            if isinstance(v, dict)
            if not v["passed"]
        }
        if not ref["lrs"]["passed"]:
            failed.add("lrs")
    expected = {
        *PERMUTATION_TESTS,
        "chi_square_independence",
        "chi_square_goodness_of_fit",
        "lrs",
    }
    assert failed == expected
    for name in SMALL:  # and the IID sets pass everything
        assert REFERENCE[name]["passed"] == BY_NAME[name].iid, name


# --------------------------------------------------------------------------------------
# The permutation loop


def test_decided_statistics_stopped_as_soon_as_both_sides_passed_five() -> None:
    data = samples("uniform_nibbles")[:20_000]
    outcomes = permutation_tests(data, 4, permutations=500, rng=np.random.default_rng(1))
    assert sum(o.passed for o in outcomes) >= 17
    for o in outcomes:
        if o.passed:  # an equal result moves both sides by one: the smaller exceeds 5 at 6
            assert min(o.greater + o.equal, o.equal + o.less) == 6, o
        else:
            assert o.greater + o.equal + o.less == 500


def test_a_seed_gives_one_outcome_whatever_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    data = samples("sticky_median_bytes")[:30_000]

    def run(workers: int) -> tuple[iid.PermutationOutcome, ...]:
        monkeypatch.setattr(iid, "_workers", lambda: workers)
        return permutation_tests(data, 8, permutations=60, rng=np.random.default_rng(7))

    assert run(1) == run(3)
    assert run(1) != permutation_tests(data, 8, permutations=60, rng=np.random.default_rng(8))


def test_the_shuffle_is_uniform() -> None:
    rng = np.random.default_rng(3)
    counts: Counter[bytes] = Counter()
    base = np.arange(4, dtype=np.uint8)
    for _ in range(24_000):
        data = base.copy()
        top = 3
        while top:
            top = iid._shuffle(data, rng.bit_generator.random_raw(1).view(np.uint32), top)
        counts[data.tobytes()] += 1
    assert len(counts) == 24
    assert stats.chisquare(list(counts.values())).pvalue > 1e-4


def test_the_shuffle_draws_more_words_when_they_run_out() -> None:
    data = np.arange(50, dtype=np.uint8)
    words = np.random.default_rng(0).integers(0, 2**32, 10, dtype=np.uint32)
    assert iid._shuffle(data, words, 49) == 39  # ten swaps done, index 39 still to do
    assert sorted(data.tolist()) == list(range(50))


def test_the_compression_text_is_ea_iids() -> None:
    raw = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint8)
    raw[:3] = (0, 9, 255)
    text = np.empty(4 * raw.size, dtype=np.uint8)
    length = iid._text(raw, text)
    assert text[:length].tobytes() == " ".join(str(v) for v in raw.tolist()).encode()


def _brute_longest_repeat(text: bytes) -> int:
    best = 0
    for length in range(1, len(text)):
        windows = [text[i : i + length] for i in range(len(text) - length + 1)]
        if len(set(windows)) == len(windows):
            break
        best = length
    return best


def test_the_longest_repeat_is_found() -> None:
    rng = np.random.default_rng(2)
    for trial in range(200):
        alphabet = int(rng.integers(2, 7))
        text = rng.integers(0, alphabet, int(rng.integers(2, 150))).astype(np.uint8)
        if trial % 3 == 0:  # long repeats, overlapping
            text = np.tile(text[: max(1, text.size // 3)], 4)[: text.size]
        assert longest_repeat(text, alphabet) == _brute_longest_repeat(text.tobytes())


@pytest.mark.parametrize(("statistic", "df"), [(10.0, 3), (1200.0, 1100), (0.5, 1), (40.0, 9)])
def test_chi_square_p_values(statistic: float, df: int) -> None:
    want = float(stats.chi2.sf(statistic, df))
    assert iid.chi_square_p_value(statistic, df) == pytest.approx(want, rel=1e-10)


def test_no_degrees_of_freedom_pass() -> None:
    assert iid.chi_square_p_value(0.0, 0) == 1.0


def test_bins_merge_small_expectations_as_ea_iid() -> None:
    expected = np.array([1.0, 9.0, 2.0, 3.0, 0.5, 6.0, 2.0])
    bin_of, sums = iid._bins(expected)
    # by expectation: 0.5(4) 1(0) 2(2) 2(6) -> 5.5; 3(3) 6(5) -> 9; 9(1) alone
    assert sums.tolist() == [5.5, 9.0, 9.0]
    assert bin_of.tolist() == [0, 2, 0, 1, 0, 1, 0]
    bin_of, sums = iid._bins(np.full(4, 2.0))  # a short last bin joins the one before
    assert sums.tolist() == [8.0] and bin_of.tolist() == [0, 0, 0, 0]


def test_results_and_the_wrappers_agree() -> None:
    data = samples("markov_bits")
    result = iid_assessment(data, 1, permutations=20, rng=np.random.default_rng(0))
    assert (result.chi_square_independence, result.chi_square_goodness_of_fit) == (
        chi_square_tests(data, 1)
    )
    assert result.lrs == lrs_test(data, 1)
    assert (result.h_original, result.h_bitstring) == most_common_value(data, 1)
    assert [o.name for o in result.permutation] == list(PERMUTATION_TESTS)
    assert not result.passed


def test_mcv_is_the_standard_formula() -> None:
    data = samples("biased_bits")
    p = np.bincount(data).max() / data.size
    upper = p + 2.576 * math.sqrt(p * (1 - p) / (data.size - 1))
    assert most_common_value(data, 1)[0] == pytest.approx(-math.log2(upper), rel=1e-4)


# --------------------------------------------------------------------------------------
# Bad input


GOOD = np.arange(MIN_TEST_SAMPLES, dtype=np.int64) % 16

CALLS = {
    "iid_assessment": lambda s, k: iid_assessment(s, k, permutations=1),
    "permutation_tests": lambda s, k: permutation_tests(s, k, permutations=1),
    "chi_square_tests": chi_square_tests,
    "lrs_test": lrs_test,
    "most_common_value": most_common_value,
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize(
    ("symbols", "k", "message"),
    [
        (np.array([], dtype=np.uint8), 4, "no samples"),
        (GOOD, 3, "sample value 15 does not fit in 3 bits"),
        (-GOOD, 4, "sample value -15 does not fit in 4 bits"),
        (GOOD, 0, "bits per symbol must be 1 to 8, not 0"),
        (GOOD, 9, "bits per symbol must be 1 to 8, not 9"),
        (GOOD, True, "bits per symbol must be an integer"),
        (GOOD, 4.0, "bits per symbol must be an integer"),
        (GOOD[:999], 4, "at least 1,000 samples; got 999"),
        (GOOD.reshape(10, -1), 4, "one-dimensional"),
        (GOOD.astype(float), 4, "samples must be integers"),
        (np.full(MIN_TEST_SAMPLES, 3), 4, "every sample is 3"),
    ],
)
def test_bad_input_is_refused(call: Any, symbols: Any, k: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(symbols, k)


@pytest.mark.parametrize("permutations", [0, -1, True, 2.5])
def test_the_shuffle_count_must_be_positive(permutations: Any) -> None:
    for call in (iid_assessment, permutation_tests):
        with pytest.raises(ValueError, match="permutations must be a positive integer"):
            call(GOOD, 4, permutations=permutations)
