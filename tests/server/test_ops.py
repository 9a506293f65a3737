"""Operations: health, readiness, status, metrics, OpenAPI and docs; app lifespan."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import BaseRoute, Mount, Route

from quantumrng.errors import ConfigError
from quantumrng.node import Node
from quantumrng.pool import open_engine
from quantumrng.pool.base import Pool, PoolLevel
from quantumrng.server import app as app_module
from quantumrng.server import create_app
from tests.blocks import make_blocks
from tests.conftest import make_settings
from tests.server.support import Served, TestClient, assert_error, serve_memory


def test_health_is_always_200(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=0)
    r = served.client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_ready_waits_for_seed_and_pool(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=0)
    c = served.client
    assert_error(c.get("/ready"), 503, "not_seeded")
    served.node.pool.put(make_blocks(3, source="simulator", credited_bits=0))
    r = c.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "simulator" and r.json()["pool_blocks"] == 2
    served.node.pool.take(2, source="simulator")
    assert served.node.engine.seeded
    assert_error(c.get("/ready"), 503, "entropy_unavailable")


def test_ready_counts_only_blocks_of_the_configured_source(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=0)
    served.node.pool.put(make_blocks(5, source="os"))
    assert_error(served.client.get("/ready"), 503)


def _secret_texts(blocks: list[bytes]) -> list[str]:
    out = []
    for data in blocks:
        out += [data.hex()[:32], base64.b64encode(data).decode()[:24]]
    return out


def test_status_and_metrics_carry_no_pool_bytes(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=0)
    blocks = make_blocks(20, source="simulator", credited_bits=0)
    served.node.pool.put(blocks)
    c = served.client
    assert c.get("/api/v2/bytes?n=64").status_code == 200
    status = c.get("/api/v2/status")
    metrics = c.get("/metrics")
    assert status.status_code == 200 and metrics.status_code == 200
    body = status.json()
    assert body["source"] == "simulator"
    assert body["pool"]["blocks"] == 19
    assert body["engine"]["seeded"] is True
    assert body["server"]["pid"] > 0
    for text in _secret_texts([b.data for b in blocks]):
        assert text not in status.text
        assert text not in metrics.text


def test_metrics_label_route_templates_not_values(tmp_path: Path) -> None:
    served = serve_memory(tmp_path)
    c = served.client
    c.get("/api/v1/qrng/get_num_bits/12345")
    c.get("/api/v2/bytes?n=31337", headers={"X-API-Key": "qrng_deadbeef0000_s3cr3t"})
    c.get("/no/such/path/777")
    c.request("BREW", "/health")
    text = c.get("/metrics").text
    assert 'route="/api/v1/qrng/get_num_bits/{n}",status="200"' in text
    assert 'route="unmatched",status="404"' in text
    assert 'method="other"' in text
    # names and labels, without the sample values (a counter or timestamp may hold any digits)
    series = [line.rsplit(" ", 1)[0] for line in text.splitlines() if not line.startswith("#")]
    assert series
    for leaked in ("12345", "31337", "s3cr3t", "777", "BREW"):
        assert not any(leaked in s for s in series), leaked
    assert "s3cr3t" not in text and "BREW" not in text
    assert "qrng_pool_blocks" in text
    assert 'qrng_served_random_bytes_total{mode="drbg"}' in text


def _route_paths(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[str]:
    """Every served path, mounted families' prefixes included."""
    for r in routes:
        if isinstance(r, Mount):
            yield from _route_paths(r.routes, prefix + r.path)
        elif isinstance(r, Route):
            yield prefix + r.path


def test_openapi_documents_every_public_route(tmp_path: Path) -> None:
    served = serve_memory(tmp_path)
    doc = served.client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    served_paths = set(_route_paths(served.app.routes))
    documented = set(doc["paths"])
    assets = {p for p in served_paths if p.startswith(("/docs/", "/dashboard/"))}
    assert documented == served_paths - assets
    for path in ("/api/v1/qrng/get_bits", "/api/v2/integers", "/ready", "/metrics"):
        assert path in documented
    integers = doc["paths"]["/api/v2/integers"]["get"]
    names = {p["name"] for p in integers["parameters"]}
    assert names == {"n", "min", "max", "mode", "signed"}
    assert {"200", "413", "429", "503"} <= set(integers["responses"])


def test_docs_page_is_self_contained(tmp_path: Path) -> None:
    served = serve_memory(tmp_path)
    c = served.client
    page = c.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text
    script = c.get("/docs/docs.js")
    assert script.status_code == 200 and "openapi.json" in script.text
    assert "innerHTML" not in script.text
    assert c.get("/docs/docs.css").status_code == 200


def test_an_app_without_a_node_harvests_seeds_and_stops(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pool="memory", source="os")
    app = create_app(settings)
    with TestClient(app) as c:
        r = c.get("/ready")
        assert r.status_code == 200, r.text
        status = c.get("/api/v2/status").json()
        assert status["harvester"]["running"] is True
        assert c.get("/api/v2/bytes?n=16").json()["source"]["kind"] == "os"
        assert "qrng_harvester_harvests_total" in c.get("/metrics").text
    assert status["engine"]["seed"]["provenance"]["source"] == "os"
    ctx = app.state.context
    assert not ctx.node.harvester.running


# -- readiness follows the pool -------------------------------------------------------------


def damage_table(path: Path, table: str) -> None:
    """Overwrite the root page of ``table`` in a checkpointed SQLite file."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,))
    finally:
        conn.close()
    with path.open("r+b") as fh:
        fh.seek((root[0] - 1) * page_size)
        fh.write(b"\xff" * page_size)


def test_ready_is_503_when_the_pool_file_is_damaged(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pool="sqlite", source="simulator")
    node = Node(settings, harvest_on_demand=False)
    node.pool.put(make_blocks(20, source="simulator", credited_bits=0))
    node.engine.reseed()
    client = TestClient(create_app(settings, node), raise_server_exceptions=False)
    assert client.get("/ready").status_code == 200
    damage_table(settings.pool_path, "harvests")  # the blocks table still counts fine
    status = client.get("/api/v2/status")
    ready = client.get("/ready")
    assert_error(status, 503)
    assert_error(ready, 503, "unavailable")
    assert "malformed" in ready.json()["error"]["message"]
    node.close()


class BrokenPool:
    """A pool whose reads fail with ``error``."""

    def __init__(self, pool: Pool, error: Exception) -> None:
        self._pool, self._error = pool, error

    def level(self) -> PoolLevel:
        raise self._error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


@pytest.mark.parametrize(
    "error", [ConfigError("cannot open pool file /secret/path/pool.sqlite3"), OSError("disk")]
)
def test_ready_is_503_for_any_pool_error(tmp_path: Path, error: Exception) -> None:
    served = serve_memory(tmp_path)
    assert served.client.get("/ready").status_code == 200
    served.node.pool = BrokenPool(served.node.pool, error)
    r = served.client.get("/ready")
    assert_error(r, 503, "unavailable")
    assert "/secret" not in r.text


# -- one startup harvest per node -------------------------------------------------------------


def test_only_the_lease_holder_harvests_at_startup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "STARTUP_WAIT_SECONDS", 0.3)
    settings = make_settings(tmp_path, pool="sqlite", source="os")
    other_worker = open_engine(settings)  # another worker or node leads the harvest
    try:
        assert other_worker.acquire_lease("harvest:os", "other:1:x", 60) is not None
        app = create_app(settings)
        with TestClient(app, raise_server_exceptions=False) as c:
            harvester = app.state.context.node.harvester
            assert harvester.running and not harvester.active
            assert harvester.harvests == 0 and harvester.level() == 0
            assert_error(c.get("/ready"), 503, "not_seeded")
            app.state.context.node.pool.put(make_blocks(4, source="os"))  # the holder's harvest
            assert c.get("/ready").status_code == 200
            assert harvester.harvests == 0
    finally:
        other_worker.close()


def test_the_lease_holder_makes_the_startup_harvest(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pool="sqlite", source="os")
    app = create_app(settings)
    with TestClient(app) as c:
        harvester = app.state.context.node.harvester
        assert harvester.active and harvester.harvests >= 1
        assert c.get("/ready").status_code == 200


# -- status and metrics under required auth -------------------------------------------------

OPS_URLS = ("/api/v2/status", "/metrics")


def _keys(served: Served) -> dict[str, str]:
    store = served.app.state.context.access.store
    return {
        scope: store.create(f"{scope}-key", {scope}, 0.001, 10, burst=1)[0]
        for scope in ("drbg", "admin")
    }


@pytest.mark.parametrize("url", OPS_URLS)
def test_status_and_metrics_need_an_admin_key_when_auth_is_required(
    tmp_path: Path, url: str
) -> None:
    served = serve_memory(tmp_path, require_auth=True)
    keys = _keys(served)
    c = served.client
    r = c.get(url)
    assert_error(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_error(c.get(url, headers={"X-API-Key": "qrng_0123456789ab_" + "A" * 43}), 401)
    r = c.get(url, headers={"X-API-Key": keys["drbg"]})
    assert_error(r, 403, "forbidden")
    assert "insufficient_scope" in r.headers["www-authenticate"]
    for _ in range(3):  # a rate of 0.001/s and 10 bytes a day: neither is counted here
        assert c.get(url, headers={"Authorization": f"Bearer {keys['admin']}"}).status_code == 200
    usage = c.get("/api/v2/usage", headers={"X-API-Key": keys["admin"]}).json()
    assert (usage["requests_left"], usage["bytes_left"]) == (1, 10)


@pytest.mark.parametrize("url", OPS_URLS)
@pytest.mark.parametrize(
    "overrides", [{}, {"require_auth": True, "public_status": True}, {"require_auth": False}]
)
def test_status_and_metrics_are_public_without_required_auth_or_with_public_status(
    tmp_path: Path, url: str, overrides: dict[str, Any]
) -> None:
    assert serve_memory(tmp_path, **overrides).client.get(url).status_code == 200


@pytest.mark.parametrize("url", ["/health", "/ready"])
def test_health_and_ready_stay_public_under_required_auth(tmp_path: Path, url: str) -> None:
    assert serve_memory(tmp_path, require_auth=True).client.get(url).status_code == 200


def _security(doc: dict[str, Any], path: str) -> Any:
    return doc["paths"][path]["get"].get("security")


def test_openapi_says_which_routes_need_a_key(tmp_path: Path) -> None:
    required = [{"bearer": []}, {"apiKey": []}]
    optional = [{}, *required]
    doc = serve_memory(tmp_path / "a", require_auth=True).client.get("/openapi.json").json()
    for path in OPS_URLS:
        assert _security(doc, path) == required
        assert {"401", "403"} <= set(doc["paths"][path]["get"]["responses"])
    assert _security(doc, "/api/v2/bytes") == required
    assert _security(doc, "/health") is None and _security(doc, "/ready") is None
    public = serve_memory(tmp_path / "b", require_auth=True, public_status=True)
    doc = public.client.get("/openapi.json").json()
    assert [_security(doc, path) for path in OPS_URLS] == [None, None]
    doc = serve_memory(tmp_path / "c").client.get("/openapi.json").json()
    assert [_security(doc, path) for path in OPS_URLS] == [None, None]
    assert _security(doc, "/api/v2/bytes") == optional
    assert "401" not in doc["paths"]["/metrics"]["get"]["responses"]
