"""Property tests of quantumrng.formats over deterministic, seeded byte sources."""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng import formats
from quantumrng.errors import ValidationError

relaxed = settings(deadline=None)  # first numpy calls can be slow on a shared machine

seeds = st.integers(min_value=0, max_value=2**64)
huge = st.integers(min_value=-(2**300), max_value=2**300)
spans = st.one_of(
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=0, max_value=2**64 + 10),
    st.integers(min_value=2**64 - 10, max_value=2**64 + 10),
    st.integers(min_value=0, max_value=2**300),
)


def source(seed: int) -> formats.RandomBytes:
    return random.Random(seed).randbytes


class Stream:
    """A byte source that reads a fixed buffer front to back."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def __call__(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


@relaxed
@given(seeds, huge, spans)
def test_randint_stays_in_bounds(seed: int, lo: int, span: int) -> None:
    value = formats.randint(source(seed), lo, lo + span)
    assert type(value) is int and lo <= value <= lo + span


@relaxed
@given(seeds, st.integers(min_value=0, max_value=300), huge, spans)
def test_integers_stay_in_bounds(seed: int, count: int, lo: int, span: int) -> None:
    values = formats.integers(source(seed), count, lo, lo + span)
    assert len(values) == count
    assert all(type(v) is int and lo <= v <= lo + span for v in values)


@relaxed
@given(seeds, st.integers(min_value=129, max_value=600), st.integers(min_value=1, max_value=64))
def test_many_power_of_two_draws_are_consecutive_k_bit_fields(
    seed: int, count: int, k: int
) -> None:
    data = random.Random(seed).randbytes((count * k + 7) // 8)
    whole = int.from_bytes(data, "big") >> (8 * len(data) - count * k)
    expected = [(whole >> (k * (count - 1 - i))) & ((1 << k) - 1) for i in range(count)]
    assert formats.integers(Stream(data), count, 0, 2**k - 1) == expected


@relaxed
@given(seeds, st.integers(min_value=1, max_value=128), st.integers(min_value=1, max_value=200))
def test_few_power_of_two_draws_are_whole_bytes_masked(seed: int, count: int, k: int) -> None:
    size = (k + 7) // 8
    data = random.Random(seed).randbytes(count * size)
    expected = [
        int.from_bytes(data[i : i + size], "big") & (2**k - 1) for i in range(0, len(data), size)
    ]
    assert formats.integers(Stream(data), count, 0, 2**k - 1) == expected


@relaxed
@given(seeds, st.integers(min_value=1, max_value=2**200))
def test_randbelow_stays_below(seed: int, n: int) -> None:
    assert 0 <= formats.randbelow(source(seed), n) < n


@relaxed
@given(seeds, st.integers(min_value=0, max_value=5000))
def test_bits_have_exact_length_and_clear_top_bits(seed: int, n: int) -> None:
    data = formats.bits(source(seed), n)
    assert len(data) == (n + 7) // 8
    assert int.from_bytes(data, "big").bit_length() <= n
    text = formats.bits_string(source(seed), n)
    assert len(text) == n and set(text) <= {"0", "1"}
    assert int(text or "0", 2) == int.from_bytes(data, "big")


@relaxed
@given(seeds, st.integers(min_value=-(2**100), max_value=2**100), st.integers(0, 200))
def test_permutation_is_a_permutation(seed: int, lo: int, span: int) -> None:
    assert sorted(formats.permutation(source(seed), lo, lo + span)) == list(
        range(lo, lo + span + 1)
    )


@relaxed
@given(seeds, st.lists(st.integers(min_value=0, max_value=5), max_size=60))
def test_shuffle_keeps_every_item(seed: int, items: list[int]) -> None:
    assert Counter(formats.shuffle(source(seed), items)) == Counter(items)


@relaxed
@given(seeds, st.integers(min_value=0, max_value=2**62), st.data())
def test_sample_draws_distinct_members(seed: int, n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=min(n, 300)))
    picked = formats.sample(source(seed), range(n), k)
    assert len(picked) == k == len(set(picked))
    assert all(0 <= p < n for p in picked)


@relaxed
@given(
    seeds,
    st.sets(st.characters(), min_size=1, max_size=100),
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=0, max_value=30),
)
def test_strings_use_only_the_alphabet(seed: int, chars: set[str], count: int, length: int) -> None:
    alphabet = "".join(sorted(chars))
    values = formats.strings(source(seed), count, length, alphabet)
    assert len(values) == count
    assert all(len(v) == length and set(v) <= chars for v in values)


@relaxed
@given(seeds, st.integers(min_value=0, max_value=500))
def test_floats_lie_on_the_53_bit_grid_of_the_unit_interval(seed: int, count: int) -> None:
    values = formats.floats(source(seed), count)
    assert len(values) == count
    assert all(0.0 <= v < 1.0 and (v * 2.0**53).is_integer() for v in values)


@relaxed
@given(
    seeds,
    st.integers(min_value=0, max_value=101),
    st.floats(min_value=-1e300, max_value=1e300),
    st.floats(min_value=0.0, max_value=1e300),
)
def test_gaussians_are_finite_or_refused(seed: int, count: int, mean: float, stddev: float) -> None:
    try:
        values = formats.gaussians(source(seed), count, mean, stddev)
    except ValidationError:
        assert abs(mean) + 8.58 * stddev > 1.7e308
        return
    assert len(values) == count
    assert all(math.isfinite(v) for v in values)
    assert all(abs(v - mean) <= 8.5718 * stddev * (1 + 1e-12) + abs(mean) * 1e-15 for v in values)


@relaxed
@given(seeds, st.integers(min_value=0, max_value=50))
def test_uuid4s_are_version_4(seed: int, count: int) -> None:
    for value in formats.uuid4s(source(seed), count):
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, value)


# --- declared costs: the bytes each format reads --------------------------------


class _Counting:
    """A byte source that counts what it hands out: zeros (no draw is rejected) or noise."""

    def __init__(self, zeros: bool, seed: int = 0) -> None:
        self.read = 0
        self._zeros = zeros
        self._rng = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        self.read += n
        return bytes(n) if self._zeros else self._rng.randbytes(n)


_COUNTS = st.integers(min_value=0, max_value=3000)
_BOUNDS = st.integers(min_value=-(2**80), max_value=2**80)
_SPANS = st.one_of(
    st.integers(min_value=0, max_value=300),
    st.integers(min_value=0, max_value=2**64 + 5),
    st.integers(min_value=0, max_value=2**90),
)
_ALPHABETS = st.text(min_size=1, max_size=300).map(lambda t: "".join(dict.fromkeys(t)))

_COST_CASES = st.one_of(
    st.tuples(st.just("bits"), st.tuples(st.integers(0, 5000))),
    st.tuples(st.just("integers"), st.tuples(_COUNTS, _BOUNDS, _SPANS)),
    st.tuples(st.just("floats"), st.tuples(_COUNTS)),
    st.tuples(st.just("gaussians"), st.tuples(_COUNTS)),
    st.tuples(st.just("uuid4s"), st.tuples(_COUNTS)),
    st.tuples(st.just("strings"), st.tuples(st.integers(0, 200), st.integers(0, 20), _ALPHABETS)),
    st.tuples(st.just("permutation"), st.tuples(_BOUNDS, st.integers(0, 600))),
)


def _call(name: str, args: tuple[Any, ...], read: _Counting) -> int:
    """Run format ``name`` over ``read``; return its declared cost."""
    if name == "integers":
        count, lo, span = args
        formats.integers(read, count, lo, lo + span)
        return formats.integers_cost(count, lo, lo + span)
    if name == "permutation":
        lo, span = args
        formats.permutation(read, lo, lo + span)
        return formats.permutation_cost(lo, lo + span)
    getattr(formats, name)(read, *args)
    cost: int = getattr(formats, f"{name}_cost")(*args)
    return cost


@settings(max_examples=300, deadline=None)
@given(_COST_CASES)
def test_declared_cost_is_exactly_what_the_format_reads_without_rejection(
    case: tuple[str, tuple[Any, ...]],
) -> None:
    name, args = case
    read = _Counting(zeros=True)  # an all-zero draw is always inside the range
    assert _call(name, args, read) == read.read


@settings(max_examples=200, deadline=None)
@given(_COST_CASES, st.integers(0, 2**32))
def test_declared_cost_bounds_what_the_format_reads_from_below(
    case: tuple[str, tuple[Any, ...]], seed: int
) -> None:
    name, args = case
    read = _Counting(zeros=False, seed=seed)
    assert _call(name, args, read) <= read.read
