"""Offline checks of signed tree heads and proofs (RFC 9162 §4.10, §2.1.3.2, §2.1.4.2)."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from quantumrng.signed import PublicKey
from quantumrng.transparency.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    mth,
)
from quantumrng.transparency.verify import (
    check_consistency,
    check_inclusion,
    parse_hash,
    tree_head_data,
    verify_head,
)

ROOT = bytes.fromhex("d1a0d3947db4ae8305f2ac32985957e02659b2ea3c10da52a48d2526e9af3bbc")


def test_tree_head_data_is_the_tls_encoding_of_tree_head_data_to_sign() -> None:
    """uint64 timestamp, uint64 tree_size, NodeHash (one length byte), no extensions
    (two zero length bytes), as in Mozilla's RFC 6962-bis STH test inputs."""
    expected = bytes.fromhex("00000166d6142b50000000000000000720" + ROOT.hex() + "0000")
    assert tree_head_data(1541189938000, 7, ROOT) == expected
    with pytest.raises(ValueError):
        tree_head_data(-1, 7, ROOT)
    with pytest.raises(ValueError):
        tree_head_data(0, 2**64, ROOT)
    with pytest.raises(ValueError):
        tree_head_data(0, 7, ROOT[:31])


def _signed_head(
    key: Ed25519PrivateKey, size: int, root: bytes, timestamp: int | None = None
) -> dict[str, Any]:
    when = int(time.time() * 1000) if timestamp is None else timestamp
    return {
        "tree_size": size,
        "root_hash": root.hex(),
        "timestamp": when,
        "key_id": PublicKey(key.public_key(), 0).key_id,
        "signature": base64.b64encode(key.sign(tree_head_data(when, size, root))).decode(),
    }


def test_a_head_verifies_only_under_a_key_current_at_its_time() -> None:
    key = Ed25519PrivateKey.generate()
    now = time.time()
    head = _signed_head(key, 7, ROOT)
    assert verify_head(head, [PublicKey(key.public_key(), now - 60)])
    assert not verify_head(head, [PublicKey(key.public_key(), now + 60)])
    assert not verify_head(head, [PublicKey(key.public_key(), now - 60, now - 30)])
    assert not verify_head(head, [])


@pytest.mark.parametrize(
    "change",
    [
        {"tree_size": True},
        {"tree_size": -1},
        {"tree_size": "7"},
        {"timestamp": 1.5},
        {"root_hash": ROOT.hex().upper()},
        {"root_hash": ROOT.hex()[:-2]},
        {"root_hash": "zz" * 32},
        {"signature": "not base64!"},
        {"signature": None},
    ],
)
def test_a_malformed_head_is_refused_without_raising(change: dict[str, Any]) -> None:
    key = Ed25519PrivateKey.generate()
    keys = [PublicKey(key.public_key(), 0)]
    head = _signed_head(key, 7, ROOT)
    assert verify_head(head, keys)
    assert not verify_head({**head, **change}, keys)


def test_a_head_of_the_empty_tree_must_name_the_empty_root() -> None:
    key = Ed25519PrivateKey.generate()
    keys = [PublicKey(key.public_key(), 0)]
    assert verify_head(_signed_head(key, 0, EMPTY_ROOT), keys)
    assert not verify_head(_signed_head(key, 0, ROOT), keys)
    assert not verify_head("head", keys)


def test_parse_hash_takes_lowercase_hex_of_32_bytes_only() -> None:
    assert parse_hash(ROOT.hex()) == ROOT
    for bad in (ROOT.hex().upper(), ROOT.hex() + "00", 7, None, "g" * 64):
        assert parse_hash(bad) is None


def test_proof_documents_are_checked_against_their_heads() -> None:
    leaves = [bytes([i]) for i in range(9)]
    hashes = [leaf_hash(x) for x in leaves]
    head5 = {"tree_size": 5, "root_hash": mth(hashes[:5]).hex()}
    head9 = {"tree_size": 9, "root_hash": mth(hashes).hex()}
    proof = {
        "leaf_index": 3,
        "tree_size": 9,
        "leaf_hash": hashes[3].hex(),
        "audit_path": [p.hex() for p in inclusion_proof(3, hashes)],
    }
    assert check_inclusion(proof, head9, leaves[3])
    assert not check_inclusion(proof, head9, leaves[4])
    assert not check_inclusion(proof, head5)  # the proof is for another size
    assert not check_inclusion({**proof, "audit_path": "x"}, head9)
    assert not check_inclusion({**proof, "leaf_index": None}, head9)
    assert not check_inclusion({"leaf_index": 3}, head9)
    consistency = {
        "first": 5,
        "second": 9,
        "proof": [p.hex() for p in consistency_proof(5, hashes)],
    }
    assert check_consistency(consistency, head5, head9)
    assert not check_consistency(consistency, head9, head5)
    assert not check_consistency({**consistency, "first": 4}, head5, head9)
    assert not check_consistency({**consistency, "proof": ["00"]}, head5, head9)
    assert not check_consistency({}, head5, head9)
