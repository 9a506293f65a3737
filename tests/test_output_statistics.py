"""A statistical battery on what users receive: the product's SP 800-22 tests plus
byte-level checks.

DRBG output and raw conditioned pool output, each harvested end to end from a
real source, must pass; flawed controls of the same size must fail, which
shows the battery has the power to notice. Each test's false-alarm level is
1e-6 (a test with several p-values: the smallest times their number), so a
correct generator fails a run about once in 10^5.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import special, stats

from quantumrng import battery as sp800_22
from quantumrng.harvester import Harvester
from quantumrng.node import Node
from tests.conftest import make_settings

pytestmark = pytest.mark.slow

ALPHA = 1e-6
SAMPLE_BYTES = 1 << 21  # 2 MiB, 16.8 Mbit per battery


def bonferroni(p_values: tuple[float, ...]) -> float:
    """One p-value for a test with several: the smallest times their number."""
    return min(1.0, min(p_values) * len(p_values))


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


#: The product's SP 800-22 tests that are cheap at this size (tests/test_battery.py covers
#: all fifteen), then checks on whole bytes that SP 800-22 does not make.
BATTERY: dict[str, Callable[[bytes, np.ndarray], float]] = {
    "frequency": lambda data, bits: bonferroni(sp800_22.frequency(bits)),
    "block_frequency": lambda data, bits: bonferroni(sp800_22.block_frequency(bits, 4096)),
    "runs": lambda data, bits: bonferroni(sp800_22.runs(bits)),
    "longest_run": lambda data, bits: bonferroni(sp800_22.longest_run_of_ones(bits)),
    "serial": lambda data, bits: bonferroni(sp800_22.serial(bits, 16)),
    "cumulative_sums": lambda data, bits: bonferroni(sp800_22.cumulative_sums(bits)),
    "byte_chi_square": lambda data, bits: byte_chi_square(data),
    "serial_pairs": lambda data, bits: serial_pairs(data),
    "autocorrelation": lambda data, bits: autocorrelation(bits),
}


def battery(data: bytes) -> dict[str, float]:
    bits = sp800_22.bits_of(data)
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
        ("bias", "frequency"),  # one bit in 64 forced to one
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
