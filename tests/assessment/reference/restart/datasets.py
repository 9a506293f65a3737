"""Deterministic restart matrices for the restart tests' reference runs (SP 800-90B §3.1.4).

Each is 1000 restarts x 1000 samples, built from AES-256-CTR output under
the key ``sha256(b"quantumrng/restart/" + name)`` (zero nonce), written
restart after restart ("row dataset", §3.1.4.1) as NIST's ``ea_restart``
reads it. ``reference.json`` records their SHA-256 next to NIST's figures.

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
from tests.assessment.reference.iid.datasets import aes_stream

Matrix = npt.NDArray[np.uint8]
SHAPE = (1000, 1000)


def _stream(name: str, n: int) -> npt.NDArray[np.uint8]:
    return aes_stream(f"quantumrng/restart/{name}", n)


def _uniform(k: int) -> Callable[[str], Matrix]:
    def make(name: str) -> Matrix:
        return (_stream(name, 1_000_000) & np.uint8((1 << k) - 1)).reshape(SHAPE)

    return make


def _biased_bits(name: str) -> Matrix:
    words = _stream(name, 4_000_000).view("<u4")
    return (words < np.uint32(0.7 * 2**32)).astype(np.uint8).reshape(SHAPE)


def _same_start_bytes(name: str) -> Matrix:
    """Uniform bytes, but every restart begins with 0x5A (a source that restarts in one state)."""
    m = _uniform(8)(name).copy()
    m[:, 0] = 0x5A
    return m


def _identical_rows_bytes(name: str) -> Matrix:
    """The same 1000 uniform bytes after every restart."""
    return np.tile(_stream(name, 1000), (1000, 1))


def _stuck_rows_bytes(name: str) -> Matrix:
    """Uniform bytes; in each restart one value (its own) replaces 5% of the samples."""
    raw = _stream(name, 1_000_000 + 1000 + 4_000_000)
    m = raw[:1_000_000].reshape(SHAPE).copy()
    favourite = raw[1_000_000:1_001_000]
    hit = (raw[1_001_000:].view("<u4") < np.uint32(0.05 * 2**32)).reshape(SHAPE)
    rows = np.nonzero(hit)[0]
    m[hit] = favourite[rows]
    return m


@dataclass(frozen=True)
class RestartSet:
    name: str
    bits_per_symbol: int
    h_initial: float
    make: Callable[[str], Matrix]
    about: str

    def matrix(self) -> Matrix:
        out = self.make(self.name)
        assert out.dtype == np.uint8 and out.shape == SHAPE
        return out


RESTART_SETS: tuple[RestartSet, ...] = (
    RestartSet("good_bytes", 8, 7.8, _uniform(8), "uniform bytes"),
    RestartSet("good_bits", 1, 0.95, _uniform(1), "uniform bits"),
    RestartSet("biased_bits", 1, 0.45, _biased_bits, "IID bits, P(1) = 0.7"),
    RestartSet("same_start_bytes", 8, 7.8, _same_start_bytes, "every restart begins 0x5A"),
    RestartSet("identical_rows_bytes", 8, 7.8, _identical_rows_bytes, "every restart the same"),
    RestartSet("stuck_rows_bytes", 8, 7.8, _stuck_rows_bytes, "each restart favours a value"),
)

BY_NAME = {r.name: r for r in RESTART_SETS}


def sha256(matrix: Matrix) -> str:
    return hashlib.sha256(matrix.tobytes()).hexdigest()


def main(argv: list[str]) -> None:
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for r in RESTART_SETS:
        m = r.matrix()
        (out / f"{r.name}.bin").write_bytes(m.tobytes())
        print(r.name, r.bits_per_symbol, r.h_initial, sha256(m))


if __name__ == "__main__":
    main(sys.argv)
