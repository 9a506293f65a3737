"""v2: formats, byte streams, modes, provenance, limits and access wiring."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from quantumrng.accounting import SourceFailure
from quantumrng.errors import SourceFailed
from quantumrng.formats import ALPHABETS
from quantumrng.server.access import Access
from quantumrng.server.keys import KeyStore
from quantumrng.server.routing import redirect_slashes_relatively
from tests.conftest import make_settings
from tests.server.support import Served, TestClient, assert_error, serve_memory

LIMITS: dict[str, Any] = {"max_json_bytes": 1 << 16, "max_items": 5000, "max_bytes": 8 << 20}
FIXTURE_OK = [HealthCheck.function_scoped_fixture]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    served = serve_memory(tmp_path, blocks=256, **LIMITS)
    with served.client:
        yield served


def ok(served: Served, url: str) -> dict[str, Any]:
    r = served.client.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert {"data", "mode", "source"} <= set(body)
    return dict(body)


# --- envelope and provenance ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v2/bytes?n=16",
        "/api/v2/bits?n=7",
        "/api/v2/integers?min=1&max=6",
        "/api/v2/floats",
        "/api/v2/gaussians",
        "/api/v2/uuids",
        "/api/v2/strings",
        "/api/v2/shuffle?min=1&max=5",
    ],
)
@pytest.mark.parametrize("mode", ["drbg", "raw"])
def test_every_answer_names_mode_and_simulator_source(served: Served, url: str, mode: str) -> None:
    body = ok(served, f"{url}&mode={mode}" if "?" in url else f"{url}?mode={mode}")
    assert body["mode"] == mode
    source = body["source"]
    assert source["kind"] == "simulator"
    assert source["quantum"] is False
    assert source["credited_bits"] == 0
    assert source["harvests"] and all(h["harvest_id"] for h in source["harvests"])


def test_drbg_source_is_the_seed_blocks_harvest(served: Served) -> None:
    body = ok(served, "/api/v2/bytes?n=8")
    seed = served.node.engine.seed_info
    assert seed is not None
    assert [h["harvest_id"] for h in body["source"]["harvests"]] == [seed.provenance.harvest_id]
    assert body["source"]["seeded_at"] == seed.seeded_at


def test_credited_source_reports_its_credit(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, source="file", blocks=8, allow_uncredited_raw=False)
    body = ok(served, "/api/v2/bytes?n=100&mode=raw")
    assert body["source"]["kind"] == "file"
    assert body["source"]["credited_bits"] == 2 * 512  # two 64-byte blocks taken


@pytest.mark.parametrize("source", ["simulator", "os"])
@pytest.mark.parametrize("url", ["/api/v2/bytes?n=16", "/api/v2/integers?n=3&min=1&max=6"])
def test_raw_from_a_zero_credit_source_is_refused_unless_allowed(
    tmp_path: Path, source: str, url: str
) -> None:
    served = serve_memory(tmp_path, source=source, blocks=8, allow_uncredited_raw=False)
    error = assert_error(served.client.get(url + "&mode=raw"), 409, "raw_not_credited")
    assert source in error["message"] and "mode=drbg" in error["message"]
    assert served.node.pool.level().blocks == 8  # nothing was taken
    assert served.client.get(url).status_code == 200  # drbg mode is unaffected
    allowed = serve_memory(tmp_path / "allowed", source=source, blocks=8)
    assert ok(allowed, url + "&mode=raw")["source"]["credited_bits"] == 0


def test_raw_blocks_not_credited_full_entropy_are_refused(tmp_path: Path) -> None:
    served = serve_memory(
        tmp_path, source="file", blocks=8, credited_bits=0, allow_uncredited_raw=False
    )
    assert_error(served.client.get("/api/v2/bytes?n=16&mode=raw"), 409, "raw_not_credited")


def test_raw_and_ready_are_503_while_the_source_is_stopped(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, source="file", blocks=8, allow_uncredited_raw=False)
    assert served.client.get("/ready").status_code == 200
    served.node.ledger.record_failure(SourceFailure("file", "apt", 5, 0.0))
    error = assert_error(served.client.get("/api/v2/bytes?n=16&mode=raw"), 503, "source_failed")
    assert "'apt' failed persistently on stream 5" in error["message"]
    assert_error(served.client.get("/ready"), 503, "source_failed")
    with pytest.raises(SourceFailed):  # the DRBG is not reseeded from a stopped source
        served.node.engine.reseed()
    status = served.client.get("/api/v2/status").json()
    assert status["source_state"]["test"] == "apt" and status["source_state"]["stream"] == 5
    served.node.ledger.clear_failure()
    assert served.client.get("/api/v2/bytes?n=16&mode=raw").status_code == 200


# --- bytes ---------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(n=st.integers(1, 1 << 16), fmt=st.sampled_from(["base64", "hex"]))
def test_bytes_have_exactly_n_bytes(served: Served, n: int, fmt: str) -> None:
    data = ok(served, f"/api/v2/bytes?n={n}&format={fmt}")["data"]
    raw = bytes.fromhex(data) if fmt == "hex" else base64.b64decode(data, validate=True)
    assert len(raw) == n


def test_raw_format_streams_octets_with_content_length(served: Served) -> None:
    n = 3 * (1 << 20) + 5  # several stream chunks and a partial one
    r = served.client.get(f"/api/v2/bytes?n={n}&format=raw")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-length"] == str(n)
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-qrng-source"] == "simulator"
    assert len(r.content) == n
    chunks = {r.content[i : i + 16] for i in range(0, n - 16, 16)}
    assert len(chunks) == n // 16


def test_raw_mode_takes_pool_blocks_once(served: Served) -> None:
    before = served.node.pool.level().blocks
    first = ok(served, "/api/v2/bytes?n=640&mode=raw&format=hex")["data"]
    second = ok(served, "/api/v2/bytes?n=640&mode=raw&format=hex")["data"]
    assert served.node.pool.level().blocks == before - 20
    assert first != second


def test_raw_mode_takes_little_more_than_it_needs(served: Served) -> None:
    before = served.node.pool.level().blocks
    data = ok(served, "/api/v2/integers?n=100&min=0&max=999&mode=raw")["data"]
    assert len(data) == 100
    # about 125-200 bytes needed: a few blocks, not a large read-ahead
    assert 2 <= before - served.node.pool.level().blocks <= 8


def test_randomness_routes_refuse_head(served: Served) -> None:
    assert served.client.head("/api/v2/bytes?n=1000000&format=raw").status_code == 405
    assert served.client.head("/health").status_code == 200


def test_raw_mode_fails_closed_when_the_pool_runs_dry(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=3, **LIMITS)
    assert ok(served, "/api/v2/bytes?n=128&mode=raw")["mode"] == "raw"
    r = served.client.get("/api/v2/bytes?n=128&mode=raw")
    assert_error(r, 503, "entropy_unavailable")
    assert int(r.headers["retry-after"]) >= 1
    assert served.node.pool.level().blocks == 1  # a refused take removes nothing


def test_raw_mode_octets(served: Served) -> None:
    r = served.client.get("/api/v2/bytes?n=100&mode=raw&format=raw")
    assert r.status_code == 200
    assert len(r.content) == 100
    assert r.headers["x-qrng-mode"] == "raw"


@pytest.mark.parametrize(
    ("query", "status"),
    [
        (f"n={(1 << 16) + 1}", 413),  # JSON answers stop at max_json_bytes
        (f"n={(1 << 16) + 1}&mode=raw&format=raw", 413),
        (f"n={(8 << 20) + 1}&format=raw", 413),  # streams stop at max_bytes
        ("n=0", 422),
        ("n=ten", 400),
        ("format=bin", 400),
        ("mode=quantum", 400),
        ("n=1&n=2", 400),
        ("count=3", 400),
    ],
)
def test_bytes_rejects(served: Served, query: str, status: int) -> None:
    assert_error(served.client.get(f"/api/v2/bytes?{query}"), status)


# --- formats -------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(n=st.integers(1, 4000), fmt=st.sampled_from(["string", "hex", "base64"]))
def test_bits_are_exactly_n(served: Served, n: int, fmt: str) -> None:
    data = ok(served, f"/api/v2/bits?n={n}&format={fmt}")["data"]
    if fmt == "string":
        assert len(data) == n and set(data) <= {"0", "1"}
        return
    raw = bytes.fromhex(data) if fmt == "hex" else base64.b64decode(data)
    assert len(raw) == (n + 7) // 8 and int.from_bytes(raw, "big") < 1 << n


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    lo=st.integers(-(2**70), 2**70),
    width=st.integers(0, 2**70),
    n=st.integers(1, 50),
)
def test_integers_lie_in_range_and_big_ones_are_strings(
    served: Served, lo: int, width: int, n: int
) -> None:
    hi = lo + width
    data = ok(served, f"/api/v2/integers?n={n}&min={lo}&max={hi}")["data"]
    assert len(data) == n
    safe = lo >= -(2**53 - 1) and hi <= 2**53 - 1
    assert all(isinstance(v, int if safe else str) for v in data)
    assert all(lo <= int(v) <= hi for v in data)


def test_integers_with_huge_bounds(served: Served) -> None:
    lo, hi = -(10**300), 10**300
    data = ok(served, f"/api/v2/integers?n=5&min={lo}&max={hi}")["data"]
    assert all(lo <= int(v) <= hi for v in data)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("min=5&max=4", 422),
        ("max=4", 400),
        ("min=1", 400),
        ("min=1.5&max=4", 400),
        (f"min=0&max={'9' * 2000}", 422),
        ("n=5001&min=0&max=1", 413),
        ("n=0&min=0&max=1", 422),
    ],
)
def test_integers_reject(served: Served, query: str, status: int) -> None:
    assert_error(served.client.get(f"/api/v2/integers?{query}"), status)


def test_floats_are_in_the_unit_interval(served: Served) -> None:
    data = ok(served, "/api/v2/floats?n=5000")["data"]
    assert len(data) == 5000
    assert all(0.0 <= x < 1.0 for x in data)
    assert 0.45 < sum(data) / len(data) < 0.55


def test_gaussians_follow_mean_and_stddev(served: Served) -> None:
    data = ok(served, "/api/v2/gaussians?n=5000&mean=10&stddev=2")["data"]
    mean = sum(data) / len(data)
    var = sum((x - mean) ** 2 for x in data) / len(data)
    assert abs(mean - 10) < 0.2  # 7 standard errors
    assert 3.4 < var < 4.6


@pytest.mark.parametrize("query", ["stddev=-1", "stddev=1e999", "mean=-1e400"])
def test_gaussians_reject_out_of_range_floats_with_422(served: Served, query: str) -> None:
    assert_error(served.client.get(f"/api/v2/gaussians?{query}"), 422)


@pytest.mark.parametrize(
    "value",
    ["nan", "inf", "-Infinity", "1_0", "%201", "1%20", "%EF%BC%91%EF%BC%90", "%D9%A1%D9%A0", ".5"],
)
def test_gaussians_refuse_numbers_outside_the_ascii_grammar_with_400(
    served: Served, value: str
) -> None:
    error = assert_error(served.client.get(f"/api/v2/gaussians?mean={value}"), 400)
    assert error["code"] == "invalid_request"
    assert error == assert_error(served.client.get("/api/v2/gaussians?mean=x"), 400)


@pytest.mark.parametrize(
    "query",
    ["alphabet=ab%FF", "alphabet=%C3", "n=2&%FF=1", "alphabet=%ED%A0%80x"],
)
def test_a_query_that_is_not_utf8_is_400_not_replaced(served: Served, query: str) -> None:
    error = assert_error(served.client.get(f"/api/v2/strings?{query}"), 400, "invalid_request")
    assert "UTF-8" in error["message"] and "\ufffd" not in error["message"]


def test_a_repeated_alphabet_is_422_without_echoing_it(served: Served) -> None:
    r = served.client.get("/api/v2/strings", params={"alphabet": "€<b>€"})
    error = assert_error(r, 422, "validation_error")
    assert "€" not in error["message"] and "<b>" not in error["message"]


def test_uuids_are_version_4(served: Served) -> None:
    data = ok(served, "/api/v2/uuids?n=100")["data"]
    assert len(set(data)) == 100
    for text in data:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 4 and u.variant == uuid.RFC_4122


@pytest.mark.parametrize("name", sorted(ALPHABETS))
def test_strings_over_named_alphabets(served: Served, name: str) -> None:
    data = ok(served, f"/api/v2/strings?n=20&length=12&alphabet={name}")["data"]
    assert len(data) == 20
    assert all(len(s) == 12 and set(s) <= set(ALPHABETS[name]) for s in data)


def test_strings_over_a_custom_alphabet(served: Served) -> None:
    r = served.client.get("/api/v2/strings", params={"n": 50, "length": 8, "alphabet": "ab€"})
    data = r.json()["data"]
    assert set("".join(data)) == {"a", "b", "€"}


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("alphabet=aa", 422),
        ("alphabet=", 422),
        ("length=0", 422),
        (f"n=100&length={1 << 12}", 413),  # 400 KiB of characters > max_json_bytes
    ],
)
def test_strings_reject(served: Served, query: str, status: int) -> None:
    assert_error(served.client.get(f"/api/v2/strings?{query}"), status)


def test_shuffle_is_a_permutation(served: Served) -> None:
    data = ok(served, "/api/v2/shuffle?min=-3&max=996")["data"]
    assert sorted(data) == list(range(-3, 997))
    assert data != sorted(data)


def test_shuffle_beyond_js_range_is_strings(served: Served) -> None:
    lo = 2**60
    data = ok(served, f"/api/v2/shuffle?min={lo}&max={lo + 9}")["data"]
    assert sorted(int(v) for v in data) == list(range(lo, lo + 10))
    assert all(isinstance(v, str) for v in data)


@pytest.mark.parametrize(("query", "status"), [("min=0&max=5000", 413), ("min=2&max=1", 422)])
def test_shuffle_rejects(served: Served, query: str, status: int) -> None:
    assert_error(served.client.get(f"/api/v2/shuffle?{query}"), status)


def test_large_answers_leave_the_event_loop_and_still_arrive(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, max_items=100_000)
    assert len(ok(served, "/api/v2/floats?n=100000")["data"]) == 100_000


# --- trailing slashes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("/api/v2/bytes/", "/api/v2/bytes"),
        ("/api/v2/bytes/?n=4&format=hex", "/api/v2/bytes?n=4&format=hex"),
        ("/api/v2/bytes///?n=4", "/api/v2/bytes?n=4"),
        ("/api/v1/qrng/get_num_bits/12/", "/api/v1/qrng/get_num_bits/12"),
        ("/health/", "/health"),
    ],
)
def test_a_trailing_slash_redirects_relatively_whatever_the_host_header(
    served: Served, url: str, location: str
) -> None:
    r = served.client.get(url, headers={"Host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"] == location


def test_a_trailing_slash_still_reaches_the_route(served: Served) -> None:
    assert len(base64.b64decode(ok(served, "/api/v2/bytes/?n=5")["data"])) == 5


@pytest.mark.parametrize("url", ["//api/v2/bytes/", "//evil.example/", "/nowhere/"])
def test_no_redirect_without_a_route_or_to_another_host(served: Served, url: str) -> None:
    r = served.client.get(f"http://testserver{url}", follow_redirects=False)
    assert_error(r, 404, "not_found")
    assert "location" not in r.headers


@pytest.mark.parametrize("url", ["//evil.example/", "/\\evil.example/", "//evil.example//"])
def test_a_route_matching_anything_never_gets_a_protocol_relative_redirect(url: str) -> None:
    async def anything(request: Request) -> Response:
        return Response("ok")

    app = Starlette(routes=[Route("/{a:path}/{b}", anything), Route("/{b}", anything)])
    client = TestClient(app, base_url="http://testserver")
    assert client.get(f"http://testserver{url.rstrip('/')}").status_code == 200  # it would match
    redirect_slashes_relatively(app.router)
    r = client.get(f"http://testserver{url}", follow_redirects=False)
    assert r.status_code == 404 and "location" not in r.headers


# --- access wiring ---------------------------------------------------------------


def test_raw_mode_needs_the_raw_scope(tmp_path: Path) -> None:
    settings_ = make_settings(tmp_path, pool="memory", source="simulator", require_auth=True)
    store = KeyStore(settings_.keys_path)
    drbg_key, _ = store.create("drbg-only", {"drbg"}, None, None)
    raw_key, _ = store.create("raw", {"drbg", "raw"}, None, None)
    served = serve_memory(tmp_path, require_auth=True, access=Access(settings_, store), blocks=16)
    c = served.client
    r = c.get("/api/v2/bytes?n=8")
    assert_error(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert c.get("/api/v2/bytes?n=8", headers={"X-API-Key": drbg_key}).status_code == 200
    assert_error(c.get("/api/v2/bytes?n=8&mode=raw", headers={"X-API-Key": drbg_key}), 403)
    auth = {"Authorization": f"Bearer {raw_key}"}
    assert c.get("/api/v2/bytes?n=8&mode=raw", headers=auth).status_code == 200
    assert c.get("/api/v1/qrng/get_bits", headers=auth).status_code == 200
    assert_error(c.get("/api/v1/qrng/get_bits"), 401)


def test_rate_limit_is_429_with_retry_after_and_ratelimit_headers(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, rate_limit=0.001, rate_burst=2)
    c = served.client
    first = c.get("/api/v2/uuids")
    assert first.status_code == 200
    assert first.headers["ratelimit-limit"] == "2"
    assert c.get("/api/v1/qrng/get_bits").status_code == 200
    r = c.get("/api/v2/uuids")
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["ratelimit-remaining"] == "0"


def test_usage_reports_what_is_left(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, daily_bytes=1000)
    ok(served, "/api/v2/bytes?n=100")
    r = served.client.get("/api/v2/usage")
    assert r.status_code == 200
    assert r.json()["bytes_left"] == 900
    assert_error(served.client.get("/api/v2/bytes?n=901"), 429)
    assert_error(served.client.get("/api/v2/usage?x=1"), 400)


def test_quota_counts_the_randomness_a_format_needs(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, daily_bytes=1000)
    ok(served, "/api/v2/uuids?n=10")  # 160 bytes
    assert served.client.get("/api/v2/usage").json()["bytes_left"] == 840


def test_an_answer_that_fails_closed_costs_no_quota(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=2, daily_bytes=1000)
    ok(served, "/api/v2/bytes?n=64&mode=raw")
    assert_error(served.client.get("/api/v2/bytes?n=128&mode=raw"), 503, "entropy_unavailable")
    # 200 digits need 100 bytes, two blocks: more than the one left, whatever the sampling
    assert_error(served.client.get("/api/v2/integers?n=200&min=0&max=9&mode=raw"), 503)
    assert served.client.get("/api/v2/usage").json()["bytes_left"] == 936


# --- raw requests the pool could never meet ---------------------------------------------------


@pytest.fixture
def small_pool(tmp_path: Path) -> Served:
    """A pool of 64 blocks whose high-water mark is 4 blocks: raw answers stop at 256 bytes."""
    return serve_memory(
        tmp_path, blocks=64, pool_low_water=2, pool_high_water=4, daily_bytes=10_000, **LIMITS
    )


@pytest.mark.parametrize(
    "url",
    [
        "/api/v2/bytes?n=257&mode=raw",
        "/api/v2/bytes?n=257&mode=raw&format=raw",
        "/api/v2/integers?n=300&min=0&max=255&mode=raw",
        "/api/v2/uuids?n=17&mode=raw",
    ],
)
def test_raw_beyond_the_high_water_mark_is_413_not_retry_later(
    small_pool: Served, url: str
) -> None:
    before = small_pool.node.pool.level().blocks
    r = small_pool.client.get(url)
    error = assert_error(r, 413, "payload_too_large")
    assert "high-water mark: 256 bytes" in error["message"]
    assert "retry-after" not in r.headers
    assert small_pool.node.pool.level().blocks == before
    assert small_pool.client.get("/api/v2/usage").json()["bytes_left"] == 10_000


def test_raw_up_to_the_high_water_mark_and_drbg_beyond_it_are_served(small_pool: Served) -> None:
    assert len(base64.b64decode(ok(small_pool, "/api/v2/bytes?n=256&mode=raw")["data"])) == 256
    assert len(base64.b64decode(ok(small_pool, "/api/v2/bytes?n=4096")["data"])) == 4096


def test_openapi_documents_the_raw_limit(small_pool: Served) -> None:
    doc = small_pool.client.get("/openapi.json").json()
    for path in ("/api/v2/bytes", "/api/v2/integers"):
        (mode,) = [p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == "mode"]
        assert "413" in mode["description"] and "256 bytes" in mode["description"]
