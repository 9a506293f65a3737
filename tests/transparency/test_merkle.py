"""RFC 9162 §2.1 Merkle trees: known answers, stored-node generation, property checks."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pymerkle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.transparency.merkle import (
    EMPTY_ROOT,
    completed_nodes,
    consistency_proof,
    consistency_ranges,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    mth,
    node_hash,
    nodes_of,
    proof_hashes,
    range_nodes,
    root_hash,
    verify_consistency,
    verify_inclusion,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# The vectors of the certificate-transparency reference implementation, as kept in
# transparency-dev/merkle proof/verify_test.go (leaves, roots of sizes 1..8,
# inclusion proofs with 1-based leaf numbers, consistency proofs).
LEAVES = [
    h(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOTS = [
    h(x)
    for x in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
INCLUSION = [  # (leaf number from 1, tree size, path)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [  # (first, second, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
HASHES = [leaf_hash(x) for x in LEAVES]


def test_the_empty_tree_hash_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert mth([]) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_the_roots_of_the_reference_vectors(size: int) -> None:
    assert mth(HASHES[:size]) == ROOTS[size - 1]
    assert root_hash(size, nodes_of(_all_nodes(HASHES[:size]))) == ROOTS[size - 1]


@pytest.mark.parametrize(("number", "size", "path"), INCLUSION)
def test_the_inclusion_proofs_of_the_reference_vectors(
    number: int, size: int, path: list[str]
) -> None:
    expected = [h(p) for p in path]
    index = number - 1
    assert inclusion_proof(index, HASHES[:size]) == expected
    assert verify_inclusion(HASHES[index], index, size, expected, ROOTS[size - 1])
    for wrong in _corrupt_inclusion(index, size, expected):
        assert not verify_inclusion(HASHES[index], *wrong, ROOTS[size - 1]), wrong
    assert not verify_inclusion(leaf_hash(b"WrongLeaf"), index, size, expected, ROOTS[size - 1])
    assert not verify_inclusion(HASHES[index], index, size, expected, EMPTY_ROOT)


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_the_consistency_proofs_of_the_reference_vectors(
    first: int, second: int, proof: list[str]
) -> None:
    expected = [h(p) for p in proof]
    root1, root2 = ROOTS[first - 1], ROOTS[second - 1]
    assert consistency_proof(first, HASHES[:second]) == expected
    assert verify_consistency(first, second, root1, root2, expected)
    if first == second:
        assert not verify_consistency(first, second, root1, root2, [root1])
        return
    for wrong in _corrupt_consistency(first, second, expected):
        assert not verify_consistency(*wrong[:2], root1, root2, wrong[2]), wrong
    assert not verify_consistency(first, second, root2, root1, expected)
    assert not verify_consistency(first, second, root1, EMPTY_ROOT, expected)


def test_the_rfc6962_bis_inclusion_proof_of_mozillas_verifier_tests() -> None:
    """security/ct/tests/gtest/BTVerificationTest.cpp: leaf 5 of a tree of 7."""
    leaf = leaf_hash(h("81aae91cf90be172eedd1c75c349bf9e"))
    path = [
        h("2ff3bdac9bec3580b82da8a357746f15919414d9cbe517e2dd96910c9814c30c"),
        h("bb13dfb7b202a95f241ea1715c8549dc048d9936ec747028002f7c795de72fcf"),
        h("380d0dc6fd7d4f37859a12dbfc7171b3cce29ab0688c6cffd2b15f3e0b21af49"),
    ]
    root = h("d1a0d3947db4ae8305f2ac32985957e02659b2ea3c10da52a48d2526e9af3bbc")
    assert verify_inclusion(leaf, 5, 7, path, root)
    assert not verify_inclusion(leaf_hash(h("81aae91c0000000000000000c349bf9e")), 5, 7, path, root)
    assert not verify_inclusion(leaf, 5, 7, path[:-1], root)


def test_degenerate_inputs_never_verify() -> None:
    some = leaf_hash(b"x")
    for index, size in [(0, 0), (1, 0), (2, 1), (-1, 1)]:
        assert not verify_inclusion(some, index, size, [], some)
    assert not verify_inclusion(b"short", 0, 1, [], b"short")
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 1, EMPTY_ROOT, some, [])
    assert not verify_consistency(2, 1, some, some, [some])
    assert not verify_consistency(1, 2, some, some, [])
    assert not verify_consistency(1, 1, EMPTY_ROOT, some, [])


def _corrupt_inclusion(
    index: int, size: int, path: list[bytes]
) -> list[tuple[int, int, list[bytes]]]:
    """Wrong index, wrong size, extra, missing or flipped elements (as the reference
    implementation's tests corrupt proofs)."""
    some = h("abacaba000000000000000000000000000000000000000000060061e00123456")
    out = [
        (index - 1, size, path),
        (index + 1, size, path),
        (index ^ 2, size, path),
        (index, size * 2, path),
        (index, size // 2, path),
        (index, size, [*path, ROOTS[-1]]),
        (index, size, [ROOTS[-1], *path]),
    ]
    if path:
        out.append((index, size, path[:-1]))
        out.append((index, size, [path[0], some, *path[1:]]))
    for i in range(len(path)):
        flipped = list(path)
        flipped[i] = bytes([path[i][0] ^ 8]) + path[i][1:]
        out.append((index, size, flipped))
    return [o for o in out if o != (index, size, path)]


def _corrupt_consistency(
    first: int, second: int, proof: list[bytes]
) -> list[tuple[int, int, list[bytes]]]:
    out = [
        (first - 1, second, proof),
        (first + 1, second, proof),
        (first ^ 2, second, proof),
        (first, second * 2, proof),
        (first, second // 2, proof),
        (first, second, []),
        (first, second, [*proof, ROOTS[first - 1]]),
        (first, second, [ROOTS[first - 1], *proof]),
        (first, second, [proof[0], *proof]),
        (first, second, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        out.append((first, second, flipped))
    return out


# -- stored nodes ---------------------------------------------------------------


def _all_nodes(hashes: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    """Every complete aligned subtree of ``hashes``, computed directly from the leaves."""
    out: dict[tuple[int, int], bytes] = {}
    level = 0
    while (1 << level) <= len(hashes):
        for i in range(len(hashes) >> level):
            out[level, i] = mth(hashes[i << level : (i + 1) << level])
        level += 1
    return out


@given(st.integers(1, 300), st.data())
def test_range_nodes_fold_to_the_mth_of_every_proof_range(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    first = data.draw(st.integers(1, size))
    ranges = inclusion_ranges(index, size) + consistency_ranges(first, size) + [(0, size)]
    hashes = [leaf_hash(i.to_bytes(2, "big")) for i in range(size)]
    fetch = nodes_of(_all_nodes(hashes))
    assert proof_hashes(ranges, fetch) == [mth(hashes[a:b]) for a, b in ranges]
    for a, b in ranges:
        assert len(range_nodes(a, b)) <= (b - a).bit_length()


def test_a_misaligned_range_is_refused() -> None:
    with pytest.raises(ValueError):
        range_nodes(1, 4)
    with pytest.raises(ValueError):
        range_nodes(3, 3)


def test_generation_reads_only_logarithmically_many_nodes() -> None:
    size = 1_000_003
    asked: list[Sequence[tuple[int, int]]] = []

    def fetch(keys: Sequence[tuple[int, int]]) -> list[bytes | None]:
        asked.append(list(keys))
        return [bytes(32)] * len(keys)

    proof_hashes(inclusion_ranges(777_777, size), fetch)
    proof_hashes(consistency_ranges(333_333, size), fetch)
    assert len(asked) == 2
    assert all(len(keys) <= 2 * size.bit_length() for keys in asked)


@given(st.lists(st.integers(0, 40), min_size=1, max_size=8))
def test_integrating_in_steps_stores_every_complete_subtree(steps: list[int]) -> None:
    total = sum(steps)
    hashes = [leaf_hash(i.to_bytes(2, "big")) for i in range(total)]
    stored: dict[tuple[int, int], bytes] = {}
    size = 0
    for step in steps:
        stored.update({(0, i): hashes[i] for i in range(size, size + step)})
        made = completed_nodes(size, size + step, nodes_of(stored))
        assert all(level >= 1 for level, _ in made) and not set(made) & set(stored)
        stored.update(made)
        size += step
        assert root_hash(size, nodes_of(stored)) == mth(hashes[:size])
    assert stored == _all_nodes(hashes)


def test_integration_without_an_older_node_is_an_error() -> None:
    hashes = [leaf_hash(bytes([i])) for i in range(3)]
    stored = {(0, 0): hashes[0], (0, 1): hashes[1]}  # (1, 0) never integrated
    stored[0, 2] = hashes[2]
    with pytest.raises(LookupError):
        root_hash(3, nodes_of(stored))


# -- properties -----------------------------------------------------------------

trees = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@settings(max_examples=150)
@given(trees, st.data())
def test_every_inclusion_proof_verifies_and_any_change_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    hashes = [leaf_hash(i.to_bytes(2, "big") + x) for i, x in enumerate(leaves)]
    size = len(hashes)
    index = data.draw(st.integers(0, size - 1))
    root = mth(hashes)
    path = inclusion_proof(index, hashes)
    assert verify_inclusion(hashes[index], index, size, path, root)
    assert not verify_inclusion(leaf_hash(leaves[index] + b"!"), index, size, path, root)
    assert not verify_inclusion(hashes[index], index, size, path, node_hash(root, root))
    for wrong_index in (index - 1, index + 1, index ^ 2):
        assert not verify_inclusion(hashes[index], wrong_index, size, path, root)
    for wrong_size in (size - 1, size + 1, size * 2):
        if wrong_size > index and len(inclusion_ranges(index, wrong_size)) != len(path):
            assert not verify_inclusion(hashes[index], index, wrong_size, path, root)
    if path:
        element = data.draw(st.integers(0, len(path) - 1))
        bit = data.draw(st.integers(0, 255))
        flipped = list(path)
        flipped[element] = _flip(path[element], bit)
        assert not verify_inclusion(hashes[index], index, size, flipped, root)
        assert not verify_inclusion(hashes[index], index, size, path[:-1], root)
    assert not verify_inclusion(hashes[index], index, size, [*path, root], root)


@settings(max_examples=150)
@given(trees, st.data())
def test_every_consistency_proof_verifies_for_every_prefix_and_any_change_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    second = len(hashes)
    roots = [mth(hashes[:m]) for m in range(second + 1)]
    for first in range(1, second + 1):
        proof = consistency_proof(first, hashes)
        assert verify_consistency(first, second, roots[first], roots[second], proof)
    first = data.draw(st.integers(1, second))
    proof = consistency_proof(first, hashes)
    rewritten = list(hashes)
    victim = data.draw(st.integers(0, first - 1))
    rewritten[victim] = leaf_hash(leaves[victim] + b"!")
    assert not verify_consistency(first, second, mth(rewritten[:first]), roots[second], proof)
    assert not verify_consistency(first, second, roots[first], mth(rewritten), proof)
    if proof:
        element = data.draw(st.integers(0, len(proof) - 1))
        flipped = list(proof)
        flipped[element] = _flip(proof[element], data.draw(st.integers(0, 255)))
        assert not verify_consistency(first, second, roots[first], roots[second], flipped)
        assert not verify_consistency(first, second, roots[first], roots[second], proof[:-1])
    for wrong in (second + 1, second * 2, first + second):
        if len(consistency_ranges(first, wrong)) != len(proof):
            assert not verify_consistency(first, wrong, roots[first], roots[second], proof)


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# -- another implementation -------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=6), min_size=1, max_size=40), st.data())
def test_roots_and_audit_paths_match_pymerkle(leaves: list[bytes], data: st.DataObject) -> None:
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for leaf in leaves:
        tree.append_entry(leaf)
    hashes = [leaf_hash(x) for x in leaves]
    size = len(leaves)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert tree.get_state(size) == mth(hashes)
    index = data.draw(st.integers(0, size - 1))
    theirs = tree.prove_inclusion(index + 1, size).serialize()["path"]
    assert [bytes.fromhex(p) for p in theirs[1:]] == inclusion_proof(index, hashes)
    first = data.draw(st.integers(1, size))
    pymerkle.verify_consistency(
        mth(hashes[:first]), mth(hashes), tree.prove_consistency(first, size)
    )
