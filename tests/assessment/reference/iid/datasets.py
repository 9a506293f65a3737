"""Deterministic data sets for the IID tests' reference runs (SP 800-90B §5).

Every set is built from AES-256-CTR output under a key derived from its name
(``sha256(b"quantumrng/iid/" + name)``, zero nonce), so anyone can rebuild the
exact bytes that NIST's ``ea_iid`` was run on; ``reference.json`` records
their SHA-256 next to NIST's figures. One sample per byte, its low ``k`` bits,
as ``ea_iid`` reads a file.

Run as a script to write the files: ``python datasets.py OUTDIR``.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

Bytes = npt.NDArray[np.uint8]


def aes_stream(label: str, n: int) -> Bytes:
    """``n`` bytes of AES-256-CTR keystream under the key sha256(label), zero nonce."""
    key = hashlib.sha256(label.encode()).digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return np.frombuffer(encryptor.update(bytes(n)) + encryptor.finalize(), dtype=np.uint8)


class Stream:
    """Uniform draws for one data set, read in order from its own keystream."""

    def __init__(self, name: str, n: int) -> None:
        self._bytes = aes_stream(f"quantumrng/iid/{name}", 16 * n + 4096)
        self._at = 0

    def bytes(self, n: int) -> Bytes:
        out = self._bytes[self._at : self._at + n]
        if out.size != n:
            raise RuntimeError("keystream exhausted")
        self._at += n
        return out

    def unit(self, n: int) -> npt.NDArray[np.float64]:
        """``n`` uniform floats in [0, 1), 32 bits each."""
        words = self.bytes(4 * n).view("<u4").astype(np.float64)
        return words / 2.0**32


def _uniform(k: int) -> Callable[[Stream, int], Bytes]:
    def make(s: Stream, n: int) -> Bytes:
        return s.bytes(n) & np.uint8((1 << k) - 1)

    return make


def _biased_bits(s: Stream, n: int) -> Bytes:
    return (s.unit(n) < 0.7).astype(np.uint8)


def _triangular_bytes(s: Stream, n: int) -> Bytes:
    a = s.bytes(n).astype(np.uint16)
    b = s.bytes(n).astype(np.uint16)
    return ((a + b) // 2).astype(np.uint8)


def _sparse_nibbles(s: Stream, n: int) -> Bytes:
    values = np.array([1, 4, 6, 9, 14], dtype=np.uint8)
    edges = np.cumsum([0.35, 0.25, 0.2, 0.15])
    return values[np.searchsorted(edges, s.unit(n), side="right")]


def _two_valued_bytes(s: Stream, n: int) -> Bytes:
    return np.where(s.bytes(n) & 1, np.uint8(0xC7), np.uint8(0x21)).astype(np.uint8)


def _markov_bits(s: Stream, n: int) -> Bytes:
    flips = (s.unit(n) >= 0.6).astype(np.uint8)  # repeat the previous bit with p = 0.6
    return np.bitwise_xor.accumulate(flips)


def _sticky_median_bytes(s: Stream, n: int) -> Bytes:
    high = _markov_bits(s, n) << np.uint8(7)
    return (high | (s.bytes(n) & np.uint8(0x7F))).astype(np.uint8)


def _lagged_bytes(s: Stream, n: int) -> Bytes:
    """Uniform bytes; each copies the one 1, 2, 8, 16 or 32 back with p = 0.01 per lag."""
    x = s.bytes(n).copy()
    lags = np.array([1, 2, 8, 16, 32])
    choice = np.searchsorted(np.arange(1, 6) * 0.01, s.unit(n), side="right")
    for i in np.flatnonzero(choice < lags.size):
        lag = int(lags[choice[i]])
        if i >= lag:
            x[i] = x[i - lag]
    return x


def _drift_bytes(s: Stream, n: int) -> Bytes:
    """Uniform bytes, one in ten replaced by 255 in the first half and by 0 in the second."""
    x = s.bytes(n).copy()
    hit = s.unit(n) < 0.1
    half = np.arange(n) < n // 2
    x[hit & half] = 255
    x[hit & ~half] = 0
    return x


def _sorted_triples_bytes(s: Stream, n: int) -> Bytes:
    x = s.bytes(n).copy()
    whole = n - n % 3
    x[:whole] = np.sort(x[:whole].reshape(-1, 3), axis=1).ravel()
    return x


def _shuffled_decks_bytes(s: Stream, n: int) -> Bytes:
    """Consecutive random permutations of 0..255: no value repeats within a deck."""
    decks = -(-n // 256)
    keys = s.unit(decks * 256).reshape(decks, 256)
    return np.argsort(keys, axis=1, kind="stable").astype(np.uint8).ravel()[:n]


def _random_walk_nibbles(s: Stream, n: int) -> Bytes:
    steps = s.bytes(n).astype(np.int64) % 3 - 1
    return (np.cumsum(steps) % 16).astype(np.uint8)


def _repeated_stretch_bytes(s: Stream, n: int) -> Bytes:
    """Uniform bytes in which the 100 bytes from n/10 occur again at 6n/10."""
    x = s.bytes(n).copy()
    x[6 * n // 10 : 6 * n // 10 + 100] = x[n // 10 : n // 10 + 100]
    return x


@dataclass(frozen=True)
class DataSet:
    name: str
    bits_per_symbol: int
    samples: int
    make: Callable[[Stream, int], Bytes]
    iid: bool  # what the data is by construction
    about: str

    def data(self) -> Bytes:
        out = self.make(Stream(self.name, self.samples), self.samples)
        assert out.dtype == np.uint8 and out.size == self.samples
        return out


DATASETS: tuple[DataSet, ...] = (
    DataSet("uniform_bits", 1, 200_000, _uniform(1), True, "uniform bits"),
    DataSet("uniform_nibbles", 4, 200_000, _uniform(4), True, "uniform 4-bit samples"),
    DataSet("uniform_bytes", 8, 200_000, _uniform(8), True, "uniform bytes"),
    DataSet("biased_bits", 1, 200_000, _biased_bits, True, "IID bits, P(1) = 0.7"),
    DataSet("triangular_bytes", 8, 200_000, _triangular_bytes, True, "IID bytes (a + b) // 2"),
    DataSet(
        "sparse_nibbles",
        4,
        200_000,
        _sparse_nibbles,
        True,
        "IID 4-bit samples over {1, 4, 6, 9, 14}, skewed (NIST translates them)",
    ),
    DataSet(
        "two_valued_bytes",
        8,
        200_000,
        _two_valued_bytes,
        True,
        "IID 8-bit samples taking 0x21 or 0xC7 (NIST's binary path)",
    ),
    DataSet("markov_bits", 1, 100_000, _markov_bits, False, "bits repeating the last with p 0.6"),
    DataSet(
        "sticky_median_bytes",
        8,
        100_000,
        _sticky_median_bytes,
        False,
        "bytes whose high bit repeats with p 0.6",
    ),
    DataSet(
        "lagged_bytes",
        8,
        100_000,
        _lagged_bytes,
        False,
        "bytes copying the one 1, 2, 8, 16 or 32 back, p 0.01 each",
    ),
    DataSet(
        "drift_bytes", 8, 100_000, _drift_bytes, False, "bytes whose mean drifts (non-stationary)"
    ),
    DataSet(
        "sorted_triples_bytes",
        8,
        100_000,
        _sorted_triples_bytes,
        False,
        "bytes sorted in groups of three",
    ),
    DataSet(
        "shuffled_decks_bytes",
        8,
        100_000,
        _shuffled_decks_bytes,
        False,
        "bytes dealt as shuffled decks of 0..255",
    ),
    DataSet(
        "random_walk_nibbles",
        4,
        100_000,
        _random_walk_nibbles,
        False,
        "4-bit random walk with steps -1, 0, +1",
    ),
    DataSet(
        "repeated_stretch_bytes",
        8,
        100_000,
        _repeated_stretch_bytes,
        False,
        "uniform bytes in which one stretch of 100 bytes occurs twice",
    ),
)

#: The 1,000,000-sample cases (slow tests).
LARGE: tuple[DataSet, ...] = (
    DataSet("uniform_bits_1m", 1, 1_000_000, _uniform(1), True, "uniform bits"),
    DataSet("uniform_bytes_1m", 8, 1_000_000, _uniform(8), True, "uniform bytes"),
)

BY_NAME = {d.name: d for d in DATASETS + LARGE}


def sha256(data: Bytes) -> str:
    return hashlib.sha256(data.tobytes()).hexdigest()


def main(argv: list[str]) -> None:
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for d in DATASETS + LARGE:
        data = d.data()
        (out / f"{d.name}.bin").write_bytes(data.tobytes())
        print(d.name, d.bits_per_symbol, d.samples, sha256(data))


if __name__ == "__main__":
    main(sys.argv)
