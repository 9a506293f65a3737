"""Parameter parsing: typed values, 400 for malformed, 422 out of range, 413 above a size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from quantumrng.errors import InvalidRequest, PayloadTooLarge, ValidationError
from quantumrng.server.params import MAX_INT_DIGITS, Param, parse_query

N = Param("n", "int", "count", default=1, minimum=1, maximum=1000, too_large=True)
LO = Param("lo", "bigint", "bound", required=True)
X = Param("x", "float", "real", default=0.0, minimum=0)
MODE = Param("mode", "enum", "mode", default="a", choices=("a", "b"))


@given(st.integers(1, 1000))
def test_ints_in_range_parse_exactly(n: int) -> None:
    assert N.parse(str(n)) == n
    assert N.parse(f"+{n}") == n


@given(st.integers(1001, 10**30))
def test_ints_above_a_size_maximum_are_413(n: int) -> None:
    with pytest.raises(PayloadTooLarge):
        N.parse(str(n))


@given(st.integers(max_value=0))
def test_ints_below_the_minimum_are_422(n: int) -> None:
    with pytest.raises(ValidationError):
        N.parse(str(n))


@given(st.text().filter(lambda t: not t.strip("+-").isdecimal()))
def test_non_integers_are_400(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        N.parse(text)
    assert type(info.value) is InvalidRequest


@given(st.integers(-(10**400), 10**400))
def test_big_ints_of_any_size_up_to_the_digit_limit(n: int) -> None:
    assert LO.parse(str(n)) == n


def test_too_many_digits_is_422() -> None:
    with pytest.raises(ValidationError):
        LO.parse("1" * (MAX_INT_DIGITS + 1))


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_floats_are_422(text: str) -> None:
    with pytest.raises(ValidationError):
        X.parse(text)


def test_parse_query_defaults_required_unknown_and_repeated() -> None:
    params = (N, LO, MODE)
    assert parse_query(QueryParams("lo=-5"), params) == {"n": 1, "lo": -5, "mode": "a"}
    for query in ("", "lo=1&zzz=2", "lo=1&lo=2", "lo=1&mode=c"):
        with pytest.raises(InvalidRequest) as info:
            parse_query(QueryParams(query), params)
        assert type(info.value) is InvalidRequest
    assert parse_query(QueryParams("lo=1&zzz=2"), params, strict=False)["lo"] == 1


def test_schema_carries_the_bounds() -> None:
    assert N.openapi() == {
        "name": "n",
        "in": "query",
        "required": False,
        "description": "count",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1},
    }
    assert MODE.schema()["enum"] == ["a", "b"]
