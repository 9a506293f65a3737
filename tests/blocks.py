"""The one block factory of the tests: blocks whose bytes are unique and derivable."""

from __future__ import annotations

import hashlib
import time
import uuid

from quantumrng.block import Block
from quantumrng.provenance import Provenance

__all__ = ["block_for", "make_blocks"]


def make_blocks(
    n: int,
    source: str = "os",
    credited_bits: int = 512,
    harvest_id: str | None = None,
    **fields: object,
) -> list[Block]:
    """``n`` blocks of one new harvest; each block's bytes are unique and derivable."""
    prov = Provenance(
        source=source,
        harvest_id=harvest_id or uuid.uuid4().hex,
        harvested_at=time.time(),
        **fields,  # type: ignore[arg-type]
    )
    return [block_for(prov, i, credited_bits) for i in range(n)]


def block_for(prov: Provenance, i: int, credited_bits: int = 512) -> Block:
    """Block ``i`` of harvest ``prov``: SHA-512 of its harvest id and index."""
    data = hashlib.sha512(f"{prov.harvest_id}/{i}".encode()).digest()
    return Block(data=data, credited_bits=credited_bits, provenance=prov)
