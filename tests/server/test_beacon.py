"""The beacon of a real `qrng serve`: pulses every second in the Beacon 2.0 format,
NIST's routes and caching, precommitments kept, one publisher among workers, a gap
after a restart starting a new chain, and NIST's npm verifier accepting our pulses."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from quantumrng.beacon import STATUS_NEW_CHAIN, Pulse, certificate_id, verify_chain
from tests.server.process import Server, run_server

BEACON = {"beacon_period": "1"}
NPM_VERIFIER = "nist-randomness-beacon@2.0.4"  # the Beacon 2.0 verifier on npm
NIST_BASE = "https://beacon.nist.gov/beacon/2.0/"


def get(server: Server, path: str) -> httpx.Response:
    return httpx.get(server.base_url + "/beacon/2.0" + path, timeout=5)


def pulse_at(server: Server, path: str) -> Pulse | None:
    r = get(server, path)
    return Pulse.from_json(r.json()) if r.status_code == 200 else None


def wait_for_pulses(server: Server, count: int, timeout: float = 30.0) -> Pulse:
    """Wait until the newest pulse has index ``count`` or more; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = pulse_at(server, "/pulse/last")
        if last is not None and last.pulse_index >= count:
            return last
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} pulses after {timeout} s: {server.log.read_text()}")


def certificate_of(server: Server, pulse: Pulse) -> x509.Certificate:
    r = get(server, f"/certificate/{pulse.certificate_id.hex()}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return x509.load_pem_x509_certificate(r.content)


@pytest.fixture(scope="module")
def beacon_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("beacon"), settings=BEACON) as server:
        yield server


def test_pulses_are_served_in_the_beacon_format_with_nists_routes(beacon_server: Server) -> None:
    last = wait_for_pulses(beacon_server, 3)
    c = last.chain_index
    body = get(beacon_server, f"/chain/{c}/pulse/2").json()
    assert list(body) == ["pulse"]
    assert list(body["pulse"]) == [
        "uri", "version", "cipherSuite", "period", "certificateId", "chainIndex", "pulseIndex",
        "timeStamp", "localRandomValue", "external", "listValues", "precommitmentValue",
        "statusCode", "signatureValue", "outputValue",
    ]  # fmt: skip
    second = Pulse.from_json(body)
    assert second.uri == f"{beacon_server.base_url}/beacon/2.0/chain/{c}/pulse/2"
    assert (second.version, second.cipher_suite, second.period) == ("2.0", 0, 1000)
    assert second.time_ms % 1000 == 0
    assert pulse_at(beacon_server, f"/pulse/time/{second.time_ms}") == second
    assert pulse_at(beacon_server, f"/pulse/time/{second.time_ms - 500}") == second
    assert pulse_at(beacon_server, f"/pulse/time/next/{second.time_ms - 1000}") == second
    assert pulse_at(beacon_server, f"/pulse/time/previous/{second.time_ms + 1000}") == second
    newest = pulse_at(beacon_server, "/chain/last/pulse/last")
    assert newest is not None and newest.chain_index == c
    assert pulse_at(beacon_server, f"/chain/{c}/pulse/last") is not None
    certificate = certificate_of(beacon_server, second)
    assert certificate_id(certificate) == second.certificate_id
    assert get(beacon_server, "/certificate/" + "ab" * 64).status_code == 404


def test_a_pulse_not_published_yet_is_a_404_at_once_and_past_pulses_are_immutable(
    beacon_server: Server,
) -> None:
    last = wait_for_pulses(beacon_server, 2)
    c, future = last.chain_index, last.pulse_index + 30
    started = time.monotonic()
    assert get(beacon_server, f"/chain/{c}/pulse/{future}").status_code == 404
    assert get(beacon_server, f"/pulse/time/next/{last.time_ms + 60_000}").status_code == 404
    assert get(beacon_server, f"/chain/{c + 5}/pulse/last").status_code == 404
    assert time.monotonic() - started < 2.0
    past = get(beacon_server, f"/chain/{c}/pulse/1")
    assert past.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert get(beacon_server, "/pulse/last").headers["cache-control"] == "no-cache"
    assert get(beacon_server, "/chain/1/pulse/0").status_code == 422


def test_each_pulse_keeps_the_precommitment_of_the_one_before(beacon_server: Server) -> None:
    before = wait_for_pulses(beacon_server, 2)
    after = wait_for_pulses(beacon_server, before.pulse_index + 1)
    following = pulse_at(
        beacon_server, f"/chain/{before.chain_index}/pulse/{before.pulse_index + 1}"
    )
    assert following is not None and after.chain_index == before.chain_index
    assert hashlib.sha512(following.local_random_value).digest() == before.precommitment_value
    pulses = [
        p
        for i in range(1, after.pulse_index + 1)
        if (p := pulse_at(beacon_server, f"/chain/{after.chain_index}/pulse/{i}")) is not None
    ]
    certificate = certificate_of(beacon_server, after)
    table = {certificate_id(certificate): certificate}
    assert verify_chain(pulses, table.get) == []


@pytest.mark.slow
def test_two_workers_publish_each_pulse_once(tmp_path: Path) -> None:
    with run_server(tmp_path, "--workers", "2", settings=BEACON) as server:
        last = wait_for_pulses(server, 4)
        pulses = [
            pulse_at(server, f"/chain/{last.chain_index}/pulse/{i}")
            for i in range(1, last.pulse_index + 1)
        ]
    assert all(p is not None for p in pulses)
    times = [p.time_ms for p in pulses if p is not None]
    assert times == list(range(times[0], times[0] + 1000 * len(times), 1000))
    assert len({p.certificate_id for p in pulses if p is not None}) == 1  # one key made


@pytest.mark.slow
def test_a_restart_after_a_gap_starts_a_new_chain(tmp_path: Path) -> None:
    with run_server(tmp_path, settings=BEACON) as server:
        first = wait_for_pulses(server, 1)
    time.sleep(2.5)  # more than a period without any node
    with run_server(tmp_path, settings=BEACON) as server:
        deadline = time.monotonic() + 30
        while (last := pulse_at(server, "/pulse/last")) is None or (
            last.chain_index == first.chain_index
        ):
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.2)
        start = pulse_at(server, f"/chain/{last.chain_index}/pulse/1")
    assert last.chain_index == first.chain_index + 1
    assert start is not None and start.status_code == STATUS_NEW_CHAIN
    assert start.list_values[0].value == bytes(64)


# -- an existing Beacon 2.0 verifier from the npm registry --------------------------------


@pytest.fixture(scope="session")
def npm_verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NIST's Beacon 2.0 wrapper from npm, which checks each pulse's signature (fetching
    the certificate by id) and outputValue, installed into a cache folder."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("node and npm are needed for the npm Beacon 2.0 verifier")
    folder = tmp_path_factory.mktemp("npm")
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--cache", str(folder / ".cache"),
         "--prefix", str(folder), NPM_VERIFIER],
        capture_output=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"npm install {NPM_VERIFIER} failed: {done.stderr.decode()[-500:]}")
    return folder


def run_verifier(folder: Path, base: str, script: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``script`` against the package, its base URL (and nothing else) changed."""
    package = folder / "node_modules" / "nist-randomness-beacon" / "index.js"
    source = package.read_text()
    assert source.count(NIST_BASE) == 1
    pointed = folder / "node_modules" / "pointed.js"
    pointed.write_text(source.replace(NIST_BASE, base + "/beacon/2.0/"))
    program = f"const beacon = require('./pointed.js');\n{script}"
    return subprocess.run(
        ["node", "-e", program],
        cwd=folder / "node_modules",
        capture_output=True,
        timeout=60,
        check=False,
    )


SHOW = (
    "const show = p => p.then(b => ({ok: true, pulse: b.pulse.pulseIndex}),"
    " e => ({ok: false, e: String(e)}));\n"
)


def test_nists_npm_verifier_accepts_our_pulses(beacon_server: Server, npm_verifier: Path) -> None:
    last = wait_for_pulses(beacon_server, 2)
    c, i = last.chain_index, last.pulse_index
    script = (
        SHOW
        + f"""
Promise.all([
  show(beacon.getPulseByChainAndPulseIndex({c}, {i})),
  show(beacon.getPulseByChainAndPulseIndex({c}, 1)),
  show(beacon.getMostRecentPulse()),
  show(beacon.getPreviousPulse({last.time_ms})),
]).then(r => console.log(JSON.stringify(r)));
"""
    )
    done = run_verifier(npm_verifier, beacon_server.base_url, script)
    assert done.returncode == 0, done.stderr.decode()
    results = json.loads(done.stdout)
    assert results[:2] == [{"ok": True, "pulse": i}, {"ok": True, "pulse": 1}]
    assert all(r["ok"] for r in results), results


def test_the_npm_verifier_rejects_a_pulse_whose_value_was_changed(
    tmp_path: Path, beacon_server: Server, npm_verifier: Path
) -> None:
    """The same verifier, pointed at copies of two of our pulses, the second with its
    localRandomValue changed, accepts the first and refuses the second: it does check."""
    last = wait_for_pulses(beacon_server, 2)
    c = last.chain_index
    served = tmp_path / "beacon" / "2.0"
    (served / "chain" / str(c) / "pulse").mkdir(parents=True)
    (served / "certificate").mkdir()
    for i in (1, 2):
        body = get(beacon_server, f"/chain/{c}/pulse/{i}").json()
        if i == 2:
            body["pulse"]["localRandomValue"] = "00" * 64
        (served / "chain" / str(c) / "pulse" / str(i)).write_text(json.dumps(body))
    pem = get(beacon_server, f"/certificate/{last.certificate_id.hex()}").text
    (served / "certificate" / last.certificate_id.hex()).write_text(pem)
    with subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as files:
        try:
            assert files.stdout is not None
            port = int(files.stdout.readline().split()[5])
            base = f"http://127.0.0.1:{port}"
            script = SHOW + f"show(beacon.getPulseByChainAndPulseIndex({c}, {{i}}))"
            script += ".then(r => console.log(JSON.stringify(r)));"
            accepted = run_verifier(npm_verifier, base, script.replace("{i}", "1"))
            refused = run_verifier(npm_verifier, base, script.replace("{i}", "2"))
        finally:
            files.terminate()
    assert json.loads(accepted.stdout) == {"ok": True, "pulse": 1}
    # the package's refusal path calls a shadowed reject(): node ends with an error
    assert refused.returncode != 0 and b'"ok":true' not in refused.stdout
