"""The dashboard in-process: its page and assets, its data, who may read it, no secret."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import pytest

from quantumrng.accounting import SourceFailure, SourceLedger
from quantumrng.assessment.source import SourceAssessment, assessment_key
from quantumrng.errors import ConfigError
from quantumrng.pool import TaggedPool
from quantumrng.server import dashboard
from quantumrng.server.dashboard import Sample, history_json, read_counters
from tests.blocks import make_blocks
from tests.conftest import make_settings
from tests.server.support import Served, assert_error, serve_memory

DATA = "/api/v2/dashboard"
QUALITY = "/api/v2/dashboard/quality"
BATTERY_WAIT = 120.0  # seconds for one battery run in a spawned process on a busy machine


def _assets(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="(dashboard/[^"]+)"', page)


def test_the_page_and_every_asset_are_served_here_with_no_outside_reference(
    tmp_path: Path,
) -> None:
    c = serve_memory(tmp_path).client
    page = c.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assets = _assets(page.text)
    assert {
        "dashboard/dashboard.js",
        "dashboard/dashboard.css",
        "dashboard/vendor/uPlot.iife.min.js",
        "dashboard/vendor/uPlot.min.css",
    } <= set(assets)
    types = {".js": "text/javascript", ".css": "text/css", ".LICENSE": "text/plain"}
    for asset in assets:
        r = c.get("/" + asset)
        assert r.status_code == 200, asset
        assert r.headers["content-type"].startswith(types[Path(asset).suffix]), asset
        assert r.headers["x-content-type-options"] == "nosniff"
    for text in (page.text, c.get("/dashboard/dashboard.js").text):
        assert not re.search(r"(?:src|href|url)\s*[=(]\s*[\"']?(?:https?:)?//", text)
    script = c.get("/dashboard/dashboard.js").text
    assert "innerHTML" not in script and "sessionStorage" in script
    assert "uPlot" in c.get("/dashboard/vendor/uPlot.iife.min.js").text
    assert "MIT" in c.get("/dashboard/vendor/uPlot.LICENSE").text


def test_the_snapshot_shows_pool_harvests_health_engine_beacon_and_log(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=0, pool_low_water=16, pool_high_water=64)
    served.node.pool.put(make_blocks(40, source="simulator", credited_bits=0, backend="aer"))
    c = served.client
    assert c.get("/api/v2/bytes?n=16").status_code == 200
    r = c.get(DATA)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    d = r.json()
    assert set(d) >= {
        "generated_at",
        "server",
        "source",
        "pool",
        "harvests",
        "leader",
        "harvester",
        "health",
        "assessment",
        "engine",
        "witness",
        "beacon",
        "log",
        "history",
    }
    assert d["pool"]["blocks"] == 39  # one block seeded the DRBG
    assert (d["pool"]["low_water"], d["pool"]["high_water"]) == (16, 64)
    assert d["source"] == {
        "kind": "simulator",
        "quantum": False,
        "creditable": False,
        "state": "unknown",  # this app runs no harvester
        "failure": None,
    }
    (harvest,) = d["harvests"]
    assert harvest["backend"] == "aer" and harvest["blocks_left"] == 39
    assert harvest["credit"] == "none"
    assert d["engine"]["seeded"] is True and d["engine"]["seed_source"] == "simulator"
    assert d["assessment"] == {"state": "not_credited", "samples_needed": 0}
    assert d["beacon"]["enabled"] is True and d["log"] == {"head": None}
    h = d["history"]
    assert len(h["t"]) >= 1 and h["blocks"][-1] == 39
    assert {len(column) for column in h.values()} == {len(h["t"])}


def test_the_snapshot_shows_a_persistent_failure_and_the_leader(tmp_path: Path) -> None:
    served = serve_memory(tmp_path)
    node = served.node
    lease = node.pool.acquire_lease("harvest:simulator", "node-b:42:abcd", 10.0)
    assert lease is not None
    node.ledger.record_failure(SourceFailure("simulator", "rct", 3, time.time(), 1, 8))
    d = served.client.get(DATA).json()
    assert d["source"]["state"] == "persistent"
    assert d["source"]["failure"]["test"] == "rct" and d["source"]["failure"]["stream"] == 3
    assert "quarantined" in d["source"]["failure"]["message"]
    assert d["leader"]["node"] == "node-b" and d["leader"]["token"] == lease.token


def test_since_returns_only_the_history_after_it(tmp_path: Path) -> None:
    c = serve_memory(tmp_path).client
    first = c.get(DATA).json()["history"]["t"]
    last = first[-1]
    later = c.get(DATA, params={"since": last}).json()["history"]
    assert all(t > last for t in later["t"])
    assert_error(c.get(DATA, params={"since": "yesterday"}), 400)
    assert_error(c.get(DATA, params={"nonsense": "1"}), 400)


def _sample(t: float, requests: float, drbg: float, blocks: int | None = 10) -> Sample:
    return Sample(t, blocks, 0, requests, 0.0, drbg, 0.0)


def test_history_rates_are_counter_increases_per_second() -> None:
    samples = [_sample(100.0, 10, 0), _sample(102.0, 30, 4096), _sample(104.0, 5, 4096, None)]
    h = history_json(samples, None)
    assert h["t"] == [100.0, 102.0, 104.0]
    assert h["requests_per_second"] == [0.0, 10.0, 2.5]  # a counter that went back restarts
    assert h["drbg_bytes_per_second"] == [0.0, 2048.0, 0.0]
    assert h["blocks"] == [10, 10, None]
    assert history_json(samples, 102.0)["requests_per_second"] == [2.5]


def test_request_rates_leave_out_the_dashboard_and_count_errors(tmp_path: Path) -> None:
    served = serve_memory(tmp_path)
    c = served.client
    registry = served.app.state.context.metrics.registry
    before = read_counters(registry, "simulator", 0.0)
    for _ in range(3):
        assert c.get(DATA).status_code == 200
        assert c.get("/").status_code == 200
        assert c.get("/dashboard/dashboard.js").status_code == 200
    assert c.get("/api/v2/bytes?n=32").status_code == 200
    assert c.get("/api/v2/bytes?n=-1").status_code == 422
    after = read_counters(registry, "simulator", 1.0)
    assert after.requests - before.requests == 2
    assert after.errors - before.errors == 1
    assert after.drbg_bytes - before.drbg_bytes == 32
    assert after.blocks == served.node.pool.level().blocks


def _keys(served: Served) -> dict[str, str]:
    store = served.app.state.context.access.store
    return {
        scope: store.create(f"{scope}-key", {scope}, None, None)[0] for scope in ("drbg", "admin")
    }


@pytest.mark.parametrize("url", [DATA, QUALITY])
def test_the_data_needs_an_admin_key_under_required_auth(tmp_path: Path, url: str) -> None:
    served = serve_memory(tmp_path, require_auth=True, dashboard_battery_seconds=0)
    keys = _keys(served)
    c = served.client
    r = c.get(url)
    assert_error(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_error(c.get(url, headers={"Authorization": f"Bearer {keys['drbg']}"}), 403, "forbidden")
    assert c.get(url, headers={"Authorization": f"Bearer {keys['admin']}"}).status_code == 200
    assert c.get(url, headers={"X-API-Key": keys["admin"]}).status_code == 200


def test_the_page_shell_is_served_without_a_key_and_holds_no_data(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, require_auth=True)
    c = served.client
    page = c.get("/")
    assert page.status_code == 200
    assert 'id="auth"' in page.text and "admin" in page.text
    assert "simulator" not in page.text and str(
        served.node.pool.level().blocks
    ) + " blocks" not in (page.text)
    assert c.get("/dashboard/dashboard.js").status_code == 200


@pytest.mark.parametrize("overrides", [{"require_auth": True, "public_status": True}, {}])
def test_the_data_is_public_where_status_is(tmp_path: Path, overrides: dict[str, Any]) -> None:
    c = serve_memory(tmp_path, dashboard_battery_seconds=0, **overrides).client
    assert c.get(DATA).status_code == 200
    assert c.get(QUALITY).status_code == 200


def test_openapi_documents_the_page_and_its_data(tmp_path: Path) -> None:
    doc = serve_memory(tmp_path, require_auth=True).client.get("/openapi.json").json()
    assert "/" in doc["paths"]
    for path in (DATA, QUALITY):
        op = doc["paths"][path]["get"]
        assert op["security"] == [{"bearer": []}, {"apiKey": []}]
        assert {"401", "403", "503"} <= set(op["responses"])
    assert "/dashboard/dashboard.js" not in doc["paths"]


def test_dashboard_off_serves_none_of_it(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, dashboard=False)
    c = served.client
    for url in ("/", DATA, QUALITY, "/dashboard/dashboard.js", "/dashboard/vendor/uPlot.min.css"):
        assert_error(c.get(url), 404, "not_found")
    paths = c.get("/openapi.json").json()["paths"]
    assert "/" not in paths and DATA not in paths
    assert c.get("/api/v2/status").status_code == 200


def _secrets(served: Served, blocks: list[bytes], api_key: str) -> list[str]:
    out = [api_key, api_key.split("_")[-1]]
    for data in blocks:
        out += [data.hex()[:32], data.hex()[:32].upper(), base64.b64encode(data).decode()[:24]]
        out.append(base64.urlsafe_b64encode(data).decode()[:24])
    pool = served.node.pool
    assert isinstance(pool, TaggedPool)
    pool_key = pool._key
    out += [pool_key.hex()[:32], base64.b64encode(pool_key).decode()[:24]]
    drbg = served.node.engine._drbg
    assert drbg is not None
    state = bytes(drbg._state)
    out += [state.hex()[:32], state.hex()[:32].upper(), base64.b64encode(state).decode()[:24]]
    return out


def test_the_snapshot_and_quality_carry_no_secret(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=0, require_auth=True, dashboard_battery_seconds=0)
    blocks = make_blocks(20, source="simulator", credited_bits=0)
    served.node.pool.put(blocks)
    key = _keys(served)["admin"]
    c = served.client
    auth = {"Authorization": f"Bearer {key}"}
    assert c.get("/api/v2/bytes?n=64", headers=auth).status_code == 200
    texts = [c.get(url, headers=auth).text for url in (DATA, QUALITY, "/")]
    for secret in _secrets(served, [b.data for b in blocks], key):
        for text in texts:
            assert secret not in text


def _assessment(source: str) -> SourceAssessment:
    return SourceAssessment(
        key=assessment_key(source, "dev", 2, "cfg"),
        source=source,
        backend="dev",
        configuration="cfg",
        width=2,
        samples=1_000_000,
        assessed_at=time.time(),
        h_submitter=0.5,
        streams=(0.61, 0.58),
        iid=(True, False),
        joint=0.55,
        joint_bits_per_symbol=2,
        joint_iid=False,
        credit=(0.5, 0.5),
    )


def test_quality_shows_the_stored_assessment_of_each_creditable_source(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, source="file", dashboard_battery_seconds=0)
    SourceLedger(served.node.pool, "ibm").save_assessment(_assessment("ibm"))
    q = served.client.get(QUALITY).json()
    assert q["source"] == "file"
    assert q["assessment"]["state"] == "pending"
    by_source = {a["source"]: a["assessment"] for a in q["assessments"]}
    assert by_source["file"] is None
    ibm = by_source["ibm"]
    assert ibm["streams"] == [0.61, 0.58] and ibm["iid"] == [True, False]
    assert ibm["joint_iid"] is False and ibm["credited_bits_per_sample"] == 1.0
    assert q["battery"]["state"] == "off"


def test_the_battery_runs_on_fresh_drbg_output_once_per_interval(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, dashboard_battery_seconds=600)
    c = served.client
    engine = served.node.engine
    first = c.get(QUALITY).json()["battery"]
    assert first["state"] == "running"
    assert (first["bytes"], first["alpha"], first["interval_seconds"]) == (125_000, 0.01, 600)
    deadline = time.monotonic() + BATTERY_WAIT
    while (b := c.get(QUALITY).json()["battery"])["state"] == "running":
        assert time.monotonic() < deadline, "the battery did not finish"
        time.sleep(0.2)
    assert b["state"] == "done", b
    assert engine.stats()["drbg_bytes"] >= 125_000
    names = {t["name"] for t in b["tests"]}
    assert len(names) >= 10 and "frequency" in names
    ran = [t for t in b["tests"] if t["skipped"] is None]
    assert ran and all(0.0 <= p <= 1.0 for t in ran for p in t["p_values"])
    assert b["passed"] + b["failed"] + b["skipped"] == len(b["tests"])
    assert b["failed"] <= 3, b  # a sound DRBG: at most a chance failure or two at alpha 0.01
    drawn = engine.stats()["drbg_bytes"]
    again = c.get(QUALITY).json()["battery"]
    assert again["state"] == "done" and again["ran_at"] == b["ran_at"]
    assert engine.stats()["drbg_bytes"] == drawn  # cached: no second draw within the interval


def test_the_battery_says_why_when_the_drbg_cannot_be_seeded(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=0)
    c = served.client
    deadline = time.monotonic() + 10
    while (b := c.get(QUALITY).json()["battery"])["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert b["state"] == "unavailable" and b["message"]


def test_the_sampler_starts_with_the_server_and_stops_after(tmp_path: Path) -> None:
    served = serve_memory(tmp_path)
    ctx = served.app.state.context
    sampler = dashboard._SAMPLERS[id(ctx)]
    assert sampler.samples() == []
    dashboard.start(ctx)
    assert len(sampler.samples()) == 1
    dashboard.stop(ctx)
    assert sampler._thread is not None and not sampler._thread.is_alive()


@pytest.mark.parametrize("seconds", [-1, 5, 86_401])
def test_the_battery_interval_is_checked(tmp_path: Path, seconds: float) -> None:
    with pytest.raises(ConfigError, match="dashboard_battery_seconds"):
        make_settings(tmp_path, dashboard_battery_seconds=seconds)
