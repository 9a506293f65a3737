"""Property tests: the vectorised health tests agree with the standard's sample loop."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.health import (
    adaptive_proportion_test,
    apt_cutoff,
    bias_cutoff,
    mcv_min_entropy,
    rct_cutoff,
    repetition_count_test,
)

entropies = st.floats(min_value=0.01, max_value=1.0)
streams = st.lists(st.integers(0, 2), max_size=300)
binary_streams = st.lists(st.integers(0, 1), max_size=300)


def reference_rct(samples: Sequence[int], cutoff: int) -> int | None:
    """SP 800-90B §4.4.1, one sample at a time."""
    a, b = None, 0
    for i, x in enumerate(samples):
        if b and x == a:
            b += 1
        else:
            a, b = x, 1
        if b >= cutoff:
            return i
    return None


def reference_apt(samples: Sequence[int], cutoff: int, window: int) -> int | None:
    """SP 800-90B §4.4.2, one sample at a time; B counts the reference sample too."""
    for start in range(0, len(samples), window):
        chunk = samples[start : start + window]
        b = 0
        for j, x in enumerate(chunk):
            b += x == chunk[0]
            if b >= cutoff:
                return start + j
    return None


def joined(first: int | None, second: int | None, cut: int) -> int | None:
    """The failure index over both parts, from the indices within each."""
    if first is not None:
        return first
    return None if second is None else cut + second


@given(entropies, entropies)
def test_rct_cutoff_non_increasing_in_h(h1: float, h2: float) -> None:
    lo, hi = sorted((h1, h2))
    assert rct_cutoff(lo) >= rct_cutoff(hi)
    assert rct_cutoff(hi) >= 1 + 20


@settings(max_examples=40, deadline=None)
@given(entropies, entropies)
def test_apt_cutoff_non_increasing_in_h(h1: float, h2: float) -> None:
    lo, hi = sorted((h1, h2))
    assert apt_cutoff(lo) >= apt_cutoff(hi)
    assert 512 < apt_cutoff(hi) <= 1025


@settings(deadline=None)
@given(st.floats(min_value=0.05, max_value=4.0), st.integers(1, 48), st.integers(1, 30))
def test_apt_cutoff_is_smallest_c_with_tail_within_alpha(h: float, window: int, a: int) -> None:
    p = Fraction(2.0**-h)

    def tail(c: int) -> Fraction:
        return sum(
            (math.comb(window, k) * p**k * (1 - p) ** (window - k) for k in range(c, window + 1)),
            Fraction(0),
        )

    c = apt_cutoff(h, window, a)
    alpha = Fraction(1, 2**a)
    assert tail(c) <= alpha < tail(c - 1)


@given(st.floats(min_value=0.05, max_value=1.0), st.integers(1, 10**7))
def test_bias_cutoff_between_mean_and_all(h: float, n: int) -> None:
    assert n * 2.0**-h < bias_cutoff(n, h)
    assert bias_cutoff(n, h) <= bias_cutoff(n + 1, h)


@given(streams, st.integers(2, 12), st.data())
def test_rct_split_anywhere_equals_reference(
    samples: list[int], cutoff: int, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(samples)))
    arr = np.array(samples, dtype=np.uint8)
    first = repetition_count_test(arr[:cut], cutoff)
    second = repetition_count_test(arr[cut:], cutoff, first.run)
    found = joined(first.index, second.index, cut)
    assert found == reference_rct(samples, cutoff)
    assert repetition_count_test(arr, cutoff).index == reference_rct(samples, cutoff)


@given(streams, st.integers(1, 24), st.data())
def test_apt_split_anywhere_equals_reference(
    samples: list[int], window: int, data: st.DataObject
) -> None:
    cutoff = data.draw(st.integers(2, window + 1))
    cut = data.draw(st.integers(0, len(samples)))
    arr = np.array(samples, dtype=np.uint8)
    first = adaptive_proportion_test(arr[:cut], cutoff, window)
    second = adaptive_proportion_test(arr[cut:], cutoff, window, first.window)
    found = joined(first.index, second.index, cut)
    expected = reference_apt(samples, cutoff, window)
    assert found == expected
    assert adaptive_proportion_test(arr, cutoff, window).index == expected


@given(binary_streams.filter(lambda s: len(s) >= 2))
def test_mcv_is_formula_and_within_one_bit(samples: list[int]) -> None:
    n = len(samples)
    p_hat = max(samples.count(0), samples.count(1)) / n
    p_u = min(1.0, p_hat + 2.576 * math.sqrt(p_hat * (1 - p_hat) / (n - 1)))
    h = mcv_min_entropy(np.array(samples, dtype=np.uint8))
    assert 0.0 <= h <= 1.0
    assert math.isclose(h, -math.log2(p_u), abs_tol=1e-12)
