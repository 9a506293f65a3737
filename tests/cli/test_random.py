"""``qrng bytes | bits | int | float | gaussian | uuid | string``, run as a real process."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from tests.cli.support import qrng


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


def test_raw_mode_fails_closed_when_pool_is_empty(tmp_path: Path) -> None:
    out = qrng(tmp_path, "bytes", "16", "--mode", "raw")
    assert out.returncode == 1
    assert out.stdout == b""
    assert out.stderr.decode().startswith("qrng: error:")
