"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, §2.1.1.

Pure functions over SHA-256: the leaf hash ``SHA-256(0x00 || leaf)`` and the
interior node hash ``SHA-256(0x01 || left || right)``.
"""

from __future__ import annotations

import hashlib

__all__ = ["HASH_BYTES", "leaf_hash", "node_hash"]

HASH_BYTES = 32


def leaf_hash(leaf: bytes) -> bytes:
    """MTH({d0}) = SHA-256(0x00 || d0) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()
