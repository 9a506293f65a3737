"""SHA-512 conditioning (SP 800-90B §3.1.5.1.1, vetted conditioning component).

PLACEHOLDER: the conditioning function is being written; ``Block`` is final.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantumrng.provenance import Provenance

__all__ = ["BLOCK_BYTES", "FULL_ENTROPY_INPUT_BITS", "Block"]

BLOCK_BYTES = 64  # SHA-512 output, bytes
FULL_ENTROPY_INPUT_BITS = 512 + 64  # SP 800-90B §3.1.5.1.2: n_out + 64 bits


@dataclass(frozen=True, slots=True)
class Block:
    """One conditioned 64-byte block with the provenance of its input.

    ``credited_bits`` is 512 when the input carried at least 576 bits of
    credited min-entropy, else 0 (e.g. simulator output).
    """

    data: bytes
    credited_bits: int
    provenance: Provenance

    def __repr__(self) -> str:  # never show the secret bytes
        return f"Block(credited_bits={self.credited_bits}, provenance={self.provenance!r})"
