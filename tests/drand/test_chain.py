"""drand's chain, pure: chain hashes of drand's published networks, round arithmetic as
drand-client computes it, messages, and BLS signatures that drand-verify accepts (an
independent implementation) and that fail for any other round, message or key."""

from __future__ import annotations

import hashlib
import math

import drand_verify
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.drand.chain import (
    CHAINED,
    SCHEMES,
    UNCHAINED_G1,
    Beacon,
    ChainInfo,
    chain_hash,
    current_round,
    message,
    next_round,
    public_key,
    randomness,
    round_time,
    secret_scalar,
    sign,
    verify,
)

# drand's published chain infos (api.drand.sh/<hash>/info): the hash is computed from the rest.
QUICKNET = ChainInfo(
    UNCHAINED_G1,
    3,
    1692803367,
    bytes.fromhex(
        "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d"
        "1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae"
        "8991ef5ece45a"
    ),
    bytes.fromhex("f477d5c89f21a17c863a7f937c6a6d15859414d2be09cd448d4279af331c5d3e"),
    "quicknet",
)
QUICKNET_HASH = "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971"
MAINNET = ChainInfo(
    CHAINED,
    30,
    1595431050,
    bytes.fromhex(
        "868f005eb8e6e4ca0a47c8a77ceaa5309a47978a7c71bc5cce96366b5d7a569937c529eeda66c7293784a940"
        "2801af31"
    ),
    bytes.fromhex("176f93498eac9ca337150b46d21dd58673ea4e3581185f869672e59fa4cb390a"),
    "default",
)
MAINNET_HASH = "8990e7a9aaed2ffed73dbd7092123d6f289930540d7651336225dc172e51b2ce"
SECRET = secret_scalar(hashlib.sha512(b"a test key, never a real one").digest())


def test_chain_hash_is_drands_for_quicknet_and_the_default_mainnet() -> None:
    assert chain_hash(QUICKNET).hex() == QUICKNET_HASH  # beacon ID hashed in
    assert chain_hash(MAINNET).hex() == MAINNET_HASH  # "default" left out


def test_info_bodies_carry_drands_field_names() -> None:
    assert QUICKNET.v1() == {
        "public_key": QUICKNET.public_key.hex(),
        "period": 3,
        "genesis_time": 1692803367,
        "hash": QUICKNET_HASH,
        "groupHash": QUICKNET.group_hash.hex(),
        "schemeID": UNCHAINED_G1,
        "metadata": {"beaconID": "quicknet"},
    }
    assert QUICKNET.v2()["chain_hash"] == QUICKNET_HASH


@given(
    genesis=st.integers(0, 2**40),
    period=st.integers(1, 86_400),
    offset=st.floats(0, 2**30, allow_nan=False),
)
def test_rounds_follow_drand_clients_round_at(genesis: int, period: int, offset: float) -> None:
    now = genesis + offset
    current = current_round(now, genesis, period)
    assert current == math.floor(offset / period) + 1  # drand-client's roundAt
    assert round_time(current, genesis, period) <= now < round_time(current + 1, genesis, period)
    assert next_round(now, genesis, period) == (
        current + 1,
        round_time(current + 1, genesis, period),
    )


def test_nothing_is_emitted_before_genesis() -> None:
    assert current_round(999.5, 1000, 3) == 0
    assert next_round(999.5, 1000, 3) == (1, 1000)
    assert current_round(1000, 1000, 3) == 1


def test_messages_are_drands() -> None:
    assert message(UNCHAINED_G1, 1) == hashlib.sha256((1).to_bytes(8, "big")).digest()
    previous = bytes(range(96))
    assert (
        message(CHAINED, 7, previous) == hashlib.sha256(previous + (7).to_bytes(8, "big")).digest()
    )
    with pytest.raises(ValueError):
        message(CHAINED, 7)


@settings(max_examples=10, deadline=None)
@given(round_=st.integers(1, 2**63))
def test_unchained_signatures_verify_with_drand_verify(round_: int) -> None:
    pk = public_key(UNCHAINED_G1, SECRET)
    sig = sign(UNCHAINED_G1, SECRET, message(UNCHAINED_G1, round_))
    out = drand_verify.verify_bls_unchained_g1_rfc9380(round_, sig.hex(), pk.hex())
    assert out == randomness(sig).hex() == Beacon(round_, sig).v1()["randomness"]
    assert verify(UNCHAINED_G1, pk, message(UNCHAINED_G1, round_), sig)
    assert not verify(UNCHAINED_G1, pk, message(UNCHAINED_G1, round_ - 1), sig)
    with pytest.raises(ValueError):
        drand_verify.verify_bls_unchained_g1_rfc9380(round_ + 1, sig.hex(), pk.hex())


@settings(max_examples=5, deadline=None)
@given(round_=st.integers(1, 2**63), previous=st.binary(min_size=32, max_size=96))
def test_chained_signatures_verify_with_drand_verify(round_: int, previous: bytes) -> None:
    pk = public_key(CHAINED, SECRET)
    sig = sign(CHAINED, SECRET, message(CHAINED, round_, previous))
    out = drand_verify.verify_pedersen_bls_chained(round_, previous.hex(), sig.hex(), pk.hex())
    assert out == randomness(sig).hex()
    assert not verify(CHAINED, pk, message(CHAINED, round_, previous + b"\0"), sig)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_another_key_or_a_malformed_signature_fails(scheme: str) -> None:
    other = public_key(scheme, secret_scalar(bytes(63) + b"\x05"))
    msg = message(scheme, 5, bytes(96))
    sig = sign(scheme, SECRET, msg)
    assert verify(scheme, public_key(scheme, SECRET), msg, sig)
    assert not verify(scheme, other, msg, sig)
    assert not verify(scheme, public_key(scheme, SECRET), msg, b"\xff" * len(sig))
    assert not verify(scheme, public_key(scheme, SECRET), msg, sig[:-1])


def test_key_material_must_be_64_bytes_and_nonzero_mod_the_order() -> None:
    with pytest.raises(ValueError):
        secret_scalar(bytes(32))
    with pytest.raises(ValueError):
        secret_scalar(bytes(64))


def test_v2_rounds_leave_randomness_out_and_chained_rounds_name_their_predecessor() -> None:
    assert Beacon(3, b"\x01" * 48).v2() == {"round": 3, "signature": "01" * 48}
    chained = Beacon(3, b"\x01" * 96, b"\x02" * 96).v1()
    assert list(chained) == ["round", "randomness", "signature", "previous_signature"]


def test_v2_info_has_drand_v2s_field_names() -> None:
    assert list(QUICKNET.v2()) == [
        "public_key",
        "beacon_id",
        "period",
        "scheme",
        "genesis_time",
        "genesis_seed",
        "chain_hash",
    ]
