"""SHA-512 conditioning (SP 800-90B §3.1.5.1.1, vetted conditioning component).

Raw bits that passed the health tests are cut into equal chunks of whole
bytes and each chunk is hashed to one 64-byte block. A block is credited
with full entropy (512 bits) only when its chunk carries at least
512 + 64 bits of credited min-entropy (SP 800-90B §3.1.5.1.2); chunks of
uncredited input (the simulator) are 128 bytes and credit nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

from quantumrng.block import BLOCK_BYTES, Block

if TYPE_CHECKING:
    from quantumrng.sources.base import Harvest

__all__ = [
    "FULL_ENTROPY_INPUT_BITS",
    "ZERO_CREDIT_INPUT_BYTES",
    "condition",
    "input_bytes_per_block",
]

FULL_ENTROPY_INPUT_BITS = 512 + 64  # SP 800-90B §3.1.5.1.2: n_out + 64 bits
ZERO_CREDIT_INPUT_BYTES = 128  # input per block when nothing is credited, bytes


def _chunk_bytes(nbits: int, total_credit: Fraction, target_bits: Fraction) -> int:
    if total_credit <= 0:
        return ZERO_CREDIT_INPUT_BYTES
    bits = math.ceil(target_bits * nbits / total_credit)
    return -(-bits // 8)


def input_bytes_per_block(nbits: int, total_credit: float) -> int:
    """Return the whole bytes of input per block: ceil(576 * nbits / total_credit) bits.

    Each such chunk carries on average at least 576 bits of credited
    min-entropy (SP 800-90B §3.1.5.1.2); with no credit, 128 bytes.
    """
    if nbits < 0 or not 0 <= total_credit <= nbits:
        raise ValueError("need 0 <= total_credit <= nbits")
    return _chunk_bytes(nbits, Fraction(total_credit), Fraction(FULL_ENTROPY_INPUT_BITS))


def condition(harvest: Harvest, credit_per_stream: Sequence[float]) -> list[Block]:
    """Hash a harvest into SHA-512 blocks (SP 800-90B §3.1.5.1.1).

    ``credit_per_stream`` is the credited min-entropy per bit of each
    column (the health report's ``credit_per_stream``); a harvest that is
    not creditable earns none whatever is passed. The chunk size follows
    :func:`input_bytes_per_block`, enlarged when columns differ in credit
    so that every chunk, wherever its edges cut the rows, holds 576
    credited bits, not only the average chunk: a chunk's bits outside whole
    rows number at most 2 (width - 1), each worth at least the smallest
    credit. A trailing partial chunk and the padding bits are dropped.
    """
    if len(credit_per_stream) != harvest.width:
        raise ValueError("need one credit per stream")
    if not all(math.isfinite(c) and 0 <= c <= 1 for c in credit_per_stream):
        raise ValueError("credit per stream must be in [0, 1] bits per bit")
    credits = [Fraction(c) for c in credit_per_stream]
    if not harvest.creditable:
        credits = [Fraction(0)] * harvest.width
    total = harvest.samples * sum(credits, Fraction(0))
    mean = sum(credits, Fraction(0)) / harvest.width
    slack = 2 * (harvest.width - 1) * (mean - min(credits))
    size = _chunk_bytes(harvest.nbits, total, FULL_ENTROPY_INPUT_BITS + slack)
    credited_bits = BLOCK_BYTES * 8 if total > 0 else 0
    data = memoryview(harvest.data)
    return [
        Block(hashlib.sha512(data[i : i + size]).digest(), credited_bits, harvest.provenance)
        for i in range(0, (harvest.nbits // 8) - size + 1, size)
    ]
