"""The input checks every assessment shares: bits per sample, and samples that fit them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["check_bits_per_symbol", "check_sample_values", "check_samples"]


def check_bits_per_symbol(bits_per_symbol: object) -> int:
    """Return ``bits_per_symbol`` as an int from 1 to 8, or raise ValueError."""
    if isinstance(bits_per_symbol, bool) or not isinstance(bits_per_symbol, int | np.integer):
        raise ValueError("bits per symbol must be an integer from 1 to 8")
    k = int(bits_per_symbol)
    if not 1 <= k <= 8:
        raise ValueError(f"bits per symbol must be 1 to 8, not {k}")
    return k


def check_sample_values(array: npt.NDArray[np.generic], k: int) -> npt.NDArray[np.uint8]:
    """Return the samples as contiguous uint8, or raise ValueError unless every one is an
    integer in [0, 2**k)."""
    if array.dtype.kind not in "iub":
        raise ValueError(f"samples must be integers, not {array.dtype}")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= 1 << k:
        bad = low if low < 0 else high
        raise ValueError(f"sample value {bad} does not fit in {k} bits per symbol")
    return np.ascontiguousarray(array, dtype=np.uint8)


def check_samples(
    symbols: npt.ArrayLike, bits_per_symbol: object, *, minimum: int, use: str, need: str
) -> tuple[npt.NDArray[np.uint8], int]:
    """Return (samples as uint8, k) for a 1-D sequence of at least ``minimum`` k-bit
    samples, or raise ValueError: "there are no samples to {use}", "{need} at least ..."."""
    k = check_bits_per_symbol(bits_per_symbol)
    array = np.asarray(symbols)
    if array.ndim != 1:
        raise ValueError("samples must be a one-dimensional sequence")
    if array.size == 0:
        raise ValueError(f"there are no samples to {use}")
    if array.size < minimum:
        raise ValueError(f"{need} at least {minimum:,} samples; got {array.size:,}")
    return check_sample_values(array, k), k
