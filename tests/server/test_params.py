"""Parameter parsing: typed values, 400 for malformed, 422 out of range, 413 above a size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from quantumrng.errors import InvalidRequest, PayloadTooLarge, ValidationError
from quantumrng.server.params import MAX_INT_DIGITS, Param, parse_query, require_utf8

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


def test_floats_beyond_the_double_range_are_422() -> None:
    with pytest.raises(ValidationError):
        X.parse("1e999")


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0.0), ("+2", 2.0), ("1.5", 1.5), ("2e3", 2000.0), ("2E+3", 2000.0), ("25e-1", 2.5)],
)
def test_floats_in_the_ascii_decimal_grammar_parse(text: str, value: float) -> None:
    assert X.parse(text) == value


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_every_finite_float_round_trips_through_its_repr(x: float) -> None:
    assert X.parse(repr(x)) == x


@pytest.mark.parametrize(
    "text",
    [
        "nan", "NaN", "inf", "-inf", "Infinity", "1_0", "1_000.5", " 1", "1 ", "\t1", "1\n",
        "\uff11\uff10", "\u0661\u0660", "\u0967", "1.", ".5", "1e", "e3", "+-1", "0x10", "",
        "1.5\u0661",
    ],
)  # fmt: skip
def test_floats_outside_the_ascii_decimal_grammar_are_400(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        X.parse(text)
    assert type(info.value) is InvalidRequest
    assert info.value.message == _message(X, "?")  # the same whatever was sent


def _message(param: Param, text: str) -> str:
    with pytest.raises(InvalidRequest) as info:
        param.parse(text)
    return info.value.message


@given(st.text(st.characters(categories=["Nd"]), min_size=1).filter(lambda t: not t.isascii()))
def test_ints_and_floats_refuse_the_same_non_ascii_digits(text: str) -> None:
    for param in (N, LO, X):
        assert _message(param, text) == _message(param, "?")


@pytest.mark.parametrize("raw", [b"a=%FF", b"s=ab%C3", b"%FE=1", b"a=\xff", b"a=%ED%A0%80"])
def test_a_query_that_is_not_utf8_once_decoded_is_400(raw: bytes) -> None:
    with pytest.raises(InvalidRequest, match="UTF-8") as info:
        require_utf8(raw, "query")
    assert type(info.value) is InvalidRequest


@pytest.mark.parametrize(
    "raw", [b"", b"n=5&mode=raw", b"a=%E2%82%AC", b"a=\xe2\x82\xac", b"a=%25FF"]
)
def test_utf8_queries_pass(raw: bytes) -> None:
    require_utf8(raw, "query")


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
