"""Deterministic data sets for the SP 800-90B estimator tests, one sample per byte.

Every set is drawn from numpy's PCG64 ``random_raw`` under a fixed seed: that
bit stream is stable across numpy versions, and every sample below is made
from it with integer arithmetic only, so each set is the same bytes
everywhere. ``tests/assessment/reference/non_iid/<name>.json`` records the
sha256 of those bytes beside NIST's figures for them, so a test notices if a
generator ever changes.

Run ``python tests/assessment/datasets.py DIR`` to write every set to
``DIR/<name>.bin`` (the form NIST's ``ea_non_iid`` reads).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]


def _words(seed: int, count: int) -> npt.NDArray[np.uint64]:
    """``count`` raw 64-bit outputs of PCG64 seeded with ``seed``."""
    return np.asarray(np.random.PCG64(seed).random_raw(count), dtype=np.uint64)


def _u32(seed: int, count: int) -> npt.NDArray[np.uint64]:
    """``count`` 32-bit values: each raw word split into its low and high halves."""
    words = _words(seed, (count + 1) // 2)
    halves = np.empty(2 * words.size, dtype=np.uint64)
    halves[0::2] = words & np.uint64(0xFFFFFFFF)
    halves[1::2] = words >> np.uint64(32)
    return halves[:count]


def _bytes(seed: int, count: int) -> U8:
    """``count`` bytes of the raw stream, little-endian within each word."""
    return _words(seed, (count + 7) // 8).view(np.uint8)[:count].copy()


def _threshold(p: float) -> np.uint64:
    """The integer t with P[u32 < t] = t / 2^32, the nearest to ``p``."""
    return np.uint64(round(p * 2**32))


def binary_uniform(n: int, seed: int = 1) -> U8:
    """Unbiased independent bits (the raw stream, least significant bit first)."""
    return np.unpackbits(_bytes(seed, (n + 7) // 8), bitorder="little")[:n]


def binary_biased(n: int, seed: int = 2, p_one: float = 0.3) -> U8:
    """Independent bits with P[1] = ``p_one``."""
    return (_u32(seed, n) < _threshold(p_one)).astype(np.uint8)


def binary_markov(n: int, seed: int = 3, stay: float = 0.7) -> U8:
    """A two-state Markov chain: each bit repeats the one before with probability ``stay``."""
    flips = (_u32(seed, n) >= _threshold(stay)).astype(np.uint8)
    flips[0] = 0
    return (np.cumsum(flips, dtype=np.int64) & 1).astype(np.uint8)


def byte_uniform(n: int, seed: int = 4) -> U8:
    """Independent uniform 8-bit samples."""
    return _bytes(seed, n)


def byte_biased(n: int, seed: int = 5) -> U8:
    """Independent 8-bit samples, ``u * u >> 24`` for a uniform 16-bit u: P[0] = 1/16."""
    u = _u32(seed, n) & np.uint64(0xFFFF)
    return ((u * u) >> np.uint64(24)).astype(np.uint8)


def byte_sticky(n: int, seed: int = 6) -> U8:
    """Correlated 8-bit samples: the previous one again with probability 1/2, else a fresh one."""
    u = _u32(seed, n)
    fresh = (u & np.uint64(0xFF)).astype(np.uint8)
    keep = ((u >> np.uint64(8)) & np.uint64(1)).astype(bool)
    keep[0] = False
    index = np.where(keep, 0, np.arange(n))
    np.maximum.accumulate(index, out=index)
    return fresh[index]


#: 16 entries onto 12 values: 4, 8, 13 and 15 never occur (the alphabet is
#: translated), and 0, 5, 9 and 14 are twice as likely as the others.
NIBBLE_TABLE = np.array([0, 1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 14, 0, 5, 9, 14], dtype=np.uint8)


def nibble_sparse(n: int, seed: int = 7) -> U8:
    """4-bit samples on 12 of the 16 values, non-uniform, repeating the last one 1/4 of the time."""
    u = _u32(seed, n)
    fresh = NIBBLE_TABLE[(u & np.uint64(0xF)).astype(np.intp)]
    keep = ((u >> np.uint64(4)) & np.uint64(3)) == 0
    keep[0] = False
    index = np.where(keep, 0, np.arange(n))
    np.maximum.accumulate(index, out=index)
    return fresh[index]


def byte_two_valued(n: int, seed: int = 8) -> U8:
    """8-bit samples that only take 0x3C (P = 0.6) and 0xA5: NIST assesses them as binary."""
    return np.where(_u32(seed, n) < _threshold(0.6), 0x3C, 0xA5).astype(np.uint8)


@dataclass(frozen=True)
class DataSet:
    """A named set: its generator, sample count and bits per sample."""

    name: str
    make: Callable[[int], U8]
    samples: int
    bits_per_symbol: int
    slow: bool = False

    def symbols(self) -> U8:
        return self.make(self.samples)


DATASETS = (
    DataSet("binary_uniform", binary_uniform, 200_000, 1),
    DataSet("binary_biased", binary_biased, 200_000, 1),
    DataSet("binary_markov", binary_markov, 200_000, 1),
    DataSet("byte_uniform", byte_uniform, 100_000, 8),
    DataSet("byte_biased", byte_biased, 100_000, 8),
    DataSet("byte_sticky", byte_sticky, 100_000, 8),
    DataSet("nibble_sparse", nibble_sparse, 150_000, 4),
    DataSet("byte_two_valued", byte_two_valued, 100_000, 8),
    DataSet("binary_uniform_1m", binary_uniform, 1_000_000, 1, slow=True),
    DataSet("byte_uniform_1m", byte_uniform, 1_000_000, 8, slow=True),
)

BY_NAME = {d.name: d for d in DATASETS}


def sha256(symbols: U8) -> str:
    """The sha256 of the samples as NIST's tool reads them: one byte per sample."""
    return hashlib.sha256(np.ascontiguousarray(symbols, dtype=np.uint8).tobytes()).hexdigest()


def main(argv: list[str]) -> None:
    out = Path(argv[1] if len(argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for data in DATASETS:
        symbols = data.symbols()
        (out / f"{data.name}.bin").write_bytes(symbols.tobytes())
        print(data.name, data.bits_per_symbol, symbols.size, sha256(symbols))


if __name__ == "__main__":
    main(sys.argv)
