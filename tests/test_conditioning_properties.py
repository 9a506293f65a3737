"""Property tests: conditioning never over-credits and never reads past the harvest."""

from __future__ import annotations

import hashlib
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.conditioning import (
    FULL_ENTROPY_INPUT_BITS,
    ZERO_CREDIT_INPUT_BYTES,
    condition,
    input_bytes_per_block,
)
from quantumrng.provenance import Provenance
from quantumrng.sources.base import Harvest

PROVENANCE = Provenance(source="os", harvest_id="t", harvested_at=0.0)
credit = st.floats(min_value=0.0, max_value=1.0)


@given(st.integers(1, 10**7), st.data())
def test_chunk_carries_576_credited_bits_on_average(nbits: int, data: st.DataObject) -> None:
    total = data.draw(st.floats(min_value=0.0, max_value=float(nbits)))
    size = input_bytes_per_block(nbits, total)
    if total == 0:
        assert size == ZERO_CREDIT_INPUT_BYTES
    else:
        assert Fraction(total) / nbits * size * 8 >= FULL_ENTROPY_INPUT_BITS
        assert Fraction(total) / nbits * (size - 1) * 8 < FULL_ENTROPY_INPUT_BITS


@settings(deadline=None)
@given(st.integers(1, 70), st.integers(0, 400), st.booleans(), st.data())
def test_every_credited_block_has_576_credited_input_bits(
    width: int, samples: int, creditable: bool, data: st.DataObject
) -> None:
    credits = data.draw(st.lists(credit, min_size=width, max_size=width))
    raw = np.random.default_rng(samples).integers(0, 256, (width * samples + 7) // 8, np.uint8)
    harvest = Harvest(raw.tobytes(), width, samples, PROVENANCE, 1.0, creditable)
    blocks = condition(harvest, credits)
    whole_bytes = harvest.nbits // 8

    total = samples * sum(map(Fraction, credits), Fraction(0))
    if not creditable or total == 0:
        assert all(b.credited_bits == 0 for b in blocks)
        assert len(blocks) == whole_bytes // ZERO_CREDIT_INPUT_BYTES
        return
    assert all(b.credited_bits == 512 for b in blocks)
    if not blocks:
        return
    # the chunk size is the k with SHA-512(first k bytes) == first block
    size = next(
        k
        for k in range(1, whole_bytes + 1)
        if hashlib.sha512(harvest.data[:k]).digest() == blocks[0].data
    )
    assert size >= input_bytes_per_block(harvest.nbits, float(total))
    assert len(blocks) == whole_bytes // size
    assert len(blocks) * size * 8 <= harvest.nbits
    for i, block in enumerate(blocks):
        assert block.data == hashlib.sha512(harvest.data[i * size : (i + 1) * size]).digest()

    chunk_bits = size * 8
    columns = np.arange(len(blocks) * chunk_bits) % width
    per_bit = np.array([float(c) for c in credits])[columns]
    per_chunk = per_bit.reshape(len(blocks), chunk_bits).sum(axis=1)
    assert per_chunk.min() >= FULL_ENTROPY_INPUT_BITS - 1e-6
