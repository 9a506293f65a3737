"""``qrng verify``, ``qrng log verify`` and ``qrng signing rotate``, run as users run them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantumrng.cli import cli
from quantumrng.signed import RESULT_FIELDS, canonical
from quantumrng.transparency.verify import tree_head_data
from tests.cli.support import qrng
from tests.server.process import Server, run_server
from tests.server.support import Served
from tests.server.test_signed import signing_app


@pytest.fixture(scope="module")
def signed_answer(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Any], Path]]:
    """A signed answer of an in-process app, and the PEM of its key in a file."""
    tmp = tmp_path_factory.mktemp("signed")
    served: Served = signing_app(tmp)
    try:
        answer = served.client.get("/api/v2/integers?n=3&min=1&max=6&signed=true").json()
        listed = served.client.get("/api/v2/keys/public").json()
        pem = tmp / "service.pem"
        pem.write_text(listed["keys"][0]["pem"])
        (tmp / "keys.json").write_text(json.dumps(listed))
        yield answer, pem
    finally:
        served.node.close()


def test_verify_says_valid_with_only_the_public_key(
    tmp_path: Path, signed_answer: tuple[dict[str, Any], Path]
) -> None:
    answer, pem = signed_answer
    whole = tmp_path / "answer.json"
    whole.write_text(json.dumps(answer))
    done = qrng(tmp_path, "verify", str(whole), "--public-key", str(pem))
    assert done.returncode == 0, done.stderr
    serial = answer["signed"]["result"]["serial"]
    assert done.stdout.decode().startswith(f"valid: serial {serial}, signed by key ")
    bare = tmp_path / "signed.json"
    bare.write_text(json.dumps(answer["signed"]))
    assert (
        qrng(tmp_path, "verify", str(bare), "--keys", str(pem.with_name("keys.json"))).returncode
        == 0
    )


def test_verify_fails_in_one_line_on_a_tampered_answer(
    tmp_path: Path, signed_answer: tuple[dict[str, Any], Path]
) -> None:
    answer, pem = signed_answer
    tampered = json.loads(json.dumps(answer))
    tampered["signed"]["result"]["data"][0] = 7
    path = tmp_path / "answer.json"
    path.write_text(json.dumps(tampered))
    done = qrng(tmp_path, "verify", str(path), "--public-key", str(pem))
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "invalid" in lines[0] and "does not match" in lines[0]
    assert done.stdout == b""


def test_verify_reads_standard_input_and_refuses_bad_arguments(
    tmp_path: Path, signed_answer: tuple[dict[str, Any], Path]
) -> None:
    answer, pem = signed_answer
    runner = CliRunner()
    ok = runner.invoke(cli, ["verify", "-", "--public-key", str(pem)], input=json.dumps(answer))
    assert ok.exit_code == 0 and ok.output.startswith("valid")
    not_json = runner.invoke(cli, ["verify", "-", "--public-key", str(pem)], input="{")
    assert not_json.exit_code == 1 and "not JSON" in not_json.output
    no_key = runner.invoke(cli, ["verify", "-"], input=json.dumps(answer))
    assert no_key.exit_code == 2 and "--public-key" in no_key.output
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello")
    bad = runner.invoke(cli, ["verify", "-", "--public-key", str(not_pem)], input="{}")
    assert bad.exit_code == 2
    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    wrong = runner.invoke(
        cli, ["verify", "-", "--public-key", str(other)], input=json.dumps(answer)
    )
    assert wrong.exit_code == 1 and "unknown key" in wrong.output


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    field=st.sampled_from(sorted(RESULT_FIELDS | {"signature"})),
    value=st.integers(-3, 3) | st.text(max_size=3) | st.lists(st.integers(0, 9), max_size=3),
    index=st.integers(0, 63),
)
def test_any_tampered_field_fails_qrng_verify(
    signed_answer: tuple[dict[str, Any], Path], field: str, value: object, index: int
) -> None:
    answer, pem = signed_answer
    tampered = json.loads(json.dumps(answer))
    if field == "signature":
        raw = bytearray(base64.b64decode(tampered["signed"]["signature"]))
        raw[index] ^= 0x80
        tampered["signed"]["signature"] = base64.b64encode(bytes(raw)).decode()
    else:
        if canonical(tampered["signed"]["result"][field]) == canonical(value):
            value = [value]
        tampered["signed"]["result"][field] = value
    done = CliRunner().invoke(
        cli, ["verify", "-", "--public-key", str(pem)], input=json.dumps(tampered)
    )
    assert done.exit_code == 1, done.output
    assert done.output.count("\n") == 1 and "invalid" in done.output


# -- qrng log verify against a real server ------------------------------------------------------


def _signed(server: Server, n: int) -> list[dict[str, Any]]:
    with httpx.Client(base_url=server.base_url) as http:
        return [
            http.get("/api/v2/floats", params={"n": 1, "signed": "true"}).json() for _ in range(n)
        ]


def _private_key(tmp_path: Path) -> Ed25519PrivateKey:
    (path,) = (tmp_path / "data" / "signing").glob("*.pem")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def test_log_verify_checks_heads_inclusion_and_consistency(tmp_path: Path) -> None:
    with run_server(tmp_path) as server:
        answers = _signed(server, 3)
        files = []
        for i, answer in enumerate(answers):
            files += ["--result", str(tmp_path / f"r{i}.json")]
            (tmp_path / f"r{i}.json").write_text(json.dumps(answer))
        state = tmp_path / "head.json"
        done = qrng(
            tmp_path, "log", "verify", "--url", server.base_url, *files, "--state", str(state)
        )
        assert done.returncode == 0, done.stderr
        assert "3 result(s) included" in done.stdout.decode()
        first = json.loads(state.read_text())
        assert first["tree_size"] >= 3
        _signed(server, 2)
        time.sleep(1.5)  # a new head (log_head_seconds)
        keys = tmp_path / "keys.json"
        keys.write_text(httpx.get(server.base_url + "/api/v2/keys/public").text)
        again = qrng(
            tmp_path, "log", "verify", "--url", server.base_url, "--state", str(state),
            "--keys", str(keys),
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert f"consistent with tree size {first['tree_size']}" in again.stdout.decode()
        assert json.loads(state.read_text())["tree_size"] >= first["tree_size"] + 2

        # the operator rewrites history: a head, signed by the service's own key, for
        # the same size with another root, handed out earlier
        key = _private_key(tmp_path)
        root = bytes(32)
        forged = {**first, "root_hash": root.hex()}
        forged["signature"] = base64.b64encode(
            key.sign(tree_head_data(first["timestamp"], first["tree_size"], root))
        ).decode()
        state.write_text(json.dumps(forged))
        rewritten = qrng(tmp_path, "log", "verify", "--url", server.base_url, "--state", str(state))
        assert rewritten.returncode == 1
        assert "rewritten" in rewritten.stderr.decode()
        assert json.loads(state.read_text()) == forged  # not replaced on failure

        # a result signed by the service but never appended (withheld from the log)
        withheld = json.loads(json.dumps(answers[0]))
        result = withheld["signed"]["result"]
        result["data"] = [0.25]
        withheld["signed"]["signature"] = base64.b64encode(key.sign(canonical(result))).decode()
        (tmp_path / "w.json").write_text(json.dumps(withheld))
        missing = qrng(
            tmp_path,
            "log",
            "verify",
            "--url",
            server.base_url,
            "--result",
            str(tmp_path / "w.json"),
        )
        assert missing.returncode == 1
        line = missing.stderr.decode().strip().splitlines()[-1]
        assert f"result {result['serial']} is not in the log" in line


def test_signing_rotate_prints_the_new_key_and_old_results_still_verify(
    tmp_path: Path,
) -> None:
    with run_server(tmp_path) as server:
        (before,) = _signed(server, 1)
        done = qrng(tmp_path, "signing", "rotate")
        assert done.returncode == 0, done.stderr
        new_id = done.stdout.decode().strip()
        assert new_id != before["signed"]["result"]["key_id"]
        time.sleep(1.2)  # the running server follows within REFRESH_SECONDS
        (after,) = _signed(server, 1)
        assert after["signed"]["result"]["key_id"] == new_id
        keys = httpx.get(server.base_url + "/api/v2/keys/public").json()["keys"]
    periods = {k["key_id"]: k["not_after"] for k in keys}
    assert periods[before["signed"]["result"]["key_id"]] is not None and periods[new_id] is None
    listed = tmp_path / "keys.json"
    listed.write_text(json.dumps({"keys": keys}))
    for answer in (before, after):
        path = tmp_path / "a.json"
        path.write_text(json.dumps(answer))
        assert qrng(tmp_path, "verify", str(path), "--keys", str(listed)).returncode == 0
