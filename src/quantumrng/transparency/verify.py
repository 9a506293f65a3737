"""What a client checks of the transparency log, offline: heads, inclusion, consistency.

Pure (``cryptography`` and :mod:`quantumrng.transparency.merkle` only), so the
client and ``qrng log verify`` need nothing but the service's public keys.

A signed tree head (``GET /api/v2/log/head``) is ``{"tree_size", "root_hash"
(lowercase hex), "timestamp" (ms since the epoch), "key_id", "signature"
(base64 Ed25519)}``. The signature covers the RFC 9162 §4.10
``TreeHeadDataToSign`` structure in TLS presentation encoding (RFC 8446 §3):

    opaque NodeHash<HASH_SIZE..2^8-1>;
    struct {
        uint64 timestamp;
        uint64 tree_size;
        NodeHash root_hash;
        Extension sth_extensions<0..2^16-1>;
    } TreeHeadDataToSign;

i.e. 8 + 8 bytes big-endian, one length byte (32) and the root, two length
bytes (0: no extensions) — 51 bytes.

Every function here answers True/False (or None) on bad input; none raises.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature

from quantumrng.signed import PublicKey
from quantumrng.transparency.merkle import (
    EMPTY_ROOT,
    HASH_BYTES,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "HEAD_FIELDS",
    "check_consistency",
    "check_inclusion",
    "parse_hash",
    "tree_head_data",
    "verify_head",
]

HEAD_FIELDS = frozenset({"tree_size", "root_hash", "timestamp", "key_id", "signature"})
_UINT64 = 1 << 64


def tree_head_data(timestamp: int, tree_size: int, root_hash: bytes) -> bytes:
    """The RFC 9162 §4.10 ``TreeHeadDataToSign`` bytes, with no extensions."""
    if not (0 <= timestamp < _UINT64 and 0 <= tree_size < _UINT64):
        raise ValueError("timestamp and tree_size are uint64")
    if not HASH_BYTES <= len(root_hash) <= 255:
        raise ValueError("root_hash is a NodeHash<32..2^8-1>")
    return struct.pack(">QQB", timestamp, tree_size, len(root_hash)) + root_hash + b"\x00\x00"


def parse_hash(value: object) -> bytes | None:
    """A 32-byte hash from lowercase hex, or None if ``value`` is not one."""
    if not isinstance(value, str) or len(value) != 2 * HASH_BYTES or value != value.lower():
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def _uint(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _UINT64:
        return value
    return None


def verify_head(head: object, public_keys: Iterable[PublicKey]) -> bool:
    """True when ``head`` has exactly the head's fields, its root is the empty
    tree's for size 0, and its signature verifies under the key it names, a
    key that was current at its timestamp."""
    if not isinstance(head, Mapping) or set(head) != HEAD_FIELDS:
        return False
    size, timestamp = _uint(head["tree_size"]), _uint(head["timestamp"])
    root = parse_hash(head["root_hash"])
    if size is None or timestamp is None or root is None:
        return False
    if size == 0 and root != EMPTY_ROOT:
        return False
    key = next((k for k in public_keys if k.key_id == head["key_id"]), None)
    if key is None or not key.valid_at(timestamp / 1000):
        return False
    encoded = head["signature"]
    if not isinstance(encoded, str):
        return False
    try:
        signature = base64.b64decode(encoded, validate=True)
        key.key.verify(signature, tree_head_data(timestamp, size, root))
    except (binascii.Error, InvalidSignature, ValueError):
        return False
    return True


def _hashes(values: object) -> list[bytes] | None:
    if not isinstance(values, list):
        return None
    parsed = [parse_hash(v) for v in values]
    return None if any(p is None for p in parsed) else [p for p in parsed if p is not None]


def check_inclusion(
    proof: Mapping[str, Any], head: Mapping[str, Any], leaf: bytes | None = None
) -> bool:
    """True when ``proof`` (``GET /api/v2/log/proof/{serial}``) puts its leaf in the
    tree ``head`` signs (check the head with :func:`verify_head` first).

    With ``leaf`` (the canonical bytes of a signed result), its RFC 9162 leaf
    hash must also be the proof's: that is what ties a result to the log.
    """
    try:
        index, size = _uint(proof["leaf_index"]), _uint(proof["tree_size"])
        hashed, path = parse_hash(proof["leaf_hash"]), _hashes(proof["audit_path"])
        root = parse_hash(head["root_hash"])
        head_size = head["tree_size"]
    except (KeyError, TypeError):
        return False
    if index is None or size is None or hashed is None or path is None or root is None:
        return False
    if size != head_size or (leaf is not None and leaf_hash(leaf) != hashed):
        return False
    return verify_inclusion(hashed, index, size, path, root)


def check_consistency(
    proof: Mapping[str, Any], first: Mapping[str, Any], second: Mapping[str, Any]
) -> bool:
    """True when ``proof`` (``GET /api/v2/log/consistency``) shows the tree of head
    ``first`` is a prefix of the tree of head ``second``: the log was only
    appended to between them (check both heads with :func:`verify_head` first)."""
    try:
        m, n = _uint(proof["first"]), _uint(proof["second"])
        path = _hashes(proof["proof"])
        first_root, second_root = parse_hash(first["root_hash"]), parse_hash(second["root_hash"])
        sizes = (first["tree_size"], second["tree_size"])
    except (KeyError, TypeError):
        return False
    if m is None or n is None or path is None or first_root is None or second_root is None:
        return False
    if sizes != (m, n):
        return False
    return verify_consistency(m, n, first_root, second_root, path)
