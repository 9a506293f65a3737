"""The log's routes (head, inclusion and consistency proofs), their documentation, and
signed answers from a real two-worker server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from quantumrng.server.keys import KeyStore
from quantumrng.signed import PublicKey, canonical, hash_api_key, verify_signed
from quantumrng.transparency.verify import check_consistency, check_inclusion, verify_head
from tests.conftest import make_settings
from tests.server.process import run_server
from tests.server.support import Served, assert_error
from tests.server.test_signed import ROUTES, public_keys, signing_app


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = signing_app(tmp_path)
    yield s
    s.node.close()


def _sign(served: Served, n: int) -> list[dict[str, Any]]:
    return [
        served.client.get("/api/v2/integers?n=1&min=0&max=9&signed=true").json()["signed"]
        for _ in range(n)
    ]


def _head(served: Served) -> dict[str, Any]:
    served.node.log.publish_head()  # what the head thread does every log_head_seconds
    response = served.client.get("/api/v2/log/head")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=1"
    head: dict[str, Any] = response.json()
    return head


def test_head_and_inclusion_proofs_have_the_issue_shapes_and_check_out(served: Served) -> None:
    c = served.client
    signed = _sign(served, 5)
    head = _head(served)
    assert set(head) == {"tree_size", "root_hash", "timestamp", "key_id", "signature"}
    assert head["tree_size"] == 5
    keys = public_keys(c)
    assert verify_head(head, keys)
    assert not verify_head({**head, "tree_size": 4}, keys)
    for one in signed:
        serial = one["result"]["serial"]
        proof = c.get(f"/api/v2/log/proof/{serial}").json()
        assert set(proof) == {"leaf_index", "tree_size", "leaf_hash", "audit_path"}
        assert proof["tree_size"] == 5
        assert check_inclusion(proof, head, canonical(one["result"]))
        other = signed[serial % 5]["result"]  # another result's leaf is not at this index
        assert not check_inclusion(proof, head, canonical(other))
        tampered = {**one["result"], "data": [10]}
        assert not check_inclusion(proof, head, canonical(tampered))


def test_proofs_at_a_given_size_and_consistency_between_heads(served: Served) -> None:
    c = served.client
    _sign(served, 3)
    first = _head(served)
    _sign(served, 4)
    second = _head(served)
    keys = public_keys(c)
    assert verify_head(first, keys) and verify_head(second, keys)
    fixed = c.get("/api/v2/log/proof/2?tree_size=3")
    assert fixed.headers["cache-control"].endswith("immutable")
    assert check_inclusion(fixed.json(), first)
    assert not check_inclusion(fixed.json(), second)
    response = c.get("/api/v2/log/consistency?first=3&second=7")
    assert response.status_code == 200
    proof = response.json()
    assert set(proof) == {"first", "second", "proof"} and (proof["first"], proof["second"]) == (
        3,
        7,
    )
    assert check_consistency(proof, first, second)
    forged_root = {**first, "root_hash": second["root_hash"]}
    assert not check_consistency(proof, forged_root, second)
    same = c.get("/api/v2/log/consistency?first=7&second=7").json()
    assert same["proof"] == []


def test_the_log_routes_refuse_what_is_not_there(served: Served) -> None:
    c = served.client
    _sign(served, 2)
    _head(served)
    assert_error(c.get("/api/v2/log/proof/3"), 404)
    assert_error(c.get("/api/v2/log/proof/1?tree_size=9"), 404)
    assert_error(c.get("/api/v2/log/proof/1?tree_size=0"), 422)
    assert_error(c.get("/api/v2/log/proof/1?size=1"), 400)
    assert_error(c.get("/api/v2/log/consistency?first=2&second=1"), 422)
    assert_error(c.get("/api/v2/log/consistency?first=1"), 400)
    assert_error(c.get("/api/v2/log/consistency?first=1&second=9"), 404)


def test_openapi_documents_the_family_and_the_signed_parameter(served: Served) -> None:
    doc = served.client.get("/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/api/v2/keys/public",
        "/api/v2/results/{serial}",
        "/api/v2/log/head",
        "/api/v2/log/proof/{serial}",
        "/api/v2/log/consistency",
    ):
        assert "get" in paths[path], path
    assert set(paths["/api/v2/verify"]) == {"post"}
    randomness = {r.split("?")[0] for r in ROUTES}
    for path in randomness:
        params = {p["name"]: p for p in paths[path]["get"]["parameters"]}
        assert params["signed"]["schema"] == {"type": "boolean", "default": False}
        schema = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert {"signed", "log_index"} <= set(schema["properties"])
    v1 = paths["/api/v1/qrng/get_bits"]["get"]
    assert "signed" not in {p["name"] for p in v1["parameters"]}


# -- a real server of two workers --------------------------------------------------------------


MAX_ROUNDS = 4  # rounds of 200 signed requests at most, until both workers have answered


@pytest.mark.slow
def test_a_two_worker_server_numbers_concurrent_answers_without_a_gap(tmp_path: Path) -> None:
    """Serials are gap-free overall and per key under concurrent requests on two
    workers; every answer verifies offline with only the published PEM, and is stored."""
    keys = KeyStore(make_settings(tmp_path / "data").keys_path)
    alice, _ = keys.create("alice", {"drbg"}, None, None)
    bob, _ = keys.create("bob", {"drbg"}, None, None)
    principals = [alice, bob, None, alice]
    answers: list[dict[str, Any]] = []
    failures: list[str] = []
    lock = threading.Lock()
    with run_server(tmp_path, "--workers", "2") as server:

        def client(who: str | None) -> None:
            headers = {"X-API-Key": who} if who else {}
            fresh = httpx.Limits(max_keepalive_connections=0)  # each request: any worker
            with httpx.Client(
                base_url=server.base_url, headers=headers, timeout=30, limits=fresh
            ) as http:
                for _ in range(25):
                    r = http.get(
                        "/api/v2/integers", params={"n": 1, "min": 1, "max": 6, "signed": "true"}
                    )
                    with lock:
                        if r.status_code == 200:
                            answers.append(r.json())
                        else:
                            failures.append(r.text)

        # which worker accepts a connection is the kernel's choice: on a loaded machine one
        # worker may take a whole round, so rounds go on (at most MAX_ROUNDS) until both served
        rounds = 0
        while rounds < MAX_ROUNDS:
            threads = [threading.Thread(target=client, args=(p,)) for p in principals * 2]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            rounds += 1
            assert not failures, failures[:3]
            if len({a["source"]["seeded_at"] for a in answers}) >= 2:
                break
        listed = httpx.get(server.base_url + "/api/v2/keys/public").json()["keys"]
        assert len(listed) == 1, "both workers sign with the one key of the data directory"
        pem_only = [PublicKey.from_pem(listed[0]["pem"].encode())]
        results = [a["signed"]["result"] for a in answers]
        assert sorted(r["serial"] for r in results) == list(range(1, 200 * rounds + 1))
        per_key: dict[str, list[int]] = {}
        for r in results:
            per_key.setdefault(r["hashed_api_key"], []).append(r["key_serial"])
        assert {k: sorted(v) for k, v in per_key.items()} == {
            hash_api_key(alice): list(range(1, 100 * rounds + 1)),
            hash_api_key(bob): list(range(1, 50 * rounds + 1)),
            "": list(range(1, 50 * rounds + 1)),
        }
        assert all(verify_signed(a["signed"], pem_only).valid for a in answers)
        seeds = {a["source"]["seeded_at"] for a in answers}
        assert len(seeds) >= 2, "expected answers from both workers (each seeds its DRBG)"
        for a in answers[::40]:
            r = a["signed"]["result"]
            owner = {hash_api_key(alice): alice, hash_api_key(bob): bob}.get(r["hashed_api_key"])
            headers = {"X-API-Key": owner} if owner else {}
            stored = httpx.get(f"{server.base_url}/api/v2/results/{r['serial']}", headers=headers)
            assert stored.status_code == 200 and stored.json()["signed"] == a["signed"]
