"""drand's API on a real `qrng serve`: drand's routes, field names, caching and status
codes, our rounds verified by drand's own clients (Python ``drand-verify`` and the npm
``drand-client``) with only the URL changed, and timelock encryption with drand's
``tlock-js`` to a future round of our chain, decrypted once the round is out."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import drand_verify
import httpx
import pytest

from quantumrng.drand import CHAINED, UNCHAINED_G1
from quantumrng.drand.chain import ChainInfo as Info
from quantumrng.drand.chain import chain_hash, message, randomness, verify
from tests.server.process import Server, run_server
from tests.server.support import serve_memory
from tests.tools import npm_packages

PERIOD = 1  # seconds between rounds in these tests
NPM = ("drand-client@1.4.2", "tlock-js@0.9.0")
NODE_TIMEOUT = 60  # seconds for one node script
IMMUTABLE = "public, max-age=604800, immutable"

DRAND_CLIENT_JS = """
const {HttpChainClient, HttpCachingChain, fetchBeacon} = require('drand-client')
const [url, hash, publicKey, round] = process.argv.slice(2)
async function main() {
  const options = {disableBeaconVerification: false, noCache: false,
                   chainVerificationParams: {chainHash: hash, publicKey}}
  const chain = new HttpCachingChain(url, options)
  const client = new HttpChainClient(chain, options)
  const latest = await fetchBeacon(client)
  const named = await fetchBeacon(client, Number(round))
  // a client handing out the round before's signature under this round's number
  const forged = {options, chain: () => chain, latest: () => client.latest(),
                  get: async (r) => ({...(await client.get(r - 1)), round: r})}
  let forgedAccepted = true
  try { await fetchBeacon(forged, Number(round)) } catch (e) { forgedAccepted = false }
  console.log(JSON.stringify({latest, named, forgedAccepted}))
}
main().catch(e => { console.error(e.message); process.exit(1) })
"""

TLOCK_JS = """
const {timelockEncrypt, timelockDecrypt, HttpChainClient, HttpCachingChain, roundAt, Buffer}
  = require('tlock-js')
const [url, secret] = process.argv.slice(2)
async function main() {
  const options = {disableBeaconVerification: false, noCache: true}
  const client = new HttpChainClient(new HttpCachingChain(url, options), options)
  const info = await client.chain().info()
  const round = roundAt(Date.now(), info) + 6  // far enough for a loaded machine
  const ciphertext = await timelockEncrypt(round, Buffer.from(secret), client)
  let early = 'decrypted'
  try { await timelockDecrypt(ciphertext, client) } catch (e) { early = e.message }
  const deadline = Date.now() + 30000
  while (roundAt(Date.now(), info) < round && Date.now() < deadline) {
    await new Promise(r => setTimeout(r, 100))
  }
  const plaintext = (await timelockDecrypt(ciphertext, client)).toString()
  const armored = ciphertext.startsWith('-----BEGIN AGE')
  console.log(JSON.stringify({round, early, plaintext, armored}))
}
main().catch(e => { console.error(e.message); process.exit(1) })
"""


def get(server: Server, path: str) -> httpx.Response:
    return httpx.get(server.base_url + "/drand" + path, timeout=10)


def run_node(script: str, tmp: Path, *args: str) -> dict[str, Any]:
    folder = npm_packages(*NPM)
    path = tmp / "script.cjs"
    path.write_text(script)
    env = {**os.environ, "NODE_PATH": str(folder / "node_modules")}
    run = subprocess.run(
        ["node", str(path), *args],
        capture_output=True,
        timeout=NODE_TIMEOUT,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()
    result: dict[str, Any] = json.loads(run.stdout.splitlines()[-1])  # tlock-js logs first
    return result


def as_info(body: dict[str, Any]) -> Info:
    return Info(
        body["schemeID"],
        body["period"],
        body["genesis_time"],
        bytes.fromhex(body["public_key"]),
        bytes.fromhex(body["groupHash"]),
        body["metadata"]["beaconID"],
    )


@pytest.fixture(scope="module")
def quicknet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = {"drand_period": str(PERIOD)}
    with run_server(tmp_path_factory.mktemp("drand"), settings=settings) as server:
        yield server


@pytest.fixture(scope="module")
def chained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    settings = {"drand_period": str(PERIOD), "drand_scheme": CHAINED}
    with run_server(tmp_path_factory.mktemp("drand-chained"), settings=settings) as server:
        yield server


def wait_for_round(server: Server, round_: int) -> None:
    deadline = time.monotonic() + 10 * PERIOD + 5
    while get(server, "/public/latest").json()["round"] < round_:
        assert time.monotonic() < deadline, "the chain did not advance"
        time.sleep(0.1)


def test_info_has_drands_fields_and_drands_chain_hash(quicknet: Server) -> None:
    r = get(quicknet, "/info")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == [
        "public_key",
        "period",
        "genesis_time",
        "hash",
        "groupHash",
        "schemeID",
        "metadata",
    ]
    assert body["schemeID"] == UNCHAINED_G1 and body["period"] == PERIOD
    assert len(bytes.fromhex(body["public_key"])) == 96  # G2, as quicknet's
    assert body["hash"] == chain_hash(as_info(body)).hex()
    assert get(quicknet, "/chains").json() == [body["hash"]]
    assert get(quicknet, f"/{body['hash']}/info").json() == body
    v2 = get(quicknet, f"/v2/chains/{body['hash']}/info").json()
    assert v2["chain_hash"] == body["hash"] and v2["scheme"] == UNCHAINED_G1
    beacon_id = body["metadata"]["beaconID"]
    assert get(quicknet, "/v2/beacons").json() == [beacon_id]
    assert get(quicknet, f"/v2/beacons/{beacon_id}/info").json() == v2


def test_every_round_verifies_with_drand_verify_and_randomness_is_sha256_of_signature(
    quicknet: Server,
) -> None:
    info = get(quicknet, "/info").json()
    wait_for_round(quicknet, 2)
    latest = get(quicknet, "/public/latest").json()
    assert set(latest) == {"round", "randomness", "signature"}
    for n in range(1, latest["round"] + 1):
        body = get(quicknet, f"/public/{n}").json()
        assert body["round"] == n
        out = drand_verify.verify_bls_unchained_g1_rfc9380(n, body["signature"], info["public_key"])
        assert out == body["randomness"] == randomness(bytes.fromhex(body["signature"])).hex()
    with pytest.raises(ValueError):  # a signature is of its round only
        drand_verify.verify_bls_unchained_g1_rfc9380(
            latest["round"] + 1, latest["signature"], info["public_key"]
        )


def test_the_same_round_is_served_alike_on_every_route(quicknet: Server) -> None:
    chain = get(quicknet, "/info").json()["hash"]
    beacon_id = get(quicknet, "/info").json()["metadata"]["beaconID"]
    v1 = get(quicknet, "/public/1").json()
    assert get(quicknet, f"/{chain}/public/1").json() == v1
    assert get(quicknet, f"/{chain.upper()}/public/1").json() == v1
    v2 = {k: v for k, v in v1.items() if k != "randomness"}  # drand v2 leaves it out
    assert get(quicknet, f"/v2/chains/{chain}/rounds/1").json() == v2
    assert get(quicknet, f"/v2/beacons/{beacon_id}/rounds/1").json() == v2
    latest = get(quicknet, f"/v2/chains/{chain}/rounds/latest").json()
    assert set(latest) == {"round", "signature"} and latest["round"] >= 1


def test_caching_and_status_codes_are_drands(quicknet: Server) -> None:
    past = get(quicknet, "/public/1")
    assert past.headers["cache-control"] == IMMUTABLE
    assert past.headers["access-control-allow-origin"] == "*"
    latest = get(quicknet, "/public/latest")
    cache = latest.headers["cache-control"]
    assert cache.startswith("public, must-revalidate, max-age=")
    assert int(cache.rsplit("=", 1)[1]) <= PERIOD
    current = latest.json()["round"]
    future = get(quicknet, f"/public/{current + 5}")
    assert future.status_code == 425
    assert future.headers["content-type"] == "text/plain; charset=utf-8"
    assert future.text == "Requested future beacon\n"
    assert get(quicknet, "/public/abc").status_code == 400
    assert get(quicknet, f"/{'0' * 64}/public/1").status_code == 404
    assert get(quicknet, "/v2/beacons/someone-else/info").status_code == 404


def test_the_next_round_is_answered_once_it_is_emitted(quicknet: Server) -> None:
    info = get(quicknet, "/info").json()
    for _ in range(10):  # a loaded machine may let the round come out before the request
        upcoming = get(quicknet, "/public/latest").json()["round"] + 1
        emitted_at = info["genesis_time"] + (upcoming - 1) * PERIOD
        sent_at = time.time()
        r = get(quicknet, f"/public/{upcoming}")
        if sent_at < emitted_at - 0.05:
            break
    else:
        pytest.skip("every request was sent after its round was emitted: the machine is too slow")
    assert r.status_code == 200 and r.json()["round"] == upcoming
    assert r.headers["cache-control"] == "no-cache"
    assert time.time() >= emitted_at - 0.05


def test_health_reports_current_and_expected_rounds(quicknet: Server) -> None:
    r = get(quicknet, "/health")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
    body = r.json()
    assert list(body) == ["current", "expected"] and body["current"] == body["expected"] >= 1


@pytest.mark.slow
def test_the_chain_survives_a_restart_with_its_key_and_genesis(tmp_path: Path) -> None:
    settings = {"drand_period": str(PERIOD)}
    with run_server(tmp_path, settings=settings) as server:
        before = get(server, "/info").json()
        first = get(server, "/public/1").json()
        mode = (tmp_path / "data" / "drand" / "chain.key").stat().st_mode & 0o777
    assert mode == 0o600
    with run_server(tmp_path, settings=settings) as server:
        assert get(server, "/info").json() == before
        assert get(server, "/public/1").json() == first


def test_drands_javascript_client_verifies_our_rounds(quicknet: Server, tmp_path: Path) -> None:
    info = get(quicknet, "/info").json()
    wait_for_round(quicknet, 2)
    url = quicknet.base_url + "/drand"
    out = run_node(DRAND_CLIENT_JS, tmp_path, url, info["hash"], info["public_key"], "2")
    assert out["named"]["round"] == 2 and out["latest"]["round"] >= 2
    assert out["named"] == get(quicknet, "/public/2").json()
    assert out["forgedAccepted"] is False


@pytest.mark.slow
def test_tlock_js_encrypts_to_a_future_round_that_decrypts_once_it_is_out(
    quicknet: Server, tmp_path: Path
) -> None:
    url = quicknet.base_url + "/drand"
    out = run_node(TLOCK_JS, tmp_path, url, "sealed until round r")
    assert out["armored"] and out["plaintext"] == "sealed until round r"
    assert "too early" in out["early"]


def test_chained_rounds_verify_with_drand_verify_and_link_to_the_genesis_seed(
    chained: Server,
) -> None:
    info = get(chained, "/info").json()
    assert info["schemeID"] == CHAINED and len(bytes.fromhex(info["public_key"])) == 48
    assert info["hash"] == chain_hash(as_info(info)).hex()
    wait_for_round(chained, 3)
    previous = info["groupHash"]  # round 1 signs the genesis seed
    for n in (1, 2, 3):
        body = get(chained, f"/public/{n}").json()
        assert list(body) == ["round", "randomness", "signature", "previous_signature"]
        assert body["previous_signature"] == previous
        out = drand_verify.verify_pedersen_bls_chained(
            n, body["previous_signature"], body["signature"], info["public_key"]
        )
        assert out == body["randomness"]
        msg = message(CHAINED, n, bytes.fromhex(previous))
        pk, sig = bytes.fromhex(info["public_key"]), bytes.fromhex(body["signature"])
        assert verify(CHAINED, pk, msg, sig)
        previous = body["signature"]


def test_drands_javascript_client_verifies_chained_rounds(chained: Server, tmp_path: Path) -> None:
    info = get(chained, "/info").json()
    wait_for_round(chained, 3)
    url = chained.base_url + "/drand"
    out = run_node(DRAND_CLIENT_JS, tmp_path, url, info["hash"], info["public_key"], "3")
    assert out["named"] == get(chained, "/public/3").json()
    assert out["forgedAccepted"] is False


@pytest.mark.slow
def test_two_workers_serve_one_chain(tmp_path: Path) -> None:
    settings = {"drand_period": str(PERIOD)}
    with run_server(tmp_path, "--workers", "2", settings=settings) as server:
        seen = {
            (get(server, "/info").text, get(server, "/public/1").text)  # new connections
            for _ in range(16)
        }
    assert len(seen) == 1
    assert [p.name for p in (tmp_path / "data" / "drand").iterdir()] == ["chain.key"]


def test_no_drand_routes_when_the_period_is_zero(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, drand_period=0)
    assert served.client.get("/drand/info").status_code == 404
    assert not (tmp_path / "drand").exists()


def test_no_key_is_made_without_a_seeded_drbg(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=0, drand_period=PERIOD)
    r = served.client.get("/drand/public/latest")
    assert r.status_code == 503 and r.headers["content-type"] == "text/plain; charset=utf-8"
    assert not list(tmp_path.rglob("chain.key"))
