"""The ``qrng`` group and ``main``: help, lazy imports, one error line and exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.support import qrng


def test_help_does_not_import_qiskit() -> None:
    code = (
        "import sys\n"
        "from quantumrng.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert not any(m.startswith('qiskit') for m in sys.modules), 'qiskit imported'\n"
        "assert not any(m.startswith(('starlette', 'uvicorn')) for m in sys.modules), 'web'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert b"serve" in result.stdout and b"harvest" in result.stdout


def test_no_arguments_prints_help_and_exits_2(tmp_path: Path) -> None:
    out = qrng(tmp_path)
    assert out.returncode == 2
    assert b"Usage:" in out.stderr and b"\n" in out.stderr.strip()


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
