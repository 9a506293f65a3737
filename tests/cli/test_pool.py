"""``qrng harvest | pool | status | selftest``, run as a real process."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.cli.support import qrng


def test_harvest_then_pool_shows_provenance(tmp_path: Path) -> None:
    out = qrng(tmp_path, "harvest", "--until", "8192", "--quiet")
    assert out.returncode == 0, out.stderr
    assert b"added" in out.stdout
    status = json.loads(qrng(tmp_path, "pool", "--json").stdout)
    assert status["by_source"]["os"] >= 128
    assert status["recent_harvests"][0]["source"] == "os"
    out = qrng(tmp_path, "bytes", "16", "--mode", "raw")
    assert out.returncode == 1 and out.stdout == b""
    assert out.stderr.count(b"\n") == 1 and b"os source earns no credit" in out.stderr
    out = qrng(tmp_path, "--allow-uncredited-raw", "bytes", "16", "--mode", "raw")
    assert out.returncode == 0 and len(out.stdout.strip()) == 32


def test_status_is_json_without_secrets(tmp_path: Path) -> None:
    out = qrng(tmp_path, "status")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["source"] == "os"
    pool = {k: v for k, v in status["pool"].items() if k != "store"}  # a path may say "data"
    assert status["pool"]["store"].endswith("pool.sqlite3")
    assert "data" not in json.dumps(pool).lower()


def test_selftest_passes(tmp_path: Path) -> None:
    start = time.monotonic()
    out = qrng(tmp_path, "selftest")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(b"PASS") == 4
    assert time.monotonic() - start < 60
