"""The drand chain's secret and genesis time: one owner-only file, ``<data_dir>/drand/chain.key``.

The file holds 64 bytes of key material (reduced to the BLS secret scalar by
``chain.secret_scalar``) and the genesis time (8 bytes, big-endian seconds), both
fixed when the file is made, on the first request of any worker: the material is
the node's DRBG output with prediction resistance (a fresh pool block) XORed with
64 bytes of OS entropy, so neither the quantum provider nor the kernel alone knows
the key. ``keyfiles.create_secret_file`` links the file into place atomically, so
workers starting together agree on one key and one genesis: whoever loses the race
reads the winner's file.

Nodes that share a pool's store (Redis, or one SQLite pool) serve one chain: the key
material and genesis are kept in the pool record ``drand:key``, sealed with AES-256-GCM
under a key derived from the node key (which every such node shares and which never
enters the store), so a store reader learns nothing and a store writer cannot substitute
a key. The first node to need the chain makes it (or publishes the file it already has)
while holding the pool lease ``drand:key``; the others wait for the record and copy it to
their own file. A record that does not open under this node's key is refused: a chain
is never forked silently.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from py_arkworks_bls12381 import Scalar

from quantumrng.drand.chain import secret_scalar
from quantumrng.errors import ConfigError, Unavailable
from quantumrng.keyfiles import create_secret_file, read_secret_file
from quantumrng.pool.base import Pool
from quantumrng.pool.integrity import decrypt_record, encrypt_record

__all__ = [
    "KEY_FILE",
    "SHARED_RECORD",
    "ChainSecret",
    "load_chain_secret",
    "open_shared",
    "seal_shared",
]

log = logging.getLogger(__name__)

KEY_FILE = Path("drand") / "chain.key"  # below data_dir
_MATERIAL_BYTES = 64
_FILE_BYTES = _MATERIAL_BYTES + 8  # material, genesis time (int64 big-endian)
SHARED_RECORD = "drand:key"  # the pool record (and lease) of the deployment's chain key
_LEASE_SECONDS = 30.0  # the maker's lease while it makes and publishes the key
_WAIT_SECONDS = 20.0  # longest a node waits for another node's key
_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class ChainSecret:
    """The chain's BLS secret (never in a repr) and its genesis time."""

    secret: Scalar = field(repr=False)
    genesis_time: int


def _parse(data: bytes, path: Path) -> ChainSecret:
    if len(data) != _FILE_BYTES:
        raise ConfigError(f"the drand key file {path} is not {_FILE_BYTES} bytes")
    try:
        secret = secret_scalar(data[:_MATERIAL_BYTES])
    except ValueError:
        raise ConfigError(f"the drand key file {path} holds no usable key") from None
    return ChainSecret(secret, int.from_bytes(data[_MATERIAL_BYTES:], "big", signed=True))


_PURPOSE = b"quantumrng drand chain key"


def seal_shared(pool_key: bytes, payload: bytes) -> bytes:
    """The key file's bytes sealed (AES-256-GCM, bound to the record's name) for the pool."""
    return encrypt_record(pool_key, _PURPOSE, payload, SHARED_RECORD.encode())


def open_shared(pool_key: bytes, sealed: bytes) -> bytes | None:
    """What :func:`seal_shared` sealed, or None when it does not open under ``pool_key``."""
    payload = decrypt_record(pool_key, _PURPOSE, sealed, SHARED_RECORD.encode())
    return payload if payload is not None and len(payload) == _FILE_BYTES else None


def _made(draw: Callable[[int], bytes], now: Callable[[], float]) -> bytes:
    drawn = draw(_MATERIAL_BYTES)
    material = bytes(a ^ b for a, b in zip(drawn, os.urandom(_MATERIAL_BYTES), strict=True))
    return material + math.floor(now()).to_bytes(8, "big")


def _shared(pool: Pool, pool_key: bytes) -> bytes | None:
    sealed = pool.read_record(SHARED_RECORD)
    if sealed is None:
        return None
    payload = open_shared(pool_key, sealed)
    if payload is None:
        raise ConfigError(
            "the drand chain key in the pool's store does not open under this node's key "
            "(every node sharing the store needs the same pool_key_file)"
        )
    return payload


def _publish(pool: Pool, pool_key: bytes, holder: str, local: Callable[[], bytes]) -> bytes:
    """The deployment's key: the record if there is one, else ``local()`` published
    under the lease ``drand:key`` (waiting for another node that holds it)."""
    deadline = time.monotonic() + _WAIT_SECONDS
    while True:
        payload = _shared(pool, pool_key)
        if payload is not None:
            return payload
        lease = pool.acquire_lease(SHARED_RECORD, holder, _LEASE_SECONDS)
        if lease is not None:
            try:
                payload = _shared(pool, pool_key)
                if payload is None:
                    payload = local()
                    pool.write_record(SHARED_RECORD, seal_shared(pool_key, payload))
                    log.info("published the drand chain key to the pool's store")
                return payload
            finally:
                pool.release_lease(lease)
        if time.monotonic() >= deadline:
            raise Unavailable("another node is making the drand chain key; try again")
        time.sleep(_POLL_SECONDS)


def load_chain_secret(
    data_dir: Path,
    draw: Callable[[int], bytes],
    now: Callable[[], float] = time.time,
    *,
    pool: Pool | None = None,
    pool_key: bytes = b"",
    holder: str = "",
) -> ChainSecret:
    """The chain secret, made on first use with ``draw(64)`` (the DRBG) mixed with OS
    entropy and a genesis time of now (whole seconds).

    Without ``pool`` it is ``data_dir``'s own. With it, it is the deployment's: the
    sealed record in the pool's store (published from this node's file, or made, when
    there is none yet), copied to ``data_dir``; a file that differs from the record is
    left alone and the record is served, with a warning.
    """
    path = data_dir / KEY_FILE

    def local() -> bytes:
        if not path.exists() and create_secret_file(path, _made(draw, now), "drand key"):
            log.info("created the drand chain key %s", path)
        return read_secret_file(path, "drand key", limit=_FILE_BYTES)

    if pool is None:
        return _parse(local(), path)
    payload = _publish(pool, pool_key, holder, local)
    if not path.exists():
        create_secret_file(path, payload, "drand key")
    elif read_secret_file(path, "drand key", limit=_FILE_BYTES) != payload:
        log.warning("%s differs from the deployment's drand key; serving the shared one", path)
    return _parse(payload, path)
