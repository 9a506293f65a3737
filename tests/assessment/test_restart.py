"""SP 800-90B restart tests (§3.1.4) against NIST's ea_restart.

``reference/restart/reference.json`` holds what ``ea_restart -i -vv``
(1.1.7) printed for the matrices of ``reference/restart/datasets.py``:
X_cutoff (from its 5,000,000-row simulation, several runs where it varies),
X_max, the sanity check, H_r and H_c (the IID track's MCV estimate) and the
outcome. Our X_cutoff is the exact quantile the simulation estimates.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from quantumrng.assessment import restart
from quantumrng.assessment.restart import RESTART_ALPHA, restart_cutoff, restart_tests
from tests.assessment.reference.restart.datasets import BY_NAME, RESTART_SETS, sha256

REFERENCE: dict[str, Any] = json.loads(
    (Path(__file__).parent / "reference" / "restart" / "reference.json").read_text()
)
SETS = [r.name for r in RESTART_SETS]


@functools.cache
def matrix(name: str) -> npt.NDArray[np.uint8]:
    return BY_NAME[name].matrix()


@pytest.mark.parametrize("name", SETS)
def test_the_generator_reproduces_the_matrices_nist_assessed(name: str) -> None:
    ref = REFERENCE["datasets"][name]
    assert sha256(matrix(name)) == ref["sha256"]
    assert (BY_NAME[name].bits_per_symbol, BY_NAME[name].h_initial) == (
        ref["bits_per_symbol"],
        ref["h_initial"],
    )


@pytest.mark.parametrize("name", SETS)
def test_restart_tests_agree_with_nist(name: str) -> None:
    ref = REFERENCE["datasets"][name]
    r = BY_NAME[name]
    result = restart_tests(matrix(name), r.bits_per_symbol, r.h_initial)
    assert min(ref["x_cutoff"]) - 1 <= result.cutoff <= max(ref["x_cutoff"]) + 1  # simulated
    assert max(result.max_row_count, result.max_column_count) == ref["x_max"]
    assert result.sanity_check == ref["sanity_check"]
    assert result.passed == ref["passed"]
    if ref["h_row"] is not None:  # ea_restart stops before H_r and H_c when the sanity check fails
        assert result.h_row == ref["h_row"]
        assert result.h_column == ref["h_column"]
        assert result.validation
    assert result.h_restart == min(result.h_row, result.h_column)
    assert result.h_assessed == (min(result.h_restart, r.h_initial) if result.passed else 0.0)


def test_flawed_restarts_fail_the_sanity_check_by_rows_or_columns() -> None:
    same_start = restart_tests(matrix("same_start_bytes"), 8, 7.8)
    assert same_start.max_column_count == 1000 and not same_start.sanity_check
    identical = restart_tests(matrix("identical_rows_bytes"), 8, 7.8)
    assert identical.max_column_count == 1000 and not identical.passed
    stuck = restart_tests(matrix("stuck_rows_bytes"), 8, 7.8)
    assert stuck.max_row_count > stuck.cutoff >= stuck.max_column_count
    assert not stuck.passed


def test_validation_fails_when_an_estimate_is_below_half_of_h_initial() -> None:
    good = matrix("good_bytes")
    result = restart_tests(good, 8, 7.8, estimator=lambda s, k: 3.8)
    assert result.sanity_check and not result.validation and not result.passed
    assert (result.h_row, result.h_column, result.h_assessed) == (3.8, 3.8, 0.0)
    assert restart_tests(good, 8, 7.8, estimator=lambda s, k: 3.9).passed  # H_I / 2 passes


def test_the_estimator_sees_rows_then_columns() -> None:
    seen: list[npt.NDArray[np.uint8]] = []

    def estimator(samples: npt.NDArray[np.uint8], k: int) -> float:
        seen.append(samples.copy())
        return 9.0  # capped at k

    m = matrix("good_bits")
    result = restart_tests(m, 1, 0.95, estimator=estimator)
    assert np.array_equal(seen[0], m.ravel()) and np.array_equal(seen[1], m.T.ravel())
    assert (result.h_row, result.h_column) == (1.0, 1.0)


def test_the_default_estimate_is_the_mcv_of_all_samples() -> None:
    m = matrix("biased_bits")
    p = np.bincount(m.ravel()).max() / m.size
    want = -math.log2(p + 2.5758293035489008 * math.sqrt(p * (1 - p) / (m.size - 1)))
    assert restart.most_common_value(m.ravel(), 1) == pytest.approx(want, rel=1e-14)
    assert restart_tests(m, 1, 0.45).h_row == restart.most_common_value(m.ravel(), 1)


def _simulated_tail(h: float, x: int, rows: int, rng: np.random.Generator) -> float:
    p = 2.0**-h
    likely = math.floor(1 / p)
    probs = [p] * likely + ([1 - likely * p] if math.ceil(1 / p) > likely else [])
    counts = rng.multinomial(1000, np.array(probs) / sum(probs), size=rows)
    return float((counts.max(axis=1) > x).mean())


@pytest.mark.parametrize("h", [7.8, 4.0, 1.0, 0.45])
def test_the_cutoff_is_the_quantile_of_the_worst_case(h: float) -> None:
    cutoff = restart_cutoff(h)
    p = 2.0**-h
    likely = math.floor(1 / p)
    rest = 1 - likely * p if math.ceil(1 / p) > likely else 0.0
    assert 1 - restart._all_at_most(cutoff, 1000, p, likely, rest) <= RESTART_ALPHA
    assert 1 - restart._all_at_most(cutoff - 1, 1000, p, likely, rest) > RESTART_ALPHA
    # the exact distribution agrees with a simulation where the tail is near 1%
    x = cutoff
    while (exact := 1 - restart._all_at_most(x, 1000, p, likely, rest)) < 0.01:
        x -= 1
    simulated = _simulated_tail(h, x, 40_000, np.random.default_rng(5))
    assert simulated == pytest.approx(exact, abs=5 * math.sqrt(exact / 40_000))


#: ea_restart's simulation: 5,000,000 rows; it returns the value at index
#: floor((1 - alpha) 5e6) - 1 of the sorted maxima, which is <= x exactly when
#: at most 26 rows exceed x.
SIMULATED_ROWS = 5_000_000
ABOVE = SIMULATED_ROWS - math.floor((1.0 - RESTART_ALPHA) * SIMULATED_ROWS)


def _chance_nist_returns(h: float, x: int) -> float:
    """P[ea_restart's simulated X_cutoff == x], from the exact distribution of one row's maximum."""
    p = 2.0**-h
    likely = math.floor(1 / p)
    rest = 1 - likely * p if math.ceil(1 / p) > likely else 0.0

    def at_most(v: int) -> float:
        tail = 1 - restart._all_at_most(v, 1000, p, likely, rest)
        return float(stats.binom.cdf(ABOVE, SIMULATED_ROWS, tail))

    return at_most(x) - at_most(x - 1)


def test_cutoffs_nist_simulated_are_likely_under_the_exact_distribution() -> None:
    assert ABOVE == 26
    for h, values in REFERENCE["cutoffs"].items():
        ours = restart_cutoff(float(h))
        for value in values:
            assert abs(value - ours) <= 1, (h, values)
            assert _chance_nist_returns(float(h), value) > 1e-3, (h, value)
        # ours is the value NIST's simulation returns most often
        assert _chance_nist_returns(float(h), ours) >= max(
            _chance_nist_returns(float(h), ours + d) for d in (-1, 1)
        )


def test_edge_cutoffs() -> None:
    assert restart_cutoff(0.0) == 1000  # one value: every count is 1000
    assert restart_cutoff(8.0) < restart_cutoff(7.8) < restart_cutoff(1.0)


# --------------------------------------------------------------------------------------
# Bad input


GOOD = np.zeros((1000, 1000), dtype=np.uint8)


@pytest.mark.parametrize(
    ("m", "k", "h", "message"),
    [
        (GOOD[:999], 8, 7.0, "1000 restarts x 1000 samples, not 999 x 1000"),
        (GOOD.ravel(), 8, 7.0, "1000 restarts x 1000 samples, not 1000000"),
        (GOOD.T[:, :10], 8, 7.0, "not 1000 x 10"),
        (np.array(5), 8, 7.0, "not a scalar"),
        (np.full((1000, 1000), 16), 4, 3.0, "sample value 16 does not fit in 4 bits"),
        (np.full((1000, 1000), -1), 4, 3.0, "sample value -1 does not fit in 4 bits"),
        (GOOD.astype(float), 8, 7.0, "samples must be integers"),
        (GOOD, 0, 0.5, "bits per symbol must be 1 to 8, not 0"),
        (GOOD, 9, 7.0, "bits per symbol must be 1 to 8, not 9"),
        (GOOD, True, 0.5, "bits per symbol must be an integer"),
        (GOOD, 4, 4.5, "H_I must be from 0 to 4 bits per sample, not 4.5"),
        (GOOD, 4, -0.1, "H_I must be from 0 to 4"),
        (GOOD, 4, math.nan, "H_I must be from 0 to 4"),
    ],
)
def test_bad_input_is_refused(m: Any, k: Any, h: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        restart_tests(m, k, h)
