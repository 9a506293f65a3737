"""The pool's unit of data: one conditioned 64-byte block and where its input came from.

Conditioning makes blocks, the pool stores and hands them out once, the
engine seeds from them and raw mode serves them (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from quantumrng.provenance import Provenance

__all__ = ["BLOCK_BYTES", "Block"]

BLOCK_BYTES = 64  # SHA-512 output, bytes


@dataclass(frozen=True, slots=True)
class Block:
    """One conditioned 64-byte block with the provenance of its input.

    ``credited_bits`` is 512 when the input carried at least 576 bits of
    credited min-entropy, else 0 (e.g. simulator output). ``tag`` is the
    integrity tag the node seals a block with before a store keeps it
    (:mod:`quantumrng.pool.integrity`); engines store it opaquely, and blocks
    leave the node's pool without it.
    """

    data: bytes
    credited_bits: int
    provenance: Provenance
    tag: bytes = b""

    def __repr__(self) -> str:  # never show the secret bytes
        return f"Block(credited_bits={self.credited_bits}, provenance={self.provenance!r})"
