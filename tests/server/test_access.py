"""Access: who must authenticate, scopes, token buckets, daily quotas, RateLimit headers."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.synchronize
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from quantumrng.errors import (
    AuthenticationError,
    PayloadTooLarge,
    PermissionDenied,
    QuantumRNGError,
    RateLimited,
    Unavailable,
)
from quantumrng.server.access import (
    BAD_KEY_BURST,
    BAD_KEY_RATE,
    KEY_CACHE_SECONDS,
    STORE_UNAVAILABLE,
    Access,
    client_principal,
    is_loopback,
    next_midnight,
)
from quantumrng.server.keys import KeyRecord, KeyStore, RedisKeyStore
from quantumrng.server.usage import UsageStore
from quantumrng.storage.redis import open_url
from tests.conftest import make_settings
from tests.pool.support import delete_prefix, new_prefix, redis_url
from tests.server.support import assert_error, serve_memory
from tests.server.test_keys import damage

NOON = datetime(2030, 1, 1, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    """A monotonic clock and a wall clock that only move when told."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = NOON

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def request(
    *headers: tuple[str, str], client: tuple[str, int] | None = ("127.0.0.1", 5555)
) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/api/v2/bytes",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": client,
    }
    return Request(scope)


def bearer(key: str) -> tuple[str, str]:
    return ("Authorization", f"Bearer {key}")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_access(tmp_path: Path, clock: Clock | None = None, **overrides: object) -> Access:
    c = clock or Clock()
    return Access(
        make_settings(tmp_path, **overrides),
        KeyStore(tmp_path / "keys.sqlite3"),
        clock=lambda: c.mono,
        now=lambda: c.wall,
    )


# -- who must authenticate -----------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.8.7", "::1", "[::1]", "localhost"])
def test_auth_is_off_by_default_on_loopback(tmp_path: Path, host: str) -> None:
    assert is_loopback(host)
    access = Access(make_settings(tmp_path, host=host))
    assert not access.auth_required
    admission = run(access.admit(request(), scope="drbg", nbytes=64))
    assert admission.principal == "ip:127.0.0.1" and admission.key is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org", ""])
def test_auth_is_on_by_default_off_loopback(tmp_path: Path, host: str) -> None:
    assert not is_loopback(host)
    access = Access(make_settings(tmp_path, host=host or "0.0.0.0"))
    assert access.auth_required
    with pytest.raises(AuthenticationError) as err:
        run(access.admit(request(), scope="drbg", nbytes=64))
    assert err.value.status == 401
    assert "Authorization: Bearer" in err.value.message and "X-API-Key" in err.value.message
    assert err.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_explicit_setting_wins_over_the_host(tmp_path: Path) -> None:
    assert Access(make_settings(tmp_path, require_auth=True)).auth_required
    assert not Access(make_settings(tmp_path, host="0.0.0.0", require_auth=False)).auth_required


def test_default_path_touches_no_sqlite_and_is_cheap(tmp_path: Path) -> None:
    access = Access(make_settings(tmp_path))
    req = request(("Accept", "application/json"), ("User-Agent", "curl"))

    async def many() -> float:
        t = time.perf_counter()
        for _ in range(2000):
            admission = await access.admit(req, scope="drbg", nbytes=64)
        assert admission.headers == {}
        return (time.perf_counter() - t) / 2000

    per_call = run(many())
    assert not (tmp_path / "keys.sqlite3").exists()
    assert access._store is None
    assert per_call < 100e-6  # a few microseconds on an idle core; generous for CI


# -- keys and scopes -------------------------------------------------------------------


@pytest.mark.parametrize("header", ["bearer", "BEARER", "x-api-key"])
def test_a_valid_key_is_accepted_in_either_header(tmp_path: Path, header: str) -> None:
    access = make_access(tmp_path, require_auth=True)
    key, record = access.store.create("alice", {"drbg"}, None, None)
    sent = ("X-API-Key", key) if header == "x-api-key" else ("Authorization", f"{header} {key}")
    admission = run(access.admit(request(sent), scope="drbg", nbytes=1))
    assert admission.key == record and admission.principal == f"key:{record.id}"


@pytest.mark.parametrize("require_auth", [True, False])
def test_an_invalid_key_is_refused_even_when_auth_is_optional(
    tmp_path: Path, require_auth: bool
) -> None:
    access = make_access(tmp_path, require_auth=require_auth)
    key, _ = access.store.create("alice", {"drbg"}, None, None)
    for sent in (
        bearer(key[:-2] + ("xx" if key[-2:] != "xx" else "yy")),
        bearer(""),
        ("X-API-Key", "nonsense"),
        ("Authorization", "Bearer"),
    ):
        with pytest.raises(AuthenticationError) as err:
            run(access.admit(request(sent), scope="drbg", nbytes=1))
        assert 'error="invalid_token"' in err.value.headers["WWW-Authenticate"]
        assert key not in err.value.message


def test_two_different_keys_are_refused(tmp_path: Path) -> None:
    access = make_access(tmp_path)
    k1, _ = access.store.create("a", {"drbg"}, None, None)
    k2, _ = access.store.create("b", {"drbg"}, None, None)
    with pytest.raises(AuthenticationError):
        run(access.admit(request(bearer(k1), ("X-API-Key", k2)), scope="drbg", nbytes=1))
    same = run(access.admit(request(bearer(k1), ("X-API-Key", k1)), scope="drbg", nbytes=1))
    assert same.key is not None and same.key.name == "a"


def test_other_authorization_schemes_are_ignored(tmp_path: Path) -> None:
    access = make_access(tmp_path)
    admission = run(access.admit(request(("Authorization", "Basic dTpw")), scope="drbg", nbytes=1))
    assert admission.key is None
    with pytest.raises(AuthenticationError):
        run(
            make_access(tmp_path, require_auth=True).admit(
                request(("Authorization", "Basic dTpw")), scope="drbg", nbytes=1
            )
        )


def test_revoked_key_is_refused_once_the_cache_expires(tmp_path: Path) -> None:
    clock = Clock()
    access = make_access(tmp_path, clock)
    key, _ = access.store.create("alice", {"drbg"}, None, None)
    run(access.admit(request(bearer(key)), scope="drbg", nbytes=1))
    KeyStore(tmp_path / "keys.sqlite3").revoke("alice")  # as the CLI would
    clock.advance(1.01)
    with pytest.raises(AuthenticationError):
        run(access.admit(request(bearer(key)), scope="drbg", nbytes=1))


def test_a_missing_scope_is_forbidden(tmp_path: Path) -> None:
    access = make_access(tmp_path)
    key, _ = access.store.create("alice", {"drbg"}, None, None)
    with pytest.raises(PermissionDenied) as err:
        run(access.admit(request(bearer(key)), scope="raw", nbytes=64))
    assert err.value.status == 403
    assert "'raw'" in err.value.message
    assert 'error="insufficient_scope"' in err.value.headers["WWW-Authenticate"]
    raw_only, _ = access.store.create("bob", {"raw"}, None, None)
    with pytest.raises(PermissionDenied):
        run(access.admit(request(bearer(raw_only)), scope="drbg", nbytes=64))
    admin, _ = access.store.create("root", {"admin"}, None, None)
    for scope in ("drbg", "raw", "admin"):
        run(access.admit(request(bearer(admin)), scope=scope, nbytes=64))


def test_anonymous_clients_get_drbg_and_raw_but_not_admin(tmp_path: Path) -> None:
    access = Access(make_settings(tmp_path))
    for scope in ("drbg", "raw"):
        run(access.admit(request(), scope=scope, nbytes=1))
    with pytest.raises(AuthenticationError, match="'admin' scope"):
        run(access.admit(request(), scope="admin", nbytes=1))
    with pytest.raises(ValueError):
        run(access.admit(request(), scope="everything", nbytes=1))


def test_anonymous_principals() -> None:
    assert client_principal("10.1.2.3") == "ip:10.1.2.3"
    assert client_principal("2001:db8:1:2:3:4:5:6") == "ip:2001:db8:1:2::/64"
    assert client_principal("2001:db8:1:2:ffff::1") == "ip:2001:db8:1:2::/64"
    assert client_principal("::ffff:10.1.2.3") == "ip:10.1.2.3"
    assert client_principal(None) == "ip:unknown"
    assert client_principal("testclient") == "ip:testclient"


# -- rate limits ---------------------------------------------------------------------------


def test_token_bucket_admits_a_burst_then_the_rate(tmp_path: Path) -> None:
    clock = Clock()
    access = make_access(tmp_path, clock)
    key, _ = access.store.create("alice", {"drbg"}, 2.0, None, burst=3)
    req = request(bearer(key))
    remaining = [
        run(access.admit(req, scope="drbg", nbytes=1)).headers["RateLimit-Remaining"]
        for _ in range(3)
    ]
    assert remaining == ["2", "1", "0"]
    with pytest.raises(RateLimited) as err:
        run(access.admit(req, scope="drbg", nbytes=1))
    assert err.value.status == 429 and err.value.retry_after == 1.0
    assert err.value.headers["RateLimit-Limit"] == "3"
    assert err.value.headers["RateLimit-Remaining"] == "0"
    assert err.value.headers["RateLimit-Reset"] == "1"
    clock.advance(0.49)
    with pytest.raises(RateLimited):
        run(access.admit(req, scope="drbg", nbytes=1))
    clock.advance(0.02)
    ok = run(access.admit(req, scope="drbg", nbytes=1))
    assert ok.headers["RateLimit-Remaining"] == "0"
    assert ok.headers["RateLimit-Policy"] == "3;w=2"
    clock.advance(100)
    assert run(access.admit(req, scope="drbg", nbytes=1)).headers["RateLimit-Remaining"] == "2"


def test_anonymous_rate_comes_from_settings_per_address(tmp_path: Path) -> None:
    clock = Clock()
    access = make_access(tmp_path, clock, rate_limit=1.0)  # burst 0: max(1, 2 * rate) = 2
    a, b = request(client=("10.0.0.1", 1)), request(client=("10.0.0.2", 1))
    for _ in range(2):
        run(access.admit(a, scope="drbg", nbytes=1))
    with pytest.raises(RateLimited):
        run(access.admit(a, scope="drbg", nbytes=1))
    assert run(access.admit(b, scope="drbg", nbytes=1)).principal == "ip:10.0.0.2"


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.1, 50.0),
    burst=st.integers(1, 20),
    steps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=60),
)
def test_token_bucket_never_admits_more_than_burst_plus_rate_times_time(
    tmp_path_factory: pytest.TempPathFactory, rate: float, burst: int, steps: list[float]
) -> None:
    clock = Clock()
    access = Access(
        make_settings(tmp_path_factory.mktemp("gcra"), rate_limit=rate, rate_burst=burst),
        clock=lambda: clock.mono,
        now=lambda: clock.wall,
    )
    req = request()

    async def drive() -> int:
        admitted = 0
        for dt in steps:
            clock.advance(dt)
            try:
                await access.admit(req, scope="drbg", nbytes=1)
                admitted += 1
            except RateLimited as exc:
                assert exc.retry_after is not None and exc.retry_after >= 1
        return admitted

    admitted = run(drive())
    assert admitted <= burst + rate * sum(steps) + 1e-9
    if all(dt >= 1.001 / rate for dt in steps):
        assert admitted == len(steps)


# -- daily quotas ----------------------------------------------------------------------------


def test_daily_quota_counts_bytes_and_resets_at_utc_midnight(tmp_path: Path) -> None:
    clock = Clock()
    access = make_access(tmp_path, clock, daily_bytes=100)
    req = request()
    first = run(access.admit(req, scope="drbg", nbytes=60))
    assert first.headers["RateLimit-Limit"] == "100"
    assert first.headers["RateLimit-Remaining"] == "40"
    assert first.headers["RateLimit-Reset"] == str(12 * 3600)
    assert first.headers["RateLimit-Policy"] == "100;w=86400"
    with pytest.raises(RateLimited) as err:
        run(access.admit(req, scope="drbg", nbytes=50))
    assert err.value.retry_after == 12 * 3600
    assert err.value.headers["RateLimit-Remaining"] == "0"
    assert "40 left" in err.value.message
    run(access.admit(req, scope="drbg", nbytes=40))
    clock.advance(12 * 3600)
    assert run(access.admit(req, scope="drbg", nbytes=100)).headers["RateLimit-Remaining"] == "0"


def test_a_request_larger_than_the_quota_is_too_large(tmp_path: Path) -> None:
    access = make_access(tmp_path, daily_bytes=100)
    with pytest.raises(PayloadTooLarge):
        run(access.admit(request(), scope="drbg", nbytes=101))


class CountingUsage(UsageStore):
    """A usage store that counts the reads and writes the quota check makes."""

    def __init__(self, path: Path, fail: bool = False) -> None:
        super().__init__(path)
        self.calls = 0
        self.fail = fail

    def consume(self, principal: str, day: str, nbytes: int, limit: int) -> int | None:
        self.calls += 1
        if self.fail:
            raise Unavailable("the usage store is broken")
        return super().consume(principal, day, nbytes, limit)

    def used(self, principal: str, day: str) -> int:
        self.calls += 1
        return super().used(principal, day)


def limited_access(tmp_path: Path, *, fail: bool = False) -> tuple[Access, CountingUsage, str]:
    """An access gate, its counting usage store and a key of 1 request/s, burst 3, 10 bytes/day."""
    clock = Clock()
    usage = CountingUsage(tmp_path / "keys.sqlite3", fail=fail)
    access = Access(
        make_settings(tmp_path),
        KeyStore(tmp_path / "keys.sqlite3"),
        usage,
        clock=lambda: clock.mono,
        now=lambda: clock.wall,
    )
    key, _ = access.store.create("alice", {"drbg"}, 1.0, 10, burst=3)
    return access, usage, key


def test_a_refused_quota_keeps_the_rate_limit_in_force(tmp_path: Path) -> None:
    access, usage, key = limited_access(tmp_path)
    req = request(bearer(key))
    run(access.admit(req, scope="drbg", nbytes=10))
    for _ in range(2):
        with pytest.raises(RateLimited, match="daily quota"):
            run(access.admit(req, scope="drbg", nbytes=1))
    calls = usage.calls
    for _ in range(20):
        with pytest.raises(RateLimited, match="rate limit"):
            run(access.admit(req, scope="drbg", nbytes=1))
    assert usage.calls == calls  # the exhausted key no longer reaches the store


def test_a_request_beyond_the_whole_quota_spends_its_token(tmp_path: Path) -> None:
    access, _, key = limited_access(tmp_path)
    req = request(bearer(key))
    for _ in range(3):
        with pytest.raises(PayloadTooLarge):
            run(access.admit(req, scope="drbg", nbytes=11))
    with pytest.raises(RateLimited, match="rate limit"):
        run(access.admit(req, scope="drbg", nbytes=1))


def test_a_failing_usage_store_is_hit_at_the_rate_limit_only(tmp_path: Path) -> None:
    access, usage, key = limited_access(tmp_path, fail=True)
    req = request(bearer(key))
    for _ in range(10):
        with pytest.raises((Unavailable, RateLimited)):
            run(access.admit(req, scope="drbg", nbytes=1))
    assert usage.calls == 3  # the burst, then the bucket refuses before the store


def test_a_request_cancelled_during_the_quota_check_spends_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    access, _, key = limited_access(tmp_path)

    def hung_up(*args: object) -> None:
        raise asyncio.CancelledError

    monkeypatch.setattr(access, "_take_bytes", hung_up)
    req = request(bearer(key))
    for _ in range(3):
        with pytest.raises(asyncio.CancelledError):
            run(access.admit(req, scope="drbg", nbytes=1))
    with pytest.raises(RateLimited, match="rate limit"):
        run(access.admit(req, scope="drbg", nbytes=1))


def test_both_limits_report_the_one_nearest_exhaustion(tmp_path: Path) -> None:
    access = make_access(tmp_path)
    key, _ = access.store.create("alice", {"drbg"}, 1.0, 10, burst=4)
    headers = run(access.admit(request(bearer(key)), scope="drbg", nbytes=9)).headers
    assert headers["RateLimit-Limit"] == "10" and headers["RateLimit-Remaining"] == "1"
    assert headers["RateLimit-Policy"] == "4;w=4, 10;w=86400"


def _spend(access: Access, key: str, go: multiprocessing.synchronize.Event, out: Any) -> None:
    async def loop() -> int:
        got = 0
        for _ in range(150):
            try:
                await access.admit(request(bearer(key)), scope="drbg", nbytes=10)
                got += 10
            except RateLimited:
                pass
        return got

    go.wait(30)
    out.put(asyncio.run(loop()))


def test_a_key_quota_holds_across_worker_processes(tmp_path: Path) -> None:
    access = make_access(tmp_path)
    key, record = access.store.create("shared", {"drbg"}, None, 2005)
    run(access.admit(request(bearer(key)), scope="drbg", nbytes=0))
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    go = ctx.Event()
    procs = [ctx.Process(target=_spend, args=(access, key, go, out)) for _ in range(2)]
    for p in procs:
        p.start()
    go.set()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sum(got) == 2000
    day = datetime.fromtimestamp(NOON, UTC).date().isoformat()
    assert access.usage_store.used(record.principal, day) == 2000


def test_quotas_count_in_the_usage_store_given_or_in_the_key_stores_file(tmp_path: Path) -> None:
    day = datetime.fromtimestamp(NOON, UTC).date().isoformat()
    given = UsageStore(tmp_path / "usage.sqlite3")
    clock = Clock()
    access = Access(
        make_settings(tmp_path, daily_bytes=1000),
        KeyStore(tmp_path / "keys.sqlite3"),
        given,
        clock=lambda: clock.mono,
        now=lambda: clock.wall,
    )
    run(access.admit(request(), scope="drbg", nbytes=300))
    assert access.usage_store is given and given.used("ip:127.0.0.1", day) == 300
    assert UsageStore(tmp_path / "keys.sqlite3").used("ip:127.0.0.1", day) == 0
    default = make_access(tmp_path, clock, daily_bytes=1000)
    run(default.admit(request(), scope="drbg", nbytes=200))
    assert UsageStore(tmp_path / "keys.sqlite3").used("ip:127.0.0.1", day) == 200


def test_next_midnight_is_utc() -> None:
    assert next_midnight(NOON) == datetime(2030, 1, 2, tzinfo=UTC).timestamp()
    assert (
        next_midnight(datetime(2030, 1, 2, tzinfo=UTC).timestamp())
        == datetime(2030, 1, 3, tzinfo=UTC).timestamp()
    )


# -- usage -------------------------------------------------------------------------------------


def test_usage_of_an_unlimited_anonymous_client(tmp_path: Path) -> None:
    access = Access(make_settings(tmp_path))
    usage = run(access.usage(request()))
    assert usage == {
        "principal": "ip:127.0.0.1",
        "name": None,
        "scopes": ["drbg", "raw"],
        "status": "running",
        "rate": None,
        "burst": None,
        "requests_left": None,
        "daily_bytes": None,
        "bytes_left": None,
        "resets_at": usage["resets_at"],
    }
    assert str(usage["resets_at"]).endswith("T00:00:00Z")
    assert access._store is None


def test_usage_of_a_limited_key_follows_what_it_spent(tmp_path: Path) -> None:
    clock = Clock()
    access = make_access(tmp_path, clock)
    key, record = access.store.create("alice", {"drbg", "raw"}, 5.0, 1000, burst=10)
    req = request(("X-API-Key", key))
    fresh = run(access.usage(req))
    assert (fresh["requests_left"], fresh["bytes_left"]) == (10, 1000)
    for _ in range(3):
        run(access.admit(req, scope="drbg", nbytes=100))
    usage = run(access.usage(req))
    assert usage["principal"] == record.principal and usage["name"] == "alice"
    assert (usage["rate"], usage["burst"], usage["daily_bytes"]) == (5.0, 10, 1000)
    assert (usage["requests_left"], usage["bytes_left"]) == (7, 700)
    assert usage["resets_at"] == "2030-01-02T00:00:00Z"
    clock.advance(0.2)
    assert run(access.usage(req))["requests_left"] == 8


def test_usage_needs_a_key_when_auth_is_required(tmp_path: Path) -> None:
    with pytest.raises(AuthenticationError):
        run(make_access(tmp_path, require_auth=True).usage(request()))


# -- over HTTP -------------------------------------------------------------------------------


def test_statuses_and_headers_reach_the_client(tmp_path: Path) -> None:
    access = make_access(tmp_path, host="0.0.0.0")
    key, _ = access.store.create("alice", {"drbg"}, 100.0, 100, burst=100)

    async def endpoint(req: Request) -> Response:
        n = int(req.query_params.get("n", "1"))
        scope = req.query_params.get("mode", "drbg")
        admission = await access.admit(req, scope=scope, nbytes=n)
        return JSONResponse({"principal": admission.principal}, headers=admission.headers)

    async def render(req: Request, exc: Exception) -> Response:
        assert isinstance(exc, QuantumRNGError)
        headers = dict(exc.headers)
        if exc.retry_after is not None:
            headers["Retry-After"] = str(int(exc.retry_after))
        body = {"error": {"code": exc.code, "message": exc.message}}
        return JSONResponse(body, exc.status, headers=headers)

    app = Starlette(
        routes=[Route("/bytes", endpoint)], exception_handlers={QuantumRNGError: render}
    )
    with TestClient(app) as http:
        r = http.get("/bytes")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["code"] == "unauthenticated"
        r = http.get("/bytes?mode=raw", headers={"X-API-Key": key})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        r = http.get("/bytes?n=80", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.headers["ratelimit-remaining"] == "20"
        r = http.get("/bytes?n=30", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 429 and r.headers["retry-after"] == str(12 * 3600)
        assert r.headers["ratelimit-remaining"] == "0"
        assert key not in r.text


# -- a key store that fails ------------------------------------------------------------------


def assert_store_unavailable(r: Any, tmp_path: Path) -> None:
    error = assert_error(r, 503, "unavailable")
    assert error["message"] == STORE_UNAVAILABLE
    assert str(tmp_path) not in r.text and "sqlite" not in r.text.lower()
    assert int(r.headers["retry-after"]) >= 1


def test_a_corrupt_key_store_is_a_503_without_a_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served = serve_memory(tmp_path, require_auth=True)
    damage(served.node.settings.keys_path)
    key = "qrng_0123456789ab_" + "A" * 43
    with served.client as c, caplog.at_level(logging.ERROR, "quantumrng.server.access"):
        for _ in range(3):
            assert_store_unavailable(c.get("/api/v2/bytes", headers={"X-API-Key": key}), tmp_path)
        assert_store_unavailable(c.get("/api/v2/usage", headers=dict([bearer(key)])), tmp_path)
    details = [r.getMessage() for r in caplog.records if r.name == "quantumrng.server.access"]
    assert len(details) == 1, details  # the detail is logged, not once per request
    assert "not a database" in details[0] and key not in details[0]


def test_a_key_store_failing_at_request_time_is_a_503(tmp_path: Path) -> None:
    access = make_access(tmp_path, daily_bytes=1000)
    key, _ = access.store.create("alice", {"drbg"}, None, None)
    served = serve_memory(tmp_path, access=access)
    access.store.close()
    damage(tmp_path / "keys.sqlite3")
    with served.client as c:
        assert_store_unavailable(c.get("/api/v2/bytes", headers={"X-API-Key": key}), tmp_path)
        assert_store_unavailable(c.get("/api/v2/bytes"), tmp_path)  # the anonymous quota
        assert_store_unavailable(c.get("/api/v1/qrng/get_bits"), tmp_path)


def test_without_keys_or_quotas_a_broken_store_is_never_read(tmp_path: Path) -> None:
    served = serve_memory(tmp_path)
    damage(served.node.settings.keys_path)
    with served.client as c:
        assert c.get("/api/v2/bytes?n=8").status_code == 200


# -- invalid keys are bounded per address before they reach the store ------------------


class CountingStore(KeyStore):
    """A key store that counts its lookups."""

    lookups = 0

    def verify(self, presented: str) -> KeyRecord | None:
        self.lookups += 1
        return super().verify(presented)


def counting_access(tmp_path: Path, clock: Clock) -> tuple[Access, CountingStore]:
    """An Access that requires keys, over a store that counts its lookups."""
    store = CountingStore(tmp_path / "keys.sqlite3")
    access = Access(
        make_settings(tmp_path, require_auth=True),
        store,
        clock=lambda: clock.mono,
        now=lambda: clock.wall,
    )
    return access, store


def test_an_address_flooding_invalid_keys_is_rate_limited_before_the_store(
    tmp_path: Path,
) -> None:
    clock = Clock()
    access, store = counting_access(tmp_path, clock)
    good, _ = store.create("good", {"drbg"}, None, None)
    flooder = ("192.0.2.7", 4000)
    bad = "qrng_0123456789ab_" + "A" * 43
    for _ in range(BAD_KEY_BURST):
        with pytest.raises(AuthenticationError):
            run(access.admit(request(bearer(bad), client=flooder), scope="drbg", nbytes=8))
    assert store.lookups == BAD_KEY_BURST
    for _ in range(50):
        with pytest.raises(RateLimited) as err:
            run(access.admit(request(bearer(bad), client=flooder), scope="drbg", nbytes=8))
        assert err.value.retry_after is not None and err.value.retry_after >= 1
    assert store.lookups == BAD_KEY_BURST  # the flood never reached the store
    # another address with a valid key is not affected
    run(access.admit(request(bearer(good), client=("198.51.100.1", 1)), scope="drbg", nbytes=8))
    # the bucket refills: one more try a second
    clock.mono += 1.0 / BAD_KEY_RATE
    with pytest.raises(AuthenticationError):
        run(access.admit(request(bearer(bad), client=flooder), scope="drbg", nbytes=8))
    with pytest.raises(RateLimited):
        run(access.admit(request(bearer(bad), client=flooder), scope="drbg", nbytes=8))


def test_valid_keys_spend_nothing_of_the_invalid_key_allowance(tmp_path: Path) -> None:
    clock = Clock()
    access, store = counting_access(tmp_path, clock)
    good, _ = store.create("good", {"drbg"}, None, None)
    for _ in range(3 * BAD_KEY_BURST):
        clock.mono += 2 * KEY_CACHE_SECONDS  # every call reads the store
        run(access.admit(request(bearer(good)), scope="drbg", nbytes=8))
    bad = "qrng_0123456789ab_" + "B" * 43
    with pytest.raises(AuthenticationError):  # the whole allowance is still there
        run(access.admit(request(bearer(bad)), scope="drbg", nbytes=8))


# -- what a request was charged, and what it may get back ---------------------------------


def test_a_refund_never_exceeds_the_charge_nor_takes_what_others_were_charged(
    tmp_path: Path,
) -> None:
    clock = Clock()
    access = make_access(tmp_path, clock, daily_bytes=1000)
    mine = run(access.admit(request(), scope="drbg", nbytes=100))
    other = run(access.admit(request(), scope="drbg", nbytes=300))
    assert mine.charged is not None and mine.charged.nbytes == 100
    assert run(access.refund(mine, 60)) == 60
    assert run(access.refund(mine, 500)) == 40  # what is left of its charge, no more
    assert run(access.refund(mine)) == 0  # once given back, gone
    day = datetime.fromtimestamp(NOON, UTC).date().isoformat()
    assert access.usage_store.used("ip:127.0.0.1", day) == 300  # the other's charge holds
    assert other.charged is not None and other.charged.refundable == 300
    unlimited = run(Access(make_settings(tmp_path)).admit(request(), scope="drbg", nbytes=9))
    assert unlimited.charged is None and run(access.refund(unlimited)) == 0


def test_concurrent_refunds_of_one_charge_give_back_its_bytes_once(tmp_path: Path) -> None:
    access = make_access(tmp_path, daily_bytes=10_000)
    run(access.admit(request(), scope="drbg", nbytes=2_000))  # another request's charge
    mine = run(access.admit(request(), scope="drbg", nbytes=1_000))

    async def race() -> list[int]:
        return list(await asyncio.gather(*(access.refund(mine, 300) for _ in range(8))))

    given = run(race())
    assert sum(given) == 1_000 and sorted(given)[-4:] == [100, 300, 300, 300]
    day = datetime.fromtimestamp(NOON, UTC).date().isoformat()
    assert access.usage_store.used("ip:127.0.0.1", day) == 2_000


# -- on Redis: every node shares keys, counters and limits --------------------------------


@pytest.fixture
def redis_prefix() -> Any:
    redis_url()
    prefix = new_prefix()
    yield prefix
    delete_prefix(prefix)


def redis_access(tmp_path: Path, prefix: str, clock: Clock | None = None, **kw: object) -> Access:
    """An access gate of a node on the shared Redis (keys, counters, limits there)."""
    c = clock or Clock()
    settings = make_settings(tmp_path, pool="redis", redis_url=redis_url(), redis_key=prefix, **kw)
    return Access(settings, clock=lambda: c.mono, now=lambda: c.wall)


def test_on_redis_a_key_made_anywhere_works_everywhere_and_revocation_reaches_all(
    tmp_path: Path, redis_prefix: str
) -> None:
    clock = Clock()
    nodes = [redis_access(tmp_path / f"n{i}", redis_prefix, clock) for i in range(2)]
    key, record = RedisKeyStore(open_url(redis_url()), prefix=redis_prefix).create(
        "shared", {"drbg"}, None, None
    )
    for node in nodes:
        assert run(node.admit(request(bearer(key)), scope="drbg", nbytes=1)).key == record
    assert not (tmp_path / "n0" / "keys.sqlite3").exists()  # nothing on the node's disk
    nodes[1].store.revoke("shared")
    clock.advance(KEY_CACHE_SECONDS + 0.01)
    for node in nodes:
        with pytest.raises(AuthenticationError):
            run(node.admit(request(bearer(key)), scope="drbg", nbytes=1))


def test_on_redis_two_nodes_share_one_rate_limit_and_one_quota(
    tmp_path: Path, redis_prefix: str
) -> None:
    a, b = (redis_access(tmp_path / n, redis_prefix) for n in ("a", "b"))
    key, _ = a.store.create("shared", {"drbg"}, 0.01, 1000, burst=3)
    req = request(bearer(key))
    first = run(a.admit(req, scope="drbg", nbytes=600))
    assert first.headers["RateLimit-Policy"] == "3;w=300, 1000;w=86400"
    assert run(b.admit(req, scope="drbg", nbytes=300)).headers["RateLimit-Remaining"] == "100"
    with pytest.raises(RateLimited, match="daily quota"):  # 600 + 300 + 200 > 1000
        run(b.admit(req, scope="drbg", nbytes=200))
    with pytest.raises(RateLimited, match="rate limit") as err:  # three cells spent, 2 nodes
        run(a.admit(req, scope="drbg", nbytes=1))
    assert err.value.retry_after is not None and 1 <= err.value.retry_after <= 100
    usage = run(b.usage(req))
    assert (usage["requests_left"], usage["bytes_left"]) == (0, 100)
    assert run(a.refund(first)) == 600
    assert run(b.usage(req))["bytes_left"] == 700


def test_on_redis_an_unreachable_store_is_a_503_with_the_fixed_message(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, pool="redis", redis_url="redis://:hunter2secret@127.0.0.1:1/0", rate_limit=5.0
    )
    with pytest.raises(Unavailable) as err:
        run(Access(settings).admit(request(), scope="drbg", nbytes=1))
    assert err.value.message == STORE_UNAVAILABLE
