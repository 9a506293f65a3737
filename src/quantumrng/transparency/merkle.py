"""RFC 9162 (Certificate Transparency v2) Merkle trees, §2.1: hashes, proofs, checks.

Pure functions over SHA-256. The tree hash ``MTH`` (§2.1.1), inclusion proofs
(§2.1.3) and consistency proofs (§2.1.4), generated and verified exactly as
the RFC writes them.

Generation never reads all leaves. A proof is a list of subtree hashes
``MTH(D[a:b])`` (:func:`inclusion_ranges`, :func:`consistency_ranges`); each
range starts at a multiple of a power of two and decomposes into O(log n)
*complete aligned subtrees* (:func:`range_nodes`): the node ``(level, index)``
is the hash of the ``2**level`` leaves from ``index * 2**level``, which a
store keeps once they are complete (:func:`completed_nodes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_BYTES",
    "Fetch",
    "NodeKey",
    "completed_nodes",
    "consistency_proof",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "mth",
    "node_hash",
    "nodes_of",
    "proof_hashes",
    "range_nodes",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) (§2.1.1)

NodeKey = tuple[int, int]  # (level, index): leaves [index * 2**level, (index + 1) * 2**level)
Range = tuple[int, int]  # leaves [a, b)


def leaf_hash(leaf: bytes) -> bytes:
    """MTH({d0}) = SHA-256(0x00 || d0) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1), the k of §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves whose hashes are given, by the recursion of §2.1.1 (in memory)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose MTHs form PATH(index, D[0:size]) (§2.1.3.1), leaf first."""
    if not 0 <= index < size:
        raise ValueError("the leaf index must be below the tree size")
    path: list[Range] = []
    start, n, m = 0, size, index
    while n > 1:
        k = _split(n)
        if m < k:
            path.append((start + k, start + n))
            n = k
        else:
            path.append((start, start + k))
            start, n, m = start + k, n - k, m - k
    path.reverse()
    return path


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The ranges whose MTHs form PROOF(first, D[0:second]) (§2.1.4.1)."""
    if not 0 < first <= second:
        raise ValueError("a consistency proof needs 0 < first <= second")
    proof: list[Range] = []
    start, n, m, complete = 0, second, first, True
    while m != n:
        k = _split(n)
        if m <= k:
            proof.append((start + k, start + n))
            n = k
        else:
            proof.append((start, start + k))
            start, n, m, complete = start + k, n - k, m - k, False
    if not complete:
        proof.append((start, start + m))
    proof.reverse()
    return proof


def range_nodes(start: int, end: int) -> list[NodeKey]:
    """The complete aligned subtrees whose fold is MTH(D[start:end]), left to right.

    ``start`` must be a multiple of the largest power of two below ``end - start``
    (every range of a proof is); the sizes are the binary digits of
    ``end - start``, largest first, and MTH folds them from the right.
    """
    size = end - start
    if size < 1 or start < 0:
        raise ValueError("a subtree range holds at least one leaf")
    keys: list[NodeKey] = []
    at = start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            if at % (1 << level):
                raise ValueError(f"the range [{start}, {end}) is not aligned")
            keys.append((level, at >> level))
            at += 1 << level
    return keys


def _fold(hashes: Sequence[bytes]) -> bytes:
    value = hashes[-1]
    for h in reversed(hashes[:-1]):
        value = node_hash(h, value)
    return value


Fetch = Callable[[Sequence[NodeKey]], Sequence[bytes | None]]


def _fetched(keys: Sequence[NodeKey], fetch: Fetch) -> dict[NodeKey, bytes]:
    """``keys`` and their hashes; ``LookupError`` when ``fetch`` lacks one."""
    found: dict[NodeKey, bytes] = {}
    missing: list[NodeKey] = []
    for key, value in zip(keys, fetch(keys), strict=True):
        if value is None:
            missing.append(key)
        else:
            found[key] = value
    if missing:
        raise LookupError(f"tree nodes not stored: {missing[:4]}")
    return found


def proof_hashes(ranges: Sequence[Range], fetch: Fetch) -> list[bytes]:
    """MTH of each range, from complete subtree nodes ``fetch`` returns in one call.

    Raises ``LookupError`` naming a node ``fetch`` does not have.
    """
    keys = [range_nodes(a, b) for a, b in ranges]
    wanted = sorted({k for ks in keys for k in ks})
    found = _fetched(wanted, fetch)
    return [_fold([found[k] for k in ks]) for ks in keys]


def root_hash(size: int, fetch: Fetch) -> bytes:
    """MTH(D[0:size]) from stored nodes (``EMPTY_ROOT`` for size 0)."""
    return EMPTY_ROOT if size == 0 else proof_hashes([(0, size)], fetch)[0]


def _leaf_fetch(leaf_hashes: Sequence[bytes]) -> Fetch:
    def fetch(keys: Sequence[NodeKey]) -> list[bytes | None]:
        return [mth(leaf_hashes[i << lv : (i + 1) << lv]) for lv, i in keys]

    return fetch


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D) over leaves held in memory (§2.1.3.1)."""
    return proof_hashes(inclusion_ranges(index, len(leaf_hashes)), _leaf_fetch(leaf_hashes))


def consistency_proof(first: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(first, D) over leaves held in memory (§2.1.4.1)."""
    return proof_hashes(consistency_ranges(first, len(leaf_hashes)), _leaf_fetch(leaf_hashes))


def completed_nodes(old_size: int, new_size: int, fetch: Fetch) -> dict[NodeKey, bytes]:
    """The nodes of level >= 1 that leaves ``[old_size, new_size)`` complete.

    Reads the new leaf hashes and at most one older node per level (the left
    sibling of the first new node), in one ``fetch``. Raises ``LookupError``
    when one is missing.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError("sizes must grow")
    if old_size == new_size:
        return {}
    wanted: list[NodeKey] = [(0, i) for i in range(old_size, new_size)]
    for level in range(1, new_size.bit_length()):
        first_new = old_size >> level
        if first_new < new_size >> level and (old_size >> (level - 1)) & 1:
            wanted.append((level - 1, 2 * first_new))
    known = _fetched(wanted, fetch)
    made: dict[NodeKey, bytes] = {}
    for level in range(1, new_size.bit_length()):
        for index in range(old_size >> level, new_size >> level):
            value = node_hash(known[level - 1, 2 * index], known[level - 1, 2 * index + 1])
            known[level, index] = made[level, index] = value
    return made


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_BYTES


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2, step by step: does ``path`` put leaf hash ``leaf`` at
    ``index`` of the tree of ``size`` whose root is ``root``? Never raises."""
    if not (_is_hash(leaf) and _is_hash(root) and all(_is_hash(p) for p in path)):
        return False
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2, step by step: is the tree of ``first`` leaves with root
    ``first_root`` a prefix of the tree of ``second`` leaves with ``second_root``?

    ``first == second`` holds with an empty proof and equal roots (§2.1.4.1:
    PROOF(m, D[m]) is empty). Never raises.
    """
    if not (_is_hash(first_root) and _is_hash(second_root)):
        return False
    if not all(_is_hash(c) for c in proof) or not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0


def nodes_of(mapping: Mapping[NodeKey, bytes]) -> Fetch:
    """A ``fetch`` over a mapping of nodes (tests, small in-memory trees)."""

    def fetch(keys: Sequence[NodeKey]) -> list[bytes | None]:
        return [mapping.get(k) for k in keys]

    return fetch
