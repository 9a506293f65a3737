"""The ``qrng`` command line, run as users run it: a real process."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest


def qrng(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    env["QRNG_DATA_DIR"] = str(tmp_path / "data")
    env["QRNG_SOURCE"] = "os"
    return subprocess.run(
        [sys.executable, "-m", "quantumrng", *args],
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_help_does_not_import_qiskit() -> None:
    code = (
        "import sys\n"
        "from quantumrng.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert not any(m.startswith('qiskit') for m in sys.modules), 'qiskit imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert b"serve" in result.stdout and b"harvest" in result.stdout


def test_bytes_hex_base64_raw(tmp_path: Path) -> None:
    out = qrng(tmp_path, "bytes", "32")
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(rb"[0-9a-f]{64}\n", out.stdout)
    out = qrng(tmp_path, "bytes", "32", "--base64")
    assert len(base64.b64decode(out.stdout.strip(), validate=True)) == 32
    out = qrng(tmp_path, "bytes", "3000000", "--raw")
    assert len(out.stdout) == 3_000_000


def test_large_hex_and_base64_stream_across_chunks(tmp_path: Path) -> None:
    n = (3 << 20) + 7  # more than one 3 MiB chunk
    out = qrng(tmp_path, "bytes", str(n))
    assert out.returncode == 0 and len(out.stdout) == 2 * n + 1
    assert re.fullmatch(rb"[0-9a-f]+\n", out.stdout)
    out = qrng(tmp_path, "bytes", str(n), "--base64")
    assert len(base64.b64decode(out.stdout.strip(), validate=True)) == n


def test_no_arguments_prints_help_and_exits_2(tmp_path: Path) -> None:
    out = qrng(tmp_path)
    assert out.returncode == 2
    assert b"Usage:" in out.stderr and b"\n" in out.stderr.strip()


def test_bits_keep_exact_length(tmp_path: Path) -> None:
    out = qrng(tmp_path, "bits", "13")
    assert re.fullmatch(rb"[01]{13}\n", out.stdout), out.stderr


def test_int_float_uuid_string(tmp_path: Path) -> None:
    out = qrng(tmp_path, "int", "-5", "5", "-n", "50", "--json")
    values = json.loads(out.stdout)
    assert len(values) == 50 and all(-5 <= v <= 5 for v in values)
    out = qrng(tmp_path, "int", "0", str(2**200))
    assert 0 <= int(out.stdout) <= 2**200
    floats = [float(x) for x in qrng(tmp_path, "float", "-n", "5").stdout.split()]
    assert len(floats) == 5 and all(0 <= x < 1 for x in floats)
    uuids = qrng(tmp_path, "uuid", "-n", "3").stdout.split()
    assert len(uuids) == 3 and all(re.fullmatch(rb"[0-9a-f-]{36}", u) for u in uuids)
    assert all(u[14:15] == b"4" for u in uuids)
    out = qrng(tmp_path, "string", "--length", "20", "--alphabet", "hex", "-n", "2")
    assert all(re.fullmatch(rb"[0-9a-f]{20}", s) for s in out.stdout.split())


@pytest.mark.parametrize(
    "args",
    [
        ("bytes", "-1"),
        ("bytes", "ten"),
        ("int", "5", "1"),
        ("int", "1", "x"),
        ("float", "-n", "0"),
        ("string", "--alphabet", ""),
        ("nonsense",),
        ("--source", "dice", "bytes", "1"),
        ("bits", "99999999999999999999999"),
        ("int", "1", "6", "-n", "99999999999999999999"),
        ("string", "--length", "99999999999999999"),
        ("uuid", "-n", "99999999999999999999"),
        ("float", "-n", "100001"),
        ("harvest", "--until", "99999999999999999999"),
        ("bits", "-3"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    out = qrng(tmp_path, *args)
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qrng: error:"), out.stderr
    assert out.stdout == b""


def test_bad_environment_setting_is_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, QRNG_DATA_DIR=str(tmp_path), QRNG_SHOTS="many")
    out = subprocess.run(
        [sys.executable, "-m", "quantumrng", "bytes", "4"], capture_output=True, env=env
    )
    assert out.returncode == 2
    assert out.stderr.decode().count("\n") == 1 and "shots" in out.stderr.decode()


def test_raw_mode_fails_closed_when_pool_is_empty(tmp_path: Path) -> None:
    out = qrng(tmp_path, "bytes", "16", "--mode", "raw")
    assert out.returncode == 1
    assert out.stdout == b""
    assert out.stderr.decode().startswith("qrng: error:")


def test_harvest_then_pool_shows_provenance(tmp_path: Path) -> None:
    out = qrng(tmp_path, "harvest", "--until", "8192", "--quiet")
    assert out.returncode == 0, out.stderr
    assert b"added" in out.stdout
    status = json.loads(qrng(tmp_path, "pool", "--json").stdout)
    assert status["by_source"]["os"] >= 128
    assert status["recent_harvests"][0]["source"] == "os"
    out = qrng(tmp_path, "bytes", "16", "--mode", "raw")
    assert out.returncode == 0 and len(out.stdout.strip()) == 32


def test_status_is_json_without_secrets(tmp_path: Path) -> None:
    out = qrng(tmp_path, "status")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["source"] == "os"
    assert "data" not in json.dumps(status["pool"]).lower().replace("data_dir", "")


def test_selftest_passes(tmp_path: Path) -> None:
    start = time.monotonic()
    out = qrng(tmp_path, "selftest")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(b"PASS") == 4
    assert time.monotonic() - start < 60
