"""``qrng assess`` and ``qrng health``, run as a real process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.cli.support import qrng

FIELDS = {"samples", "bits_per_symbol", "iid", "estimators", "h_original", "h_bitstring"}
NAMES = {
    "most_common_value",
    "collision",
    "markov",
    "compression",
    "t_tuple",
    "lrs",
    "multi_mcw",
    "lag",
    "multi_mmc",
    "lz78y",
}


def one_error_line(out: object) -> str:
    stderr = out.stderr.decode()  # type: ignore[attr-defined]
    assert out.returncode == 2, stderr  # type: ignore[attr-defined]
    assert out.stdout == b""  # type: ignore[attr-defined]
    assert stderr.count("\n") == 1 and stderr.startswith("qrng: error:")
    return stderr


def test_an_empty_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert "empty" in one_error_line(qrng(tmp_path, "assess", str(empty), "-k", "8"))


@pytest.mark.parametrize("k", ["0", "9", "x"])
def test_bits_per_symbol_out_of_range_is_one_line_and_exit_2(tmp_path: Path, k: str) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(100))
    one_error_line(qrng(tmp_path, "assess", str(data), "--bits-per-symbol", k))


def test_fewer_samples_than_the_standard_needs_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(999_999))
    line = one_error_line(qrng(tmp_path, "assess", str(data), "-k", "8"))
    assert "1,000,000" in line and "999,999" in line


def test_a_source_needs_a_million_samples(tmp_path: Path) -> None:
    line = one_error_line(qrng(tmp_path, "assess", "--source", "os", "--samples", "1000"))
    assert "1000000" in line


def test_file_or_source_not_both_nor_neither(tmp_path: Path) -> None:
    one_error_line(qrng(tmp_path, "assess"))
    data = tmp_path / "data.bin"
    data.write_bytes(b"x")
    one_error_line(qrng(tmp_path, "assess", str(data), "-k", "1", "--source", "os"))


@pytest.mark.slow
def test_a_million_biased_bits_give_every_estimator_and_a_credit_below_the_bias(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(11)
    path = tmp_path / "biased.bin"
    (rng.random(1_000_000) < 0.3).astype(np.uint8).tofile(path)
    out = qrng(tmp_path, "assess", str(path), "--bits-per-symbol", "1", "--json", timeout=900)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert FIELDS | {"h_assessed"} <= set(result)
    assert set(result["estimators"]) == NAMES
    assert result["samples"] == 1_000_000 and result["bits_per_symbol"] == 1
    # p(0) = 0.7: -log2(0.7) = 0.515, and the assessment never credits more
    assert 0.45 < result["h_assessed"] <= 0.515
    assert result["h_bitstring"] == result["h_original"]
    table = qrng(tmp_path, "assess", str(path), "-k", "1", timeout=900).stdout.decode()
    assert all(name in table for name in NAMES) and "H_I" in table


def test_health_reset_clears_a_recorded_failure(tmp_path: Path) -> None:
    from quantumrng.accounting import SourceFailure, SourceLedger
    from quantumrng.node import Node
    from tests.conftest import make_settings

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qrng.toml").write_text("require_operator_reset = true\n")
    node = Node(make_settings(tmp_path / "data", source="os"))
    SourceLedger(node.pool, "os").record_failure(SourceFailure("os", "rct", 2, 0.0))
    node.close()
    shown = json.loads(qrng(tmp_path, "health", "show", "--json").stdout)
    assert shown["state"] == "failed" and shown["failure"]["test"] == "rct"
    out = qrng(tmp_path, "bytes", "8")
    assert out.returncode == 1 and b"failed persistently" in out.stderr
    reset = qrng(tmp_path, "health", "reset")
    assert reset.returncode == 0 and b"cleared" in reset.stdout
    assert json.loads(qrng(tmp_path, "health", "show", "--json").stdout)["state"] == "ok"
    assert qrng(tmp_path, "bytes", "8").returncode == 0
