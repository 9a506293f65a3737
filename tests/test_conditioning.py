"""Behaviour of SHA-512 conditioning: chunk sizes, credit rules, known answers."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import numpy.typing as npt
import pytest

from quantumrng.block import BLOCK_BYTES, Block
from quantumrng.conditioning import (
    ZERO_CREDIT_INPUT_BYTES,
    condition,
    input_bytes_per_block,
)
from quantumrng.provenance import Provenance
from quantumrng.sources.base import Harvest

PROVENANCE = Provenance(source="os", harvest_id="t", harvested_at=0.0)


def make_harvest(bits: npt.ArrayLike, h: float = 1.0, creditable: bool = True) -> Harvest:
    """Pack a (samples, width) matrix of 0/1 into a harvest."""
    matrix = np.asarray(bits, dtype=np.uint8)
    return Harvest(
        data=np.packbits(matrix).tobytes(),
        width=matrix.shape[1],
        samples=matrix.shape[0],
        provenance=PROVENANCE,
        assessed_entropy=h,
        creditable=creditable,
    )


def bytes_harvest(data: bytes, creditable: bool = True) -> Harvest:
    """A byte-device style harvest: one sample per byte, 8 streams."""
    return Harvest(data, 8, len(data), PROVENANCE, 1.0, creditable)


@pytest.mark.parametrize(
    ("nbits", "total", "expected"),
    [
        (65536, 32768.0, 144),  # 0.5 bit/bit: 1152 input bits
        (65536, 65536.0, 72),  # full entropy: 576 bits
        (1000, 333.0, 217),  # ceil(576000 / 333) = 1730 bits -> 216.25 -> 217 bytes
        (8, 0.0, ZERO_CREDIT_INPUT_BYTES),
        (0, 0.0, ZERO_CREDIT_INPUT_BYTES),
    ],
)
def test_input_bytes_per_block(nbits: int, total: float, expected: int) -> None:
    assert input_bytes_per_block(nbits, total) == expected


def test_input_bytes_per_block_is_exact_at_the_boundary() -> None:
    # 576 * 3 / 1.5 = 1152 bits exactly: not one byte more
    assert input_bytes_per_block(3, 1.5) == 144
    assert input_bytes_per_block(3, math.nextafter(1.5, 0.0)) == 145


@pytest.mark.parametrize(("nbits", "total"), [(10, 11.0), (-1, 0.0), (10, -1.0)])
def test_input_bytes_per_block_rejects_impossible_credit(nbits: int, total: float) -> None:
    with pytest.raises(ValueError):
        input_bytes_per_block(nbits, total)


def test_sha512_known_answer_on_fixed_input() -> None:
    data = bytes(range(256)) * 2  # 512 bytes, 4096 bits
    blocks = condition(bytes_harvest(data), [1.0] * 8)
    # 576 credited bits at 1 bit/bit: 72-byte chunks, 512 // 72 = 7 blocks
    assert len(blocks) == 7
    expected = [hashlib.sha512(data[i * 72 : (i + 1) * 72]).digest() for i in range(7)]
    assert [b.data for b in blocks] == expected
    assert blocks[0].data == hashlib.sha512(bytes(range(72))).digest()
    assert all(len(b.data) == BLOCK_BYTES and b.credited_bits == 512 for b in blocks)


def test_block_count_and_credit_for_half_entropy_qubits() -> None:
    bits = np.random.default_rng(1).integers(0, 2, (4096, 16), dtype=np.uint8)
    blocks = condition(make_harvest(bits), [0.5] * 16)
    assert len(blocks) == 8192 // 144
    assert {b.credited_bits for b in blocks} == {512}
    assert all(b.provenance == PROVENANCE for b in blocks)


def test_zero_credit_gives_uncredited_128_byte_chunks() -> None:
    data = bytes(range(256)) * 4
    blocks = condition(bytes_harvest(data), [0.0] * 8)
    assert len(blocks) == 1024 // ZERO_CREDIT_INPUT_BYTES
    assert {b.credited_bits for b in blocks} == {0}
    assert blocks[1].data == hashlib.sha512(data[128:256]).digest()


def test_uncreditable_harvest_earns_nothing_whatever_is_passed() -> None:
    blocks = condition(bytes_harvest(bytes(1024), creditable=False), [1.0] * 8)
    assert len(blocks) == 8
    assert all(b.credited_bits == 0 for b in blocks)


def test_trailing_chunk_and_padding_bits_are_dropped() -> None:
    # 5 streams x 115 samples = 575 bits: 72 bytes, but only 71 whole ones
    short = make_harvest(np.ones((115, 5), dtype=np.uint8))
    assert len(short.data) == 72
    assert condition(short, [1.0] * 5) == []
    exact = make_harvest(np.ones((192, 3), dtype=np.uint8))  # 576 bits
    assert len(condition(exact, [1.0] * 3)) == 1
    longer = make_harvest(np.ones((383, 3), dtype=np.uint8))  # 1149 bits: one block + rest
    assert len(condition(longer, [1.0] * 3)) == 1


def test_too_little_credit_gives_no_blocks() -> None:
    assert condition(bytes_harvest(bytes(100)), [0.01] * 8) == []


def test_unequal_credits_enlarge_the_chunk() -> None:
    """Mean 0.5, min 0.25 over 8 streams: 576 + 2 * 7 * 0.25 = 579.5 bits of
    credit needed, so ceil(579.5 / 0.5) = 1159 bits, 145 bytes, not 144."""
    data = np.random.default_rng(5).integers(0, 256, 4320, dtype=np.uint8).tobytes()
    equal = condition(bytes_harvest(data), [0.5] * 8)
    unequal = condition(bytes_harvest(data), [0.25, 0.75] * 4)
    assert len(equal) == 30 and equal[0].data == hashlib.sha512(data[:144]).digest()
    assert len(unequal) == 29 and unequal[0].data == hashlib.sha512(data[:145]).digest()


@pytest.mark.parametrize(
    "credits", [[1.0] * 7, [1.0] * 9, [1.5] + [1.0] * 7, [-0.1] + [1.0] * 7, [math.nan] * 8]
)
def test_condition_rejects_bad_credits(credits: list[float]) -> None:
    with pytest.raises(ValueError):
        condition(bytes_harvest(bytes(64)), credits)


def test_block_repr_hides_data() -> None:
    block = Block(b"\xab" * 64, 512, PROVENANCE)
    assert "ab" not in repr(block).replace("harvest_id", "")
    assert "credited_bits=512" in repr(block)
