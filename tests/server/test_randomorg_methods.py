"""RANDOM.ORG's method table without a server: parameter checks answer RANDOM.ORG's codes,
producers stay within what was asked, pregenerated randomization repeats."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.errors import (
    AuthenticationError,
    PermissionDenied,
    QuantumRNGError,
    RateLimited,
    Unavailable,
)
from quantumrng.server.randomorg.errors import RpcError, from_error
from quantumrng.server.randomorg.methods import BASIC, METHODS, parse, pregenerated_reader

INTEGERS = BASIC["generateIntegers"]
SEQUENCES = BASIC["generateIntegerSequences"]
STRINGS = BASIC["generateStrings"]
BOUND = 1_000_000_000


def produce(name: str, params: dict[str, Any]) -> Any:
    method = BASIC[name]
    args, _ = parse(method, False, {"apiKey": "k", **params})
    return method.produce(os.urandom, args)


def code_of(method_name: str, params: dict[str, Any], signed: bool = False) -> RpcError:
    with pytest.raises(RpcError) as caught:
        parse(BASIC[method_name], signed, {"apiKey": "k", **params})
    return caught.value


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_n_outside_1_to_10000_is_202_naming_the_range(n: int) -> None:
    params = {"n": n, "min": 1, "max": 6}
    if 1 <= n <= 10_000:
        assert parse(INTEGERS, False, {"apiKey": "k", **params})[0]["n"] == n
    else:
        error = code_of("generateIntegers", params)
        assert error.to_json() == {
            "code": 202,
            "message": "Parameter 'n' is out of range; allowable values are [1,10000]",
            "data": ["n", 1, 10_000],
        }


@settings(max_examples=60)
@given(
    st.integers(min_value=-BOUND, max_value=BOUND),
    st.integers(min_value=0, max_value=2_000),
    st.integers(min_value=1, max_value=50),
    st.sampled_from([2, 8, 10, 16]),
    st.booleans(),
)
def test_integers_are_within_bounds_in_their_base(
    low: int, span: int, n: int, base: int, replacement: bool
) -> None:
    high = min(BOUND, low + span)
    params = {"n": n, "min": low, "max": high, "base": base, "replacement": replacement}
    if not replacement and n > high - low + 1:
        assert code_of("generateIntegers", params).code == 301
        return
    values = produce("generateIntegers", params)
    numbers = values if base == 10 else [int(v, base) for v in values]
    assert all(low <= v <= high for v in numbers) and len(numbers) == n
    if not replacement:
        assert len(set(numbers)) == n


@settings(max_examples=40)
@given(st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=8))
def test_multiform_sequences_have_each_length_asked(lengths: list[int]) -> None:
    n = len(lengths)
    values = produce(
        "generateIntegerSequences",
        {"n": n, "length": lengths, "min": [0] * n, "max": [100] * n},
    )
    assert [len(s) for s in values] == lengths


def test_a_multiform_list_of_the_wrong_size_is_refused() -> None:
    params = {"n": 2, "length": [1, 2, 3], "min": 0, "max": 5}
    assert code_of("generateIntegerSequences", params).code == 304


def test_sequences_over_10000_values_in_all_are_refused() -> None:
    assert (
        code_of("generateIntegerSequences", {"n": 2, "length": 6000, "min": 0, "max": 9}).code
        == 302
    )


@settings(max_examples=40)
@given(st.integers(min_value=1, max_value=14), st.integers(min_value=1, max_value=100))
def test_decimal_fractions_have_at_most_their_places(places: int, n: int) -> None:
    values = produce("generateDecimalFractions", {"n": n, "decimalPlaces": places})
    assert all(0 <= v < 1 and round(v, places) == v for v in values)


@settings(max_examples=40)
@given(st.integers(min_value=2, max_value=14))
def test_gaussians_round_to_their_significant_digits(digits: int) -> None:
    params = {"n": 20, "mean": 5.0, "standardDeviation": -3.0, "significantDigits": digits}
    values = produce("generateGaussians", params)
    assert all(float(f"{v:.{digits}g}") == v for v in values)


@settings(max_examples=40)
@given(
    st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8, unique=True), st.integers(1, 4)
)
def test_unique_strings_use_only_their_characters(chars: list[str], length: int) -> None:
    characters = "".join(chars)
    n = min(20, len(characters) ** length)
    values = produce(
        "generateStrings",
        {"n": n, "length": length, "characters": characters, "replacement": False},
    )
    assert len(set(values)) == n
    assert all(len(v) == length and set(v) <= set(characters) for v in values)


def test_repeated_characters_and_bad_bases_are_refused() -> None:
    assert code_of("generateStrings", {"n": 1, "length": 2, "characters": "aa"}).code == 204
    assert code_of("generateIntegers", {"n": 1, "min": 0, "max": 1, "base": 3}).code == 203


def test_blobs_must_be_whole_bytes_and_at_most_2_to_the_20_bits() -> None:
    assert code_of("generateBlobs", {"n": 1, "size": 12}).code == 303
    assert code_of("generateBlobs", {"n": 2, "size": 1 << 20}).code == 302


@pytest.mark.parametrize(
    "params",
    [
        {"n": 1, "length": 4, "chars": "abc"},  # RANDOM.ORG's own example
        {"n": "5", "length": 4, "characters": "abc"},
        {"n": True, "length": 4, "characters": "abc"},
        {"length": 4, "characters": "abc"},
    ],
)
def test_wrong_missing_or_mistyped_parameters_are_invalid_params(params: dict[str, Any]) -> None:
    assert code_of("generateStrings", params).code == -32602


def test_signed_parameters_only_on_signed_methods() -> None:
    assert code_of("generateUUIDs", {"n": 1, "userData": "x"}).code == -32602
    method, signed = METHODS["generateSignedUUIDs"]
    assert signed and parse(method, True, {"apiKey": "k", "n": 1, "userData": "x"})[0]["n"] == 1


@given(st.text(min_size=1, max_size=64))
def test_pregenerated_randomization_repeats_for_an_id(identifier: str) -> None:
    assert pregenerated_reader({"id": identifier})(48) == pregenerated_reader({"id": identifier})(
        48
    )


def test_pregenerated_dates_and_ids_differ_and_future_dates_are_refused() -> None:
    first = pregenerated_reader({"date": "2020-01-01"})(32)
    assert first != pregenerated_reader({"date": "2020-01-02"})(32)
    assert first != pregenerated_reader({"id": "2020-01-01"})(32)
    future = {"n": 1, "pregeneratedRandomization": {"date": "2999-01-01"}}
    assert code_of("generateUUIDs", future).code == 305


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AuthenticationError("bad key"), 400),
        (PermissionDenied("no scope"), 404),
        (RateLimited("rate", headers={"RateLimit-Policy": "2;w=2"}), 402),
        (RateLimited("quota", headers={"RateLimit-Policy": "100;w=86400"}), 403),
        (Unavailable("down"), 100),
    ],
)
def test_our_errors_map_to_random_org_codes(error: QuantumRNGError, code: int) -> None:
    assert from_error(error).code == code
