"""``qrng beacon verify-chain``: ok for a true chain; a broken link, a wrong
precommitment and a forged signature are each found, from files and from a server."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import rsa

from quantumrng.beacon import BeaconKey, Pulse, self_signed_certificate, sign
from quantumrng.cli import cli
from quantumrng.pool.memory import MemoryPool
from quantumrng.transparency.store import MemoryLedger
from tests.server.process import run_server
from tests.server.test_beacon import wait_for_pulses
from tests.test_beacon import T0, publisher, stored


@pytest.fixture(scope="module")
def key() -> BeaconKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return BeaconKey(private, self_signed_certificate(private, "test beacon"))


@pytest.fixture
def chain(key: BeaconKey) -> list[Pulse]:
    store = MemoryLedger()
    beacon = publisher(store, MemoryPool(), key)
    for k in range(4):
        beacon.publish(T0 + k * 60_000)
    return stored(store)


def verify(tmp_path: Path, pulses: list[Pulse], key: BeaconKey, *args: str) -> Result:
    files = []
    for p in pulses:
        path = tmp_path / f"pulse-{p.pulse_index}.json"
        path.write_text(json.dumps({"pulse": p.to_json()}))
        files += ["--file", str(path)]
    certificate = tmp_path / "certificate.pem"
    certificate.write_text(key.certificate_pem)
    command = ["beacon", "verify-chain", "--certificate", str(certificate), *files, *args]
    return CliRunner().invoke(cli, command)


def test_a_true_chain_is_ok(tmp_path: Path, chain: list[Pulse], key: BeaconKey) -> None:
    result = verify(tmp_path, chain, key, "--from", "1", "--to", "4")
    assert result.exit_code == 0, result.output
    assert result.output == "ok: chain 1, pulses 1 to 4\n"


def changed(chain: list[Pulse], index: int, change: Callable[[Pulse], Pulse]) -> list[Pulse]:
    return [change(p) if p.pulse_index == index else p for p in chain]


def test_a_broken_link_is_found(tmp_path: Path, chain: list[Pulse], key: BeaconKey) -> None:
    def relink(p: Pulse) -> Pulse:
        previous = replace(p.list_values[0], value=os.urandom(64))
        return sign(replace(p, list_values=(previous, *p.list_values[1:])), key.private_key)

    result = verify(tmp_path, changed(chain, 3, relink), key, "--from", "1", "--to", "3")
    assert result.exit_code == 1
    assert result.output.startswith("link: pulse 1/3: previous list value is not")
    assert len(result.output.splitlines()) == 1


def test_a_wrong_precommitment_is_found(tmp_path: Path, chain: list[Pulse], key: BeaconKey) -> None:
    def reroll(p: Pulse) -> Pulse:
        return sign(replace(p, local_random_value=os.urandom(64)), key.private_key)

    result = verify(tmp_path, changed(chain, 2, reroll), key, "--from", "1", "--to", "2")
    assert result.exit_code == 1
    assert result.output == (
        "precommitment: pulse 1/2: SHA-512(localRandomValue) is not the previous pulse's "
        "precommitmentValue\n"
    )


def test_a_forged_signature_is_found(tmp_path: Path, chain: list[Pulse], key: BeaconKey) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def forge(p: Pulse) -> Pulse:
        return sign(p, forger)

    result = verify(tmp_path, changed(chain, 4, forge), key, "--from", "1", "--to", "4")
    assert result.exit_code == 1
    assert result.output == (
        "signature: pulse 1/4: signatureValue does not verify under the certificate\n"
    )


def test_a_missing_pulse_is_found(tmp_path: Path, chain: list[Pulse], key: BeaconKey) -> None:
    result = verify(tmp_path, chain[:2], key, "--from", "1", "--to", "3")
    assert result.exit_code == 1
    assert result.output == "missing: pulse 1/3: not in the files given\n"


def test_a_served_chain_verifies_and_a_pulse_not_yet_published_is_missing(
    tmp_path: Path,
) -> None:
    with run_server(tmp_path, settings={"beacon_period": "1"}) as server:
        last = wait_for_pulses(server, 3)
        base = ["beacon", "verify-chain", "--url", server.base_url, "--from", "1"]
        ok = CliRunner().invoke(cli, [*base, "--to", "3"])
        ahead = CliRunner().invoke(cli, [*base, "--to", str(last.pulse_index + 30)])
    assert ok.exit_code == 0, ok.output
    assert ok.output == f"ok: chain {last.chain_index}, pulses 1 to 3\n"
    assert ahead.exit_code == 1
    assert ahead.output.startswith(f"missing: pulse {last.chain_index}/")
    assert len(ahead.output.splitlines()) == 1
