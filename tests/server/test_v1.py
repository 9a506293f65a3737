"""v1: the prototype's two endpoints, same URLs and keys, exact lengths, JSON errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.support import Served, assert_error, serve_memory


@pytest.fixture
def served(tmp_path: Path) -> Served:
    return serve_memory(tmp_path, max_json_bytes=4096)


def test_get_bits_is_64_bytes_base64_under_the_prototype_key(served: Served) -> None:
    r = served.client.get("/api/v1/qrng/get_bits")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert list(body) == ["512_qrng_bits"]
    assert len(base64.b64decode(body["512_qrng_bits"], validate=True)) == 64


def test_get_bits_answers_differ(served: Served) -> None:
    seen = {served.client.get("/api/v1/qrng/get_bits").json()["512_qrng_bits"] for _ in range(20)}
    assert len(seen) == 20


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(n=st.integers(min_value=1, max_value=8 * 4096))
def test_get_num_bits_is_exactly_ceil_n_over_8_bytes_top_bits_zero(served: Served, n: int) -> None:
    r = served.client.get(f"/api/v1/qrng/get_num_bits/{n}")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert list(body) == ["qrng_bits"]
    data = base64.b64decode(body["qrng_bits"], validate=True)
    assert len(data) == (n + 7) // 8
    assert int.from_bytes(data, "big") < 1 << n


def test_get_num_bits_keeps_leading_zero_bytes(served: Served) -> None:
    # 9 bits: the first byte holds one bit, so it is zero in half the answers
    answers = [
        base64.b64decode(served.client.get("/api/v1/qrng/get_num_bits/9").json()["qrng_bits"])
        for _ in range(60)
    ]
    assert {len(a) for a in answers} == {2}
    assert {a[0] for a in answers} == {0, 1}


@pytest.mark.parametrize(
    ("n", "status"),
    [
        ("abc", 400),
        ("1.5", 400),
        ("1e3", 400),
        ("0x10", 400),
        ("%20", 400),
        ("0", 422),
        ("-8", 422),
        (str(8 * 4096 + 1), 413),
        ("9" * 40, 413),
    ],
)
def test_bad_n_is_a_json_error_never_a_500(served: Served, n: str, status: int) -> None:
    assert_error(served.client.get(f"/api/v1/qrng/get_num_bits/{n}"), status)


def test_missing_n_is_a_json_404(served: Served) -> None:
    assert_error(served.client.get("/api/v1/qrng/get_num_bits/"), 404, "not_found")


def test_empty_pool_fails_closed_with_503_and_retry_after(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=0)
    r = served.client.get("/api/v1/qrng/get_bits")
    assert_error(r, 503, "not_seeded")
    assert int(r.headers["retry-after"]) >= 1
    assert "cache-control" not in r.headers or "512_qrng_bits" not in r.text


@pytest.mark.parametrize("source", ["simulator", "os"])
@pytest.mark.parametrize("url", ["/api/v1/qrng/get_bits", "/api/v1/qrng/get_num_bits/12"])
def test_v1_answers_name_mode_and_source_in_headers(tmp_path: Path, source: str, url: str) -> None:
    served = serve_memory(tmp_path, source=source)
    r = served.client.get(url)
    assert r.status_code == 200
    assert r.headers["x-qrng-mode"] == "drbg"
    assert r.headers["x-qrng-source"] == source
    assert len(r.json()) == 1  # the body keeps the prototype's one key


@pytest.mark.parametrize("url", ["/api/v1/qrng/get_bits?x=%FF", "/api/v1/qrng/get_bits?%C3=1"])
def test_a_query_that_is_not_utf8_is_400_though_v1_ignores_unknown_names(
    served: Served, url: str
) -> None:
    error = assert_error(served.client.get(url), 400, "invalid_request")
    assert "UTF-8" in error["message"]


@pytest.mark.parametrize("n", ["%FF", "1%C3", "%ED%A0%80"])
def test_a_path_that_is_not_utf8_is_400_naming_utf8(served: Served, n: str) -> None:
    error = assert_error(served.client.get(f"/api/v1/qrng/get_num_bits/{n}"), 400)
    assert "UTF-8" in error["message"] and "\ufffd" not in error["message"]


@pytest.mark.parametrize("n", ["%EF%BC%91%EF%BC%92", "%D9%A1%D9%A2", "1_2", "%2B%2B1"])
def test_n_takes_only_ascii_digits(served: Served, n: str) -> None:
    error = assert_error(served.client.get(f"/api/v1/qrng/get_num_bits/{n}"), 400)
    assert error["message"] == "n must be an integer"
