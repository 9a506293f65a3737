"""Statistical tests of quantumrng.formats: uniformity, distribution shape, no bias.

Every source is seeded, so each test is deterministic and cannot flake. Each
uniformity test also runs its statistic on a deliberately flawed generator
(modulo reduction, naive shuffle) over the same number of draws, showing the
sample is large enough to catch that flaw.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from scipy import stats

from quantumrng import formats
from quantumrng.formats import ALPHABETS

pytestmark = pytest.mark.slow

ALPHA = 1e-4  # a correct generator must pass at this level
BIASED = 1e-6  # a flawed one must fail far below it


def source(seed: int) -> formats.RandomBytes:
    return random.Random(seed).randbytes


def chi2_p(values: Sequence[int] | np.ndarray, categories: int) -> float:
    counts = np.bincount(np.asarray(values, dtype=np.int64), minlength=categories)
    assert counts.size == categories
    return float(stats.chisquare(counts).pvalue)


def modulo_biased(read: formats.RandomBytes, count: int, span: int) -> np.ndarray:
    """Reduce the fewest whole bytes covering ``span`` modulo span: the classic bias."""
    size = max(1, ((span - 1).bit_length() + 7) // 8)
    raw = np.frombuffer(read(count * size), dtype=f">u{size}").astype(np.uint64)
    return raw % np.uint64(span)


def modulo_biased_bits(read: formats.RandomBytes, count: int, span: int) -> list[int]:
    """Reduce the fewest bits covering ``span`` modulo span (any size of span)."""
    k = (span - 1).bit_length()
    size = (k + 7) // 8
    data = read(count * size)
    return [
        (int.from_bytes(data[i : i + size], "big") >> (8 * size - k)) % span
        for i in range(0, len(data), size)
    ]


def test_die_rolls_are_uniform_and_modulo_bias_is_caught() -> None:
    count = 600_000  # byte % 6 favours 0..3 by 43:42; the chi-square noncentrality is ~73
    assert chi2_p(formats.integers(source(1), count, 0, 5), 6) > ALPHA
    assert chi2_p(modulo_biased(source(1), count, 6), 6) < BIASED


def test_single_randint_calls_are_uniform() -> None:
    reader = source(2)
    assert chi2_p([formats.randint(reader, 1, 6) - 1 for _ in range(60_000)], 6) > ALPHA


@pytest.mark.parametrize("k", [3, 8])
def test_ranges_just_above_a_power_of_two_are_uniform(k: int) -> None:
    # nearly half of all draws are discarded here; modulo would halve the last 4 values
    span = 2**k + 2
    count = span * 1000
    assert chi2_p(formats.integers(source(k), count, 0, span - 1), span) > ALPHA
    assert chi2_p(modulo_biased_bits(source(k), count, span), span) < BIASED


@pytest.mark.parametrize(
    ("span", "buckets"),
    [
        (171, 171),  # one byte: 256 = 171 + 85, so modulo doubles 0..84
        (3 * 2**62, 12),  # uint64 path: modulo doubles the lowest third
        (3 * 2**63, 12),  # big-int path (65 bits): likewise
    ],
)
def test_modulo_worst_case_ranges_are_uniform(span: int, buckets: int) -> None:
    assert span % buckets == 0
    count = buckets * 1000
    values = formats.integers(source(3), count, 0, span - 1)
    assert chi2_p([v * buckets // span for v in values], buckets) > ALPHA
    biased = modulo_biased_bits(source(3), count, span)
    assert chi2_p([v * buckets // span for v in biased], buckets) < BIASED


def test_negative_offset_ranges_are_uniform() -> None:
    values = formats.integers(source(5), 70_000, -(2**40) - 3, -(2**40) + 3)
    assert chi2_p([v + 2**40 + 3 for v in values], 7) > ALPHA


def test_floats_are_uniform_on_the_unit_interval() -> None:
    values = formats.floats(source(6), 100_000)
    assert stats.kstest(values, "uniform").pvalue > ALPHA


def test_floats_use_all_53_bits() -> None:
    count = 20_000
    grid = (np.array(formats.floats(source(7), count)) * 2.0**53).astype(np.uint64)
    ones = [int(((grid >> np.uint64(b)) & np.uint64(1)).sum()) for b in range(53)]
    sigma = (count / 4) ** 0.5
    assert all(abs(c - count / 2) < 5 * sigma for c in ones)


def test_gaussians_follow_the_normal_distribution() -> None:
    values = formats.gaussians(source(8), 100_001, mean=3.0, stddev=2.0)
    assert stats.kstest(values, "norm", args=(3.0, 2.0)).pvalue > ALPHA
    assert stats.kstest(values, "norm", args=(3.0, 2.2)).pvalue < BIASED


def test_gaussian_pairs_are_uncorrelated() -> None:
    values = np.array(formats.gaussians(source(9), 100_000))
    r = np.corrcoef(values[0::2], values[1::2])[0, 1]
    assert abs(r) < 5 / (50_000**0.5)


@pytest.mark.parametrize("name", ["alnum", "digits", "base32"])
def test_string_characters_are_uniform_at_every_position(name: str) -> None:
    chars = ALPHABETS[name]
    index = {c: i for i, c in enumerate(chars)}
    count, length = 20_000, 8
    values = formats.strings(source(10), count, length, chars)
    for position in range(length):
        column = [index[v[position]] for v in values]
        assert chi2_p(column, len(chars)) > ALPHA / length


def test_modulo_biased_strings_would_be_caught() -> None:
    chars = ALPHABETS["alnum"]  # 256 = 4 * 62 + 8: the first 8 characters get 5/256
    assert chi2_p(modulo_biased(source(10), 20_000, len(chars)), len(chars)) < BIASED


def naive_shuffle(read: formats.RandomBytes, items: list[int]) -> list[int]:
    """Swap each position with any position: 4**4 paths onto 24 orders, not uniform."""
    out = list(items)
    for i in range(len(out)):
        j = formats.randbelow(read, len(out))
        out[i], out[j] = out[j], out[i]
    return out


def test_shuffles_give_every_order_and_position_equally() -> None:
    count, items = 12_000, [0, 1, 2, 3]
    orders = {p: i for i, p in enumerate(itertools.permutations(items))}
    reader = source(11)
    shuffles = [tuple(formats.shuffle(reader, items)) for _ in range(count)]
    assert chi2_p([orders[s] for s in shuffles], len(orders)) > ALPHA
    for position in range(len(items)):
        assert chi2_p([s[position] for s in shuffles], len(items)) > ALPHA
    naive_reader = source(11)
    naive = [orders[tuple(naive_shuffle(naive_reader, items))] for _ in range(count)]
    assert chi2_p(naive, len(orders)) < BIASED


def test_long_shuffles_move_every_item_everywhere_equally() -> None:
    n, count, buckets = 200, 2_000, 10  # n > 128 takes the vectorised path
    reader = source(14)
    shuffles = [formats.shuffle(reader, range(n)) for _ in range(count)]
    for position in (0, 100, n - 1):
        column = [s[position] * buckets // n for s in shuffles]
        assert chi2_p(column, buckets) > ALPHA / 3


def test_samples_give_every_ordered_pair_equally() -> None:
    pairs: dict[tuple[int, ...], int] = {
        p: i for i, p in enumerate(itertools.permutations(range(6), 2))
    }
    reader = source(12)
    picks = Counter(tuple(formats.sample(reader, range(6), 2)) for _ in range(9_000))
    assert chi2_p([pairs[p] for p in picks.elements()], len(pairs)) > ALPHA


def test_permutations_put_every_value_everywhere_equally() -> None:
    reader = source(13)
    first = [formats.permutation(reader, 10, 16)[0] - 10 for _ in range(7_000)]
    assert chi2_p(first, 7) > ALPHA
