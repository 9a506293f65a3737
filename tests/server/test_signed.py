"""``signed=true`` on the v2 randomness routes, stored results and ``POST /api/v2/verify``.

The app runs in process over a SQLite pool and ledger (the log's store).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Route

from quantumrng.node import Node
from quantumrng.server import create_app, v2
from quantumrng.server.access import Access
from quantumrng.server.errors import EXCEPTION_HANDLERS
from quantumrng.server.keys import KeyStore
from quantumrng.server.randomness import random_endpoint
from quantumrng.server.verifiable import PublishedKeys, sealed_name
from quantumrng.signed import (
    RESULT_FIELDS,
    PublicKey,
    canonical,
    hash_api_key,
    rfc3339,
    verify_signed,
)
from tests.blocks import make_blocks
from tests.conftest import make_settings
from tests.redis_servers import redis_server
from tests.server.support import Served, TestClient, assert_error

#: A request of every v2 randomness route, answered in JSON.
ROUTES = [
    "/api/v2/bytes?n=16",
    "/api/v2/bytes?n=16&format=hex",
    "/api/v2/bits?n=70&format=string",
    "/api/v2/bits?n=70&format=base64",
    "/api/v2/integers?n=5&min=-3&max=3",
    "/api/v2/integers?n=2&min=0&max=100000000000000000000",
    "/api/v2/floats?n=3",
    "/api/v2/gaussians?n=3&mean=2.5&stddev=0.5",
    "/api/v2/uuids?n=2",
    "/api/v2/strings?n=2&length=5&alphabet=hex",
    "/api/v2/shuffle?min=1&max=9",
    "/api/v2/integers?n=3&min=1&max=6&mode=raw",
]


def signing_app(tmp_path: Path, **overrides: Any) -> Served:
    """An app over a SQLite pool holding simulator blocks; its log in ``ledger.sqlite3``."""
    values: dict[str, Any] = {
        "pool": "sqlite",
        "source": "simulator",
        "allow_uncredited_raw": True,
    }
    values.update(overrides)
    access = values.pop("access", None)
    settings = make_settings(tmp_path, **values)
    node = Node(settings, harvest_on_demand=False)
    node.pool.put(make_blocks(64, source="simulator", credited_bits=0))
    app = create_app(settings, node, access=access)
    return Served(app, node, TestClient(app, raise_server_exceptions=False))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = signing_app(tmp_path)
    yield s
    s.node.close()


def public_keys(client: TestClient) -> list[PublicKey]:
    response = client.get("/api/v2/keys/public")
    assert response.status_code == 200, response.text
    return [PublicKey.from_json(k) for k in response.json()["keys"]]


@pytest.mark.parametrize("path", ROUTES)
def test_every_v2_route_signs_its_answer_on_request(served: Served, path: str) -> None:
    c = served.client
    response = c.get(path + "&signed=true")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"data", "mode", "source", "signed", "log_index"}
    result = body["signed"]["result"]
    assert set(result) == RESULT_FIELDS
    assert result["data"] == body["data"] and result["provenance"] == body["source"]
    assert result["method"] == path.split("?")[0].rsplit("/", 1)[1]
    assert result["parameters"]["mode"] == body["mode"]
    assert "signed" not in result["parameters"]
    assert result["hashed_api_key"] == ""  # no key presented
    outcome = verify_signed(body["signed"], public_keys(c))
    assert outcome.valid, outcome.reason
    stored = c.get(f"/api/v2/results/{result['serial']}").json()
    assert stored == {"signed": body["signed"], "log_index": body["log_index"]}


def test_parameters_are_signed_as_asked_and_json_safe(served: Served) -> None:
    c = served.client
    big = c.get("/api/v2/integers?n=2&min=-100000000000000000000&max=5&signed=true").json()
    params = big["signed"]["result"]["parameters"]
    assert params == {"n": 2, "min": "-100000000000000000000", "max": 5, "mode": "drbg"}
    assert all(isinstance(v, str) for v in big["data"])
    named = c.get("/api/v2/strings?n=1&length=3&alphabet=hex&signed=true").json()
    assert named["signed"]["result"]["parameters"]["alphabet"] == "hex"


def test_serials_count_up_without_a_gap_per_key_and_overall(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    keys = KeyStore(settings.keys_path)
    alice, _ = keys.create("alice", {"drbg"}, None, None)
    bob, _ = keys.create("bob", {"drbg"}, None, None)
    s = signing_app(tmp_path)
    try:
        seen: dict[str, list[int]] = {}
        serials = []
        for who in [alice, None, bob, alice, alice, None, bob]:
            headers = {"X-API-Key": who} if who else {}
            body = s.client.get("/api/v2/floats?n=1&signed=true", headers=headers).json()
            result = body["signed"]["result"]
            assert result["hashed_api_key"] == hash_api_key(who)
            seen.setdefault(result["hashed_api_key"], []).append(result["key_serial"])
            serials.append(result["serial"])
        assert serials == list(range(1, 8))
        assert seen == {hash_api_key(alice): [1, 2, 3], "": [1, 2], hash_api_key(bob): [1, 2]}
    finally:
        s.node.close()


def test_unsigned_answers_are_unchanged(served: Served) -> None:
    """The same route built from v2's shape without a signer (as before signing existed)
    answers the same bytes and headers."""
    ctx = served.app.state.context
    before = Starlette(
        routes=[
            Route("/api/v2" + f.path, random_endpoint(ctx, f, v2.SHAPE).handler)
            for f in v2._formats(ctx)
        ],
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    old = TestClient(before)
    for query in ("integers?n=4&min=7&max=7", "shuffle?min=3&max=3", "bits?n=0", "uuids?n=x"):
        path = "/api/v2/" + query
        a, b = served.client.get(path), old.get(path)
        assert a.status_code == b.status_code
        assert a.content == b.content
        assert a.headers.items() == b.headers.items()
        c = served.client.get(path + "&signed=false")
        assert (c.status_code, c.content) == (a.status_code, a.content)
    assert set(served.client.get("/api/v2/floats?n=2").json()) == {"data", "mode", "source"}


def test_raw_octets_cannot_be_signed(served: Served) -> None:
    c = served.client
    error = assert_error(c.get("/api/v2/bytes?n=8&format=raw&signed=true"), 422)
    assert "JSON" in error["message"] and "signed" in error["message"]
    assert c.get("/api/v2/bytes?n=8&format=raw&signed=false").content.__len__() == 8
    assert_error(c.get("/api/v2/floats?signed=yes"), 400)
    assert_error(c.get("/api/v2/floats?signed=true&signed=true"), 400)
    assert "signed" not in c.get("/api/v1/qrng/get_bits?signed=true").text


def test_no_signature_no_answer_when_the_log_is_down(tmp_path: Path) -> None:
    with redis_server(persistent=False) as redis:
        s = signing_app(tmp_path, pool="redis", redis_url=redis.url, redis_key="signed-test")
        try:
            s.node.engine.reseed()
            ok = s.client.get("/api/v2/floats?n=1&signed=true")
            assert ok.status_code == 200, ok.text
            redis.stop()
            down = s.client.get("/api/v2/floats?n=1&signed=true")
            error = assert_error(down, 503)
            assert "data" not in down.json() and "signed" not in down.text
            assert error["code"].endswith("unavailable")
            assert s.client.get("/api/v2/floats?n=1").status_code == 200  # unsigned still served
        finally:
            s.node.close()


# -- stored results ----------------------------------------------------------------------------


def test_results_are_read_back_by_serial_only_with_their_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    keys = KeyStore(settings.keys_path)
    alice, _ = keys.create("alice", {"drbg"}, None, None)
    mallory, _ = keys.create("mallory", {"drbg", "raw"}, None, None)
    admin, _ = keys.create("operator", {"admin"}, None, None)
    s = signing_app(tmp_path)
    try:
        c = s.client
        mine = c.get("/api/v2/uuids?n=1&signed=true", headers={"X-API-Key": alice}).json()
        public = c.get("/api/v2/uuids?n=1&signed=true").json()
        serial = mine["signed"]["result"]["serial"]
        got = c.get(f"/api/v2/results/{serial}", headers={"Authorization": f"Bearer {alice}"})
        assert got.status_code == 200 and got.json()["signed"] == mine["signed"]
        assert c.get(f"/api/v2/results/{serial}", headers={"X-API-Key": admin}).status_code == 200
        assert_error(c.get(f"/api/v2/results/{serial}", headers={"X-API-Key": mallory}), 403)
        assert_error(c.get(f"/api/v2/results/{serial}"), 403)
        assert_error(c.get(f"/api/v2/results/{serial}", headers={"X-API-Key": "qrng_x"}), 401)
        anyone = c.get(f"/api/v2/results/{public['signed']['result']['serial']}")
        assert anyone.status_code == 200 and anyone.json()["signed"] == public["signed"]
        assert_error(c.get("/api/v2/results/99"), 404)
        assert_error(c.get("/api/v2/results/0"), 422)
        assert_error(c.get("/api/v2/results/x"), 400)
    finally:
        s.node.close()


def test_under_required_auth_a_result_needs_a_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    keys = KeyStore(settings.keys_path)
    alice, _ = keys.create("alice", {"drbg"}, None, None)
    s = signing_app(
        tmp_path, require_auth=True, access=Access(make_settings(tmp_path, require_auth=True))
    )
    try:
        c = s.client
        body = c.get("/api/v2/floats?signed=true", headers={"X-API-Key": alice}).json()
        serial = body["signed"]["result"]["serial"]
        assert_error(c.get(f"/api/v2/results/{serial}"), 401)
        assert c.get(f"/api/v2/results/{serial}", headers={"X-API-Key": alice}).status_code == 200
        # auditing needs no key
        assert c.get("/api/v2/keys/public").status_code == 200
        assert c.post("/api/v2/verify", json=body).json()["valid"] is True
    finally:
        s.node.close()


def test_a_pruned_result_is_gone(tmp_path: Path) -> None:
    s = signing_app(tmp_path)
    try:
        body = s.client.get("/api/v2/floats?signed=true").json()
        s.node.log_store.prune(before=float("inf"))
        assert_error(s.client.get(f"/api/v2/results/{body['signed']['result']['serial']}"), 404)
    finally:
        s.node.close()


# -- POST /api/v2/verify -----------------------------------------------------------------------


def test_verify_accepts_a_whole_answer_or_its_signed_object(served: Served) -> None:
    c = served.client
    body = c.get("/api/v2/integers?n=3&min=1&max=6&signed=true").json()
    for document in (body, body["signed"]):
        verdict = c.post("/api/v2/verify", json=document)
        assert verdict.status_code == 200
        assert verdict.headers["cache-control"] == "no-store"
        result = body["signed"]["result"]
        assert verdict.json() == {
            "valid": True,
            "reason": "ok",
            "key_id": result["key_id"],
            "serial": result["serial"],
        }


TAMPERED = st.sampled_from(sorted(RESULT_FIELDS | {"signature"}))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    field=TAMPERED,
    value=st.integers(-5, 5) | st.text(max_size=4) | st.none(),
    index=st.integers(0, 63),
)
def test_verify_says_invalid_for_any_tampered_field(
    served: Served, field: str, value: object, index: int
) -> None:
    c = served.client
    signed = c.get("/api/v2/integers?n=3&min=1&max=6&signed=true").json()["signed"]
    if field == "signature":
        raw = bytearray(base64.b64decode(signed["signature"]))
        raw[index] ^= 1
        signed["signature"] = base64.b64encode(bytes(raw)).decode()
    else:
        if canonical(signed["result"][field]) == canonical(value):
            value = [value]
        signed["result"][field] = value
    verdict = c.post("/api/v2/verify", json={"signed": signed}).json()
    assert verdict["valid"] is False and verdict["reason"] != "ok"


def test_verify_refuses_malformed_and_oversized_bodies(served: Served) -> None:
    c = served.client
    assert_error(c.post("/api/v2/verify", content=b"{not json"), 400)
    limit = 2 * served.node.settings.max_json_bytes
    assert_error(c.post("/api/v2/verify", content=b" " * (limit + 1)), 413)

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    assert_error(c.post("/api/v2/verify", content=chunks()), 413)
    assert c.post("/api/v2/verify", json=[1, 2]).json()["valid"] is False
    assert_error(c.get("/api/v2/verify"), 405)


def test_a_signature_verifies_offline_with_only_the_published_pem(served: Served) -> None:
    c = served.client
    body = c.get("/api/v2/gaussians?n=2&signed=true").json()
    listed = c.get("/api/v2/keys/public")
    assert listed.headers["cache-control"].startswith("public, max-age=")
    (entry,) = listed.json()["keys"]
    assert entry["key_id"] == body["signed"]["result"]["key_id"]
    assert entry["jwk"]["kid"] == entry["key_id"] and entry["not_after"] is None
    pem_only = PublicKey.from_pem(entry["pem"].encode())
    assert verify_signed(body["signed"], [pem_only]).valid
    assert json.loads(served.node.log_store.public_keys()[0])["key_id"] == entry["key_id"]


def test_only_keys_sealed_under_the_node_key_are_listed(served: Served) -> None:
    """A store writer cannot add a signing key: another node's key is listed once its
    entry is also sealed under the deployment's node key."""
    ctx = served.app.state.context
    served.client.get("/api/v2/floats?signed=true")
    (own,) = PublishedKeys(ctx).listed()
    other = PublicKey(Ed25519PrivateKey.generate().public_key(), 1.0)
    document = json.dumps(other.to_json(), sort_keys=True).encode()
    served.node.log_store.register_key(other.key_id, document)
    assert [k.key_id for k in PublishedKeys(ctx).listed()] == [own.key_id]
    served.node.pool.write_record(sealed_name(other), document)  # another node
    assert [k.key_id for k in PublishedKeys(ctx).listed()] == [own.key_id, other.key_id]
    ended = json.dumps({**other.to_json(), "not_after": rfc3339(2.0)}, sort_keys=True)
    served.node.log_store.register_key(other.key_id, ended.encode())  # not as sealed
    assert [k.key_id for k in PublishedKeys(ctx).listed()] == [own.key_id]
