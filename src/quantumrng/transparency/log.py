"""The transparency log: signs results in batches, appends them and beacon pulses,
publishes signed tree heads and answers RFC 9162 proofs.

INTERFACE DRAFT — being implemented (see the module's owner); the signatures
and JSON shapes below are the contract the server and the beacon code use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quantumrng.pool.base import Pool
from quantumrng.signing import KeyRing
from quantumrng.transparency.store import Entry, LedgerStore

__all__ = ["SignRequest", "SignedResult", "TransparencyLog"]


@dataclass(frozen=True)
class SignRequest:
    """What a signed answer signs, before the log numbers and times it."""

    method: str  # the route's format name, e.g. "integers"
    parameters: Mapping[str, Any]  # JSON-safe (big integers as strings), "mode" included
    data: Any  # the answer's "data", as answered
    provenance: Mapping[str, Any]  # the answer's "source"
    hashed_api_key: str  # signed.hash_api_key(key), "" without a key


@dataclass(frozen=True)
class SignedResult:
    """A stored signed result: the ``signed`` object of the answer and where it is."""

    signed: dict[str, Any]  # {"result": {...}, "signature": b64, "algorithm": "Ed25519"}
    serial: int
    key_serial: int
    leaf_index: int


class TransparencyLog:
    """See the module."""

    def __init__(
        self,
        store: LedgerStore,
        keys: KeyRing,
        *,
        pool: Pool | None = None,  # for the lease that elects one head signer
        node: str = "",
        head_seconds: float = 1.0,
        retention_seconds: float = 30 * 86400.0,
    ) -> None:
        self.store = store
        self.keys = keys

    def sign_batch(self, requests: list[SignRequest]) -> list[SignedResult]:
        """Number, time, sign and append ``requests`` in one store append (blocking)."""
        raise NotImplementedError

    async def sign(self, request: SignRequest) -> SignedResult:
        """Sign one request; concurrent calls are appended together (group commit)."""
        raise NotImplementedError

    def append_pulse(
        self, chain_index: int, pulse_index: int, time_ms: int, leaf: bytes, document: bytes
    ) -> Entry:
        """Append a beacon pulse (``leaf``: the bytes its signature covers; ``document``:
        its JSON). Raises ``store.PulseExists`` when that pulse or time is stored."""
        raise NotImplementedError

    def result(self, serial: int) -> dict[str, Any] | None:
        """``{"signed": ..., "log_index": ...}`` of a stored result, None if unknown or pruned."""
        raise NotImplementedError

    def head(self) -> dict[str, Any]:
        """The latest signed tree head:
        ``{"tree_size", "root_hash", "timestamp", "key_id", "signature"}``."""
        raise NotImplementedError

    def inclusion_proof(self, serial: int, tree_size: int | None = None) -> dict[str, Any]:
        """``{"leaf_index", "tree_size", "leaf_hash", "audit_path"}`` (hex)."""
        raise NotImplementedError

    def consistency_proof(self, first: int, second: int) -> dict[str, Any]:
        """``{"first", "second", "proof"}`` (hex)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start integrating appended leaves and signing heads every ``head_seconds``."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop that thread (idempotent)."""
        raise NotImplementedError
