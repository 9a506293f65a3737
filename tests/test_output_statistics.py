"""A small statistical battery (after NIST SP 800-22) on what users receive.

DRBG output and raw conditioned pool output, each harvested end to end from a
real source, must pass; flawed controls of the same size must fail, which
shows the battery has the power to notice. Each test's false-alarm level is
1e-6, so a correct generator fails a run about once in 10^5.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import special, stats

from quantumrng.harvester import Harvester
from quantumrng.node import Node
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

ALPHA = 1e-6
SAMPLE_BYTES = 1 << 21  # 2 MiB, 16.8 Mbit per battery


def monobit(bits: np.ndarray) -> float:
    """SP 800-22 §2.1: the proportion of ones."""
    s = np.sum(2 * bits.astype(np.int64) - 1)
    return float(special.erfc(abs(s) / np.sqrt(2 * bits.size)))


def block_frequency(bits: np.ndarray, m: int = 4096) -> float:
    """SP 800-22 §2.2: the proportion of ones in blocks of m bits."""
    blocks = bits[: bits.size // m * m].reshape(-1, m)
    pi = blocks.mean(axis=1)
    chi2 = 4 * m * np.sum((pi - 0.5) ** 2)
    return float(special.gammaincc(blocks.shape[0] / 2, chi2 / 2))


def runs(bits: np.ndarray) -> float:
    """SP 800-22 §2.3: the number of runs of identical bits."""
    n = bits.size
    pi = bits.mean()
    v = 1 + np.count_nonzero(bits[1:] != bits[:-1])
    num = abs(v - 2 * n * pi * (1 - pi))
    return float(special.erfc(num / (2 * np.sqrt(2 * n) * pi * (1 - pi))))


def byte_chi_square(data: bytes) -> float:
    """Uniformity of the 256 byte values."""
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    return float(stats.chisquare(counts).pvalue)


def serial_pairs(data: bytes) -> float:
    """Uniformity of consecutive byte pairs (65,536 cells)."""
    arr = np.frombuffer(data, dtype=np.uint8).astype(np.uint32)
    pairs = arr[0::2][: arr.size // 2] * 256 + arr[1::2][: arr.size // 2]
    return float(stats.chisquare(np.bincount(pairs, minlength=65536)).pvalue)


def autocorrelation(bits: np.ndarray, lags: tuple[int, ...] = (1, 2, 7, 8, 9, 64)) -> float:
    """SP 800-22-style autocorrelation: the smallest p-value over several lags."""
    ps = []
    for d in lags:
        a = np.count_nonzero(bits[:-d] != bits[d:])
        n = bits.size - d
        ps.append(float(special.erfc(abs(2 * a - n) / np.sqrt(2 * n))))
    return min(ps) * len(ps)  # Bonferroni


BATTERY: dict[str, Callable[[bytes, np.ndarray], float]] = {
    "monobit": lambda data, bits: monobit(bits),
    "block_frequency": lambda data, bits: block_frequency(bits),
    "runs": lambda data, bits: runs(bits),
    "byte_chi_square": lambda data, bits: byte_chi_square(data),
    "serial_pairs": lambda data, bits: serial_pairs(data),
    "autocorrelation": lambda data, bits: autocorrelation(bits),
}


def battery(data: bytes) -> dict[str, float]:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    return {name: test(data, bits) for name, test in BATTERY.items()}


def failures(data: bytes) -> list[str]:
    return [name for name, p in battery(data).items() if p < ALPHA]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    settings = make_settings(tmp_path_factory.mktemp("stats"), source="simulator")
    node = Node(settings)
    Harvester(node.source, node.pool).fill(SAMPLE_BYTES // 64 + 64)
    return node


def test_drbg_output_passes_the_battery(node: Node) -> None:
    assert failures(node.engine.random_bytes(SAMPLE_BYTES)) == []


def test_small_reads_concatenated_pass_the_battery(node: Node) -> None:
    data = b"".join(node.engine.random_bytes(48) for _ in range(SAMPLE_BYTES // 48))
    assert failures(data) == []


def test_raw_conditioned_simulator_output_passes_the_battery(node: Node) -> None:
    data, provenance, credited = node.engine.raw_bytes(SAMPLE_BYTES)
    assert {p.source for p in provenance} == {"simulator"} and credited == 0
    assert failures(data) == []


def test_raw_os_output_passes_the_battery(tmp_path: Path) -> None:
    node = Node(make_settings(tmp_path, source="os", pool="memory"))
    Harvester(node.source, node.pool).fill(SAMPLE_BYTES // 64)
    data, _, credited = node.engine.raw_bytes(SAMPLE_BYTES)
    assert credited == 0  # the kernel's generator earns no credit
    assert failures(data) == []


@pytest.mark.parametrize(
    ("flaw", "expected"),
    [
        ("bias", "monobit"),  # one bit in 64 forced to one
        ("sticky", "runs"),  # a bit repeats its predecessor 2% more often
        ("low_byte_values", "byte_chi_square"),  # byte 0 replaced by 1 now and then
        ("pair_structure", "serial_pairs"),  # second byte of a pair sometimes equals the first
    ],
)
def test_battery_catches_flawed_generators(flaw: str, expected: str) -> None:
    rng = np.random.default_rng(20261125)
    data = bytearray(rng.bytes(SAMPLE_BYTES))
    arr = np.frombuffer(data, dtype=np.uint8)
    if flaw == "bias":
        arr[::8] |= 1
    elif flaw == "sticky":
        bits = np.unpackbits(arr)
        copy = rng.random(bits.size) < 0.02
        bits[1:][copy[1:]] = bits[:-1][copy[1:]]
        arr[:] = np.packbits(bits)
    elif flaw == "low_byte_values":
        zeros = (arr == 0) & (rng.random(arr.size) < 0.1)
        arr[zeros] = 1
    elif flaw == "pair_structure":
        same = rng.random(arr.size // 2) < 0.002
        arr[1::2][same] = arr[0::2][same]
    assert expected in failures(bytes(data))


def test_unflawed_control_passes() -> None:
    rng = np.random.default_rng(20261125)
    assert failures(rng.bytes(SAMPLE_BYTES)) == []
