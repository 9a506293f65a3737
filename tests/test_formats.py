"""Behaviour of quantumrng.formats: lengths, types, ranges, bit layout, errors."""

from __future__ import annotations

import pickle
import random
import string
import uuid
import warnings
from collections.abc import Iterable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng import formats
from quantumrng.errors import InvalidRequest, QuantumRNGError, ValidationError
from quantumrng.formats import ALPHABETS


def zeros(n: int) -> bytes:
    return b"\x00" * n


def ones(n: int) -> bytes:
    return b"\xff" * n


def seeded(seed: int = 0) -> formats.RandomBytes:
    return random.Random(seed).randbytes


class Script:
    """A byte source that plays fixed bytes in order and counts its calls."""

    def __init__(self, data: Iterable[int] | bytes) -> None:
        self.data = bytes(data)
        self.pos = 0
        self.calls: list[int] = []

    def __call__(self, n: int) -> bytes:
        self.calls.append(n)
        if self.pos + n > len(self.data):
            raise AssertionError("script exhausted")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


class Counting:
    """Wrap a byte source and count calls and bytes."""

    def __init__(self, read: formats.RandomBytes) -> None:
        self.read = read
        self.calls = 0
        self.nbytes = 0

    def __call__(self, n: int) -> bytes:
        self.calls += 1
        self.nbytes += n
        return self.read(n)


def no_reads(n: int) -> bytes:
    raise AssertionError(f"unexpected read of {n} bytes")


# --- bits ------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 512, 1023, 1024])
def test_bits_length_is_ceil_n_over_8(n: int) -> None:
    assert len(formats.bits(seeded(n), n)) == (n + 7) // 8
    assert len(formats.bits_string(seeded(n), n)) == n


def test_bits_zero_source_keeps_leading_zero_bytes() -> None:
    assert formats.bits(zeros, 64) == b"\x00" * 8
    assert formats.bits(zeros, 12) == b"\x00\x00"
    assert formats.bits_string(zeros, 20) == "0" * 20


def test_bits_clears_only_the_unused_top_bits_of_the_first_byte() -> None:
    assert formats.bits(ones, 12) == b"\x0f\xff"
    assert formats.bits(ones, 1) == b"\x01"
    assert formats.bits(ones, 16) == b"\xff\xff"
    assert formats.bits_string(ones, 13) == "1" * 13


def test_bits_string_spells_the_bits_most_significant_first() -> None:
    assert formats.bits_string(Script([0b1010_0110, 0b0000_0001]), 13) == "0011000000001"
    assert formats.bits_string(Script([0x80]), 8) == "10000000"


def test_bits_zero_reads_nothing() -> None:
    assert formats.bits(no_reads, 0) == b""
    assert formats.bits_string(no_reads, 0) == ""


# --- integers --------------------------------------------------------------


def test_randbelow_discards_out_of_range_draws_instead_of_reducing_them() -> None:
    # n = 6 needs 3 bits; draws 7 and 6 are discarded, 5 is kept (7 % 6 would give 1)
    source = Script([7, 6, 5])
    assert formats.randbelow(source, 6) == 5
    assert source.calls == [1, 1, 1]


def test_randbelow_power_of_two_never_rejects() -> None:
    assert formats.randbelow(Script([0xFF]), 256) == 255
    assert formats.randbelow(Script([0xFF, 0xFF]), 2**16) == 2**16 - 1
    assert formats.randbelow(ones, 2**521) == 2**521 - 1


def test_randbelow_one_is_zero_without_reading() -> None:
    assert formats.randbelow(no_reads, 1) == 0


@pytest.mark.parametrize(("lo", "hi"), [(1, 6), (-10, -3), (-(2**300), 2**300), (2**70, 2**70 + 3)])
def test_randint_stays_in_closed_range(lo: int, hi: int) -> None:
    read = seeded(1)
    values = [formats.randint(read, lo, hi) for _ in range(200)]
    assert all(type(v) is int and lo <= v <= hi for v in values)


def test_randint_equal_bounds_reads_nothing() -> None:
    assert formats.randint(no_reads, 42, 42) == 42
    assert formats.integers(no_reads, 5, -7, -7) == [-7] * 5


def test_few_integers_take_whole_bytes_with_top_bits_masked() -> None:
    assert formats.integers(Script([0xFF, 0xFE, 0x01, 0x00]), 4, 0, 3) == [3, 2, 1, 0]
    assert formats.integers(Script([0x03, 0x02, 0x01, 0x00]), 4, 10, 13) == [13, 12, 11, 10]


def test_few_integers_redraw_only_rejected_positions() -> None:
    # 0..5 takes 3 bits a draw: 7 is discarded (7 % 6 would give 1), 2 kept, then 5 for slot 0
    source = Script([0x07, 0x02, 0x05])
    assert formats.integers(source, 2, 0, 5) == [5, 2]
    assert source.calls == [2, 1]


def test_many_integers_cut_k_bit_fields_most_significant_first() -> None:
    assert formats.integers(Script([0b11_10_01_00] * 64), 256, 0, 3) == [3, 2, 1, 0] * 64


def test_many_integers_redraw_only_rejected_positions() -> None:
    # 129 three-bit draws: 7 (discarded) then 2 x 128; one redraw 0b101 = 5 for slot 0
    bits = int("111" + "010" * 128 + "0" * 5, 2)
    source = Script(bits.to_bytes(49, "big") + bytes([0b101_00000]))
    assert formats.integers(source, 129, 0, 5) == [5] + [2] * 128
    assert source.calls == [49, 1]


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        (1, 6),
        (0, 1),
        (-3, 3),
        (0, 2**64 - 1),
        (-(2**63), 2**63 - 1),
        (2**63, 2**64 + 5),
        (-(2**64), -(2**64) + 9),
        (-(2**100), 2**100),
        (10**30, 10**30 + 999),
    ],
)
def test_integers_stay_in_range_and_are_python_ints(lo: int, hi: int) -> None:
    values = formats.integers(seeded(2), 500, lo, hi)
    assert len(values) == 500
    assert all(type(v) is int and lo <= v <= hi for v in values)


def test_integers_full_64_bit_range_hits_both_halves() -> None:
    values = formats.integers(seeded(3), 200, -(2**63), 2**63 - 1)
    assert min(values) < 0 < max(values)


def test_integers_batch_their_reads() -> None:
    source = Counting(seeded(4))
    values = formats.integers(source, 10_000, 1, 6)
    assert sorted(set(values)) == [1, 2, 3, 4, 5, 6]
    # one read per rejection round; 3 bits per draw, 3/4 kept: about 5 kB in all
    assert source.calls <= 40
    assert source.nbytes < 10_000 * 3 / 8 * 1.5


def test_integers_zero_count_reads_nothing() -> None:
    assert formats.integers(no_reads, 0, 1, 6) == []


# --- floats and gaussians --------------------------------------------------


def test_floats_are_k_over_2_pow_53() -> None:
    assert formats.floats(zeros, 3) == [0.0, 0.0, 0.0]
    assert formats.floats(ones, 2) == [1.0 - 2.0**-53] * 2
    values = formats.floats(seeded(5), 1000)
    assert all(type(v) is float and 0.0 <= v < 1.0 for v in values)
    assert all((v * 2.0**53).is_integer() for v in values)


def test_floats_use_53_bits_each() -> None:
    source = Counting(seeded(6))
    assert len(formats.floats(source, 8)) == 8
    assert source.nbytes == 8 * 53 // 8


def test_gaussians_never_take_log_of_zero() -> None:
    with np.errstate(all="raise"):
        low = formats.gaussians(zeros, 4)
        high = formats.gaussians(ones, 4)
    assert all(np.isfinite(low)) and max(abs(v) for v in low) > 8.0
    assert high == [0.0] * 4


def test_gaussians_shift_and_scale() -> None:
    assert formats.gaussians(ones, 3, mean=5.0, stddev=2.0) == [5.0] * 3
    assert formats.gaussians(seeded(7), 5, mean=-1.5, stddev=0.0) == [-1.5] * 5
    values = formats.gaussians(seeded(7), 1001, mean=100.0, stddev=0.001)
    assert len(values) == 1001
    assert all(type(v) is float and 99.9 < v < 100.1 for v in values)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"stddev": -1.0}, ValidationError),
        ({"stddev": float("inf")}, ValidationError),
        ({"stddev": float("nan")}, ValidationError),
        ({"mean": float("nan")}, ValidationError),
        ({"mean": 10**400}, ValidationError),
        ({"mean": "0"}, InvalidRequest),
        ({"stddev": True}, InvalidRequest),
    ],
)
def test_gaussians_reject_bad_parameters(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        formats.gaussians(no_reads, 1, **kwargs)  # type: ignore[arg-type]


# --- uuids -----------------------------------------------------------------


def test_uuid4s_set_version_and_variant_bits() -> None:
    assert formats.uuid4s(zeros, 1) == ["00000000-0000-4000-8000-000000000000"]
    assert formats.uuid4s(ones, 1) == ["ffffffff-ffff-4fff-bfff-ffffffffffff"]
    values = formats.uuid4s(seeded(8), 300)
    assert len(set(values)) == 300
    for value in values:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


# --- strings and alphabets -------------------------------------------------


def test_named_alphabets() -> None:
    sizes = {
        "alnum": 62,
        "alpha": 52,
        "lower": 26,
        "upper": 26,
        "digits": 10,
        "hex": 16,
        "base64url": 64,
        "base32": 32,
        "printable": 94,
    }
    assert {name: len(chars) for name, chars in ALPHABETS.items()} == sizes
    for chars in ALPHABETS.values():
        assert len(set(chars)) == len(chars)
        assert not any(c.isspace() for c in chars)
    assert set(ALPHABETS["printable"]) == {chr(c) for c in range(0x21, 0x7F)}
    assert set(ALPHABETS["base32"]) == set(string.ascii_uppercase + "234567")
    assert set(ALPHABETS["hex"]) == set("0123456789abcdef")


def test_resolve_alphabet() -> None:
    assert formats.resolve_alphabet("hex") == "0123456789abcdef"
    assert formats.resolve_alphabet("xyz") == "xyz"
    assert formats.resolve_alphabet("αβγ🎲") == "αβγ🎲"
    with pytest.raises(ValidationError, match="empty"):
        formats.resolve_alphabet("")
    with pytest.raises(ValidationError, match="repeats"):
        formats.resolve_alphabet("abca")


def test_strings_have_requested_shape_and_alphabet() -> None:
    values = formats.strings(seeded(9), 50, 12, "αβγ🎲x")
    assert len(values) == 50
    assert all(len(v) == 12 and set(v) <= set("αβγ🎲x") for v in values)


def test_strings_map_indices_onto_alphabet_in_order() -> None:
    assert formats.strings(Script([0xFC, 0x01, 0x06, 0xFF]), 2, 2, "abcd") == ["ab", "cd"]


def test_strings_degenerate_shapes_read_nothing() -> None:
    assert formats.strings(no_reads, 3, 4, "z") == ["zzzz"] * 3
    assert formats.strings(no_reads, 3, 0, "ab") == ["", "", ""]
    assert formats.strings(no_reads, 0, 5, "ab") == []


@pytest.mark.parametrize(
    ("alphabet", "error"), [("", ValidationError), ("aa", ValidationError), (None, InvalidRequest)]
)
def test_strings_reject_bad_alphabets(alphabet: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        formats.strings(no_reads, 1, 1, alphabet)  # type: ignore[arg-type]


# --- shuffles --------------------------------------------------------------


def test_shuffle_returns_a_permutation_and_leaves_input_alone() -> None:
    items = list(range(100))
    shuffled = formats.shuffle(seeded(10), items)
    assert items == list(range(100))
    assert sorted(shuffled) == items
    assert shuffled != items


def test_shuffle_small_inputs_read_nothing() -> None:
    assert formats.shuffle(no_reads, []) == []
    assert formats.shuffle(no_reads, ["x"]) == ["x"]
    assert formats.shuffle(seeded(11), (c for c in "ab")) in (["a", "b"], ["b", "a"])


def test_shuffle_swaps_position_i_with_i_plus_draw() -> None:
    # offsets for positions 0, 1 are uniform on [0, 2] and [0, 1]; draws 2 then 1
    assert formats.shuffle(Script([0xFE, 0x01]), "abc") == ["c", "a", "b"]


def test_permutation_covers_the_range_once() -> None:
    values = formats.permutation(seeded(12), -5, 5)
    assert sorted(values) == list(range(-5, 6))
    assert formats.permutation(no_reads, 7, 7) == [7]


def test_sample_returns_distinct_members() -> None:
    population = list("abcdefghij")
    picked = formats.sample(seeded(13), population, 4)
    assert len(picked) == 4 == len(set(picked))
    assert set(picked) <= set(population)
    assert sorted(formats.sample(seeded(13), population, 10)) == population
    assert formats.sample(no_reads, population, 0) == []


def test_sample_huge_range_without_materialising_it() -> None:
    picked = formats.sample(seeded(14), range(10**18), 5)
    assert len(set(picked)) == 5 and all(0 <= p < 10**18 for p in picked)


# --- argument checks -------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: formats.bits(no_reads, -1), ValidationError, "n must be at least 0"),
        (lambda: formats.bits(no_reads, 1.5), InvalidRequest, "n must be an integer"),  # type: ignore[arg-type]
        (lambda: formats.bits(no_reads, True), InvalidRequest, "not a boolean"),
        (lambda: formats.randbelow(no_reads, 0), ValidationError, "n must be at least 1"),
        (lambda: formats.randint(no_reads, 3, 2), ValidationError, r"lo \(3\) must not exceed"),
        (lambda: formats.randint(no_reads, 2**999, 0), ValidationError, "1000-bit integer"),
        (lambda: formats.integers(no_reads, -1, 1, 6), ValidationError, "count"),
        (lambda: formats.integers(no_reads, 3, 6, 1), ValidationError, "lo"),
        (lambda: formats.integers(no_reads, 3, "1", 6), InvalidRequest, "lo must be"),  # type: ignore[arg-type]
        (lambda: formats.floats(no_reads, -2), ValidationError, "count"),
        (lambda: formats.uuid4s(no_reads, -1), ValidationError, "count"),
        (lambda: formats.strings(no_reads, 1, -1, "ab"), ValidationError, "length"),
        (lambda: formats.permutation(no_reads, 1, 0), ValidationError, "lo"),
        (lambda: formats.sample(no_reads, [1, 2], 3), ValidationError, "population size"),
        (lambda: formats.sample(no_reads, [1, 2], -1), ValidationError, "k must be"),
        (lambda: formats.sample(no_reads, {1, 2}, 1), InvalidRequest, "sequence"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_raise_clear_errors(
    call: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


def test_numpy_integers_are_accepted() -> None:
    assert len(formats.integers(seeded(15), np.int64(3), np.int32(1), np.uint8(6))) == 3  # type: ignore[arg-type]


def test_short_read_from_the_source_fails_closed() -> None:
    with pytest.raises(QuantumRNGError, match="returned 1 bytes, expected 2"):
        formats.bits(lambda n: b"\x00", 16)
    with pytest.raises(QuantumRNGError):
        formats.integers(lambda n: b"", 10, 1, 6)


# -- BytesRandom: a random.Random over a byte source -------------------------------------


class Counted(formats.BytesRandom):
    """A BytesRandom over a seeded byte stream that records every read; floats refused."""

    def __init__(self, seed: int = 0) -> None:
        self.stream = random.Random(seed)
        self.reads: list[bytes] = []
        super().__init__()

    def _bytes(self, n: int) -> bytes:
        out = self.stream.randbytes(n)
        self.reads.append(out)
        return out


def no_floats(rnd: formats.BytesRandom) -> None:
    def refuse() -> float:
        raise AssertionError("a float was drawn")

    rnd.random = refuse  # type: ignore[method-assign]


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(-(10**300), 10**300),
    width=st.integers(2, 10**400).filter(lambda w: w & (w - 1) != 0),
    seed=st.integers(0, 2**32),
)
def test_randrange_of_any_size_is_exact_rejection_sampling_of_whole_bytes(
    start: int, width: int, seed: int
) -> None:
    rnd = Counted(seed)
    no_floats(rnd)
    value = rnd.randrange(start, start + width)
    k = width.bit_length()
    shift = -k % 8
    drawn = [int.from_bytes(r, "big") >> shift for r in rnd.reads]
    assert all(len(r) == (k + 7) // 8 for r in rnd.reads)
    assert all(d >= width for d in drawn[:-1]) and drawn[-1] < width  # rejected, then kept
    assert value == start + drawn[-1]  # every bit of the draw, no float rounding


def test_the_low_digits_of_a_huge_range_are_uniform() -> None:
    rnd = Counted(7)
    no_floats(rnd)
    last_digits = [rnd.randrange(10**100) % 10 for _ in range(5000)]
    counts = [last_digits.count(d) for d in range(10)]
    assert min(counts) > 400 and max(counts) < 600  # floats would give multiples of 2**280


def test_choice_shuffle_sample_and_randint_draw_bits_not_floats() -> None:
    rnd = Counted(3)
    no_floats(rnd)
    big = range(10**30)
    assert rnd.choice(big[: 10**6]) in big
    deck = list(range(100))
    rnd.shuffle(deck)
    assert sorted(deck) == list(range(100)) and deck != list(range(100))
    assert len(set(rnd.sample(range(10**18), 50))) == 50
    assert -(10**50) <= rnd.randint(-(10**50), 10**50) <= 10**50
    assert rnd.reads


def test_getrandbits_randbytes_and_random_read_whole_bytes() -> None:
    rnd = Counted(5)
    assert len(rnd.randbytes(33)) == 33 and len(rnd.reads[-1]) == 33
    value = rnd.getrandbits(13)
    assert len(rnd.reads[-1]) == 2 and value == int.from_bytes(rnd.reads[-1], "big") >> 3
    assert rnd.getrandbits(0) == 0 and rnd.randbytes(0) == b""
    with pytest.raises(ValueError):
        rnd.getrandbits(-1)
    with pytest.raises(ValueError):
        rnd.randbytes(-1)


def test_random_uses_53_bits() -> None:
    class Fixed(formats.BytesRandom):
        def __init__(self, data: bytes) -> None:
            self.data = data
            super().__init__()

        def _bytes(self, n: int) -> bytes:
            assert n == 7
            return self.data

    assert Fixed(b"\xff" * 7).random() == 1.0 - 2.0**-53
    assert Fixed(b"\x00" * 6 + b"\x08").random() == 2.0**-53
    assert Fixed(b"\x00" * 6 + b"\x07").random() == 0.0


def test_seeding_warns_and_state_is_refused() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnd = Counted()  # construction seeds nothing, so it warns of nothing
    for args in ((), (42,), ("text",), (None,)):
        with pytest.warns(RuntimeWarning, match=r"Counted cannot be seeded.*random.Random\(seed\)"):
            rnd.seed(*args)
    with pytest.raises(NotImplementedError, match=r"no state to save.*random.Random\(seed\)"):
        rnd.getstate()
    with pytest.raises(NotImplementedError, match="no state to restore"):
        rnd.setstate(random.Random(1).getstate())
    with pytest.raises(NotImplementedError):
        pickle.dumps(rnd)
