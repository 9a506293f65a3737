"""drand's chain, pure: round arithmetic, the signed message, BLS signing and checking,
the chain hash and the JSON drand's clients read (low-level; the HTTP routes are in
``server/drand.py``).

Two schemes (drand ``crypto/schemes.go``):

- ``bls-unchained-g1-rfc9380`` (quicknet): the signature is on G1 over
  ``sha256(round as 8 bytes big-endian)``, hashed to the curve with RFC 9380's
  ``BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_``; the public key is on G2.
- ``pedersen-bls-chained`` (drand's first mainnet): the signature is on G2 over
  ``sha256(previous signature ‖ round)`` with ``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_``;
  the public key is on G1; round 1's previous signature is the genesis seed (the group
  hash).

``randomness = sha256(signature)``. Round 1 is emitted at the genesis time and round
``r`` at ``genesis + (r - 1) * period`` (drand ``common/time.go``). The chain hash is
drand's ``chain.Info.Hash``: sha256 over the period (uint32 big-endian), the genesis time
(int64 big-endian), the public key, the group hash and, unless it is ``default``, the
beacon ID. The curve arithmetic is py-arkworks-bls12381's (arkworks); nothing of it is
written here.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Any, Final

from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

__all__ = [
    "CHAINED",
    "DEFAULT_BEACON_ID",
    "DST_G1",
    "DST_G2",
    "SCHEMES",
    "UNCHAINED_G1",
    "Beacon",
    "ChainInfo",
    "chain_hash",
    "current_round",
    "group_hash",
    "message",
    "next_round",
    "public_key",
    "randomness",
    "round_time",
    "secret_scalar",
    "sign",
    "verify",
]

UNCHAINED_G1: Final = "bls-unchained-g1-rfc9380"
CHAINED: Final = "pedersen-bls-chained"
SCHEMES: Final = (UNCHAINED_G1, CHAINED)
DST_G1: Final = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"  # RFC 9380 §8.8.1, G1 signatures
DST_G2: Final = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_"  # RFC 9380 §8.8.2, G2 signatures
DEFAULT_BEACON_ID: Final = "default"  # drand leaves this ID out of the chain hash
_GROUP_TAG: Final = b"QuantumRNG drand group v1"
_SCALAR_BYTES: Final = 64  # reduced mod r (255 bits): bias below 2^-256


@dataclass(frozen=True)
class ChainInfo:
    """What drand's ``/info`` says of a chain; ``hash`` is computed, not stored."""

    scheme: str
    period: int  # seconds
    genesis_time: int  # seconds since 1970
    public_key: bytes  # compressed: G2 (96 bytes) for unchained-g1, G1 (48) for chained
    group_hash: bytes  # 32 bytes; the chained scheme's genesis seed
    beacon_id: str

    @property
    def hash(self) -> bytes:
        """drand's chain hash of this chain."""
        return chain_hash(self)

    def v1(self) -> dict[str, Any]:
        """The v1 ``/info`` body, drand's field names."""
        return {
            "public_key": self.public_key.hex(),
            "period": self.period,
            "genesis_time": self.genesis_time,
            "hash": self.hash.hex(),
            "groupHash": self.group_hash.hex(),
            "schemeID": self.scheme,
            "metadata": {"beaconID": self.beacon_id},
        }

    def v2(self) -> dict[str, Any]:
        """The v2 ``/info`` body: drand v2's ``chain.Info`` JSON (period in seconds)."""
        return {
            "public_key": self.public_key.hex(),
            "beacon_id": self.beacon_id,
            "period": self.period,
            "scheme": self.scheme,
            "genesis_time": self.genesis_time,
            "genesis_seed": self.group_hash.hex(),
            "chain_hash": self.hash.hex(),
        }


@dataclass(frozen=True)
class Beacon:
    """One round: its number, signature and (chained scheme only) previous signature."""

    round: int
    signature: bytes
    previous_signature: bytes | None = None

    @property
    def randomness(self) -> bytes:
        """sha256 of the signature."""
        return randomness(self.signature)

    def v1(self) -> dict[str, Any]:
        """The v1 round body: round, randomness, signature (previous_signature if chained)."""
        body: dict[str, Any] = {"round": self.round, "randomness": self.randomness.hex()}
        body["signature"] = self.signature.hex()
        if self.previous_signature is not None:
            body["previous_signature"] = self.previous_signature.hex()
        return body

    def v2(self) -> dict[str, Any]:
        """The v2 round body: drand v2 leaves randomness out (it is sha256 of the signature)."""
        body = self.v1()
        del body["randomness"]
        return body


def chain_hash(info: ChainInfo) -> bytes:
    """drand ``chain.Info.Hash``."""
    h = hashlib.sha256(struct.pack(">Iq", info.period, info.genesis_time))
    h.update(info.public_key)
    h.update(info.group_hash)
    if info.beacon_id != DEFAULT_BEACON_ID:
        h.update(info.beacon_id.encode())
    return h.digest()


def group_hash(public_key: bytes, genesis_time: int) -> bytes:
    """Our chain's group hash (drand hashes its group file; we have one signer): sha256 over
    a tag, the public key and the genesis time. Also the chained scheme's genesis seed."""
    return hashlib.sha256(_GROUP_TAG + public_key + struct.pack(">q", genesis_time)).digest()


def current_round(now: float, genesis_time: int, period: int) -> int:
    """The newest round emitted at ``now``: 0 before genesis (drand ``CurrentRound``)."""
    if now < genesis_time:
        return 0
    return math.floor((now - genesis_time) / period) + 1


def next_round(now: float, genesis_time: int, period: int) -> tuple[int, int]:
    """The next round after ``now`` and its emission time (drand ``NextRound``)."""
    upcoming = current_round(now, genesis_time, period) + 1
    return upcoming, round_time(upcoming, genesis_time, period)


def round_time(round_: int, genesis_time: int, period: int) -> int:
    """When round ``round_`` (≥ 1) is emitted."""
    return genesis_time + (round_ - 1) * period


def message(scheme: str, round_: int, previous_signature: bytes | None = None) -> bytes:
    """The 32 bytes a round's signature signs."""
    round_bytes = round_.to_bytes(8, "big")
    if scheme == CHAINED:
        if previous_signature is None:
            raise ValueError("a chained round signs its previous signature")
        return hashlib.sha256(previous_signature + round_bytes).digest()
    return hashlib.sha256(round_bytes).digest()


def randomness(signature: bytes) -> bytes:
    """A round's randomness."""
    return hashlib.sha256(signature).digest()


def secret_scalar(material: bytes) -> Scalar:
    """The secret key from ≥ 64 bytes of key material, reduced modulo the group order."""
    if len(material) < _SCALAR_BYTES:
        raise ValueError("a drand secret needs 64 bytes of key material")
    secret = Scalar.from_be_bytes_mod_order(material[:_SCALAR_BYTES])
    if secret.is_zero():
        raise ValueError("the key material reduces to zero")
    return secret


def public_key(scheme: str, secret: Scalar) -> bytes:
    """The compressed public key: on G2 for unchained-g1, on G1 for chained."""
    if scheme == CHAINED:
        return (G1Point() * secret).to_compressed_bytes()
    return (G2Point() * secret).to_compressed_bytes()


def sign(scheme: str, secret: Scalar, msg: bytes) -> bytes:
    """The compressed BLS signature of ``msg``."""
    if scheme == CHAINED:
        return (G2Point.hash_to_curve(msg, DST_G2) * secret).to_compressed_bytes()
    return (G1Point.hash_to_curve(msg, DST_G1) * secret).to_compressed_bytes()


def verify(scheme: str, public: bytes, msg: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the BLS signature of ``msg`` under ``public``."""
    try:
        if scheme == CHAINED:
            pk1, sig2 = (
                G1Point.from_compressed_bytes(public),
                G2Point.from_compressed_bytes(signature),
            )
            hashed2 = G2Point.hash_to_curve(msg, DST_G2)
            return bool(GT.pairing(pk1, hashed2) == GT.pairing(G1Point(), sig2))
        pk2, sig1 = G2Point.from_compressed_bytes(public), G1Point.from_compressed_bytes(signature)
        hashed1 = G1Point.hash_to_curve(msg, DST_G1)
        return bool(GT.pairing(hashed1, pk2) == GT.pairing(sig1, G2Point()))
    except (ValueError, TypeError):
        return False
