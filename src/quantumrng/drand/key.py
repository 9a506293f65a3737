"""The drand chain's secret and genesis time: one owner-only file, ``<data_dir>/drand/chain.key``.

The file holds 64 bytes of key material (reduced to the BLS secret scalar by
``chain.secret_scalar``) and the genesis time (8 bytes, big-endian seconds), both
fixed when the file is made, on the first request of any worker: the material is
the node's DRBG output with prediction resistance (a fresh pool block) XORed with
64 bytes of OS entropy, so neither the quantum provider nor the kernel alone knows
the key. ``keyfiles.create_secret_file`` links the file into place atomically, so
workers starting together agree on one key and one genesis: whoever loses the race
reads the winner's file.
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
from quantumrng.errors import ConfigError
from quantumrng.keyfiles import create_secret_file, read_secret_file

__all__ = ["KEY_FILE", "ChainSecret", "load_chain_secret"]

log = logging.getLogger(__name__)

KEY_FILE = Path("drand") / "chain.key"  # below data_dir
_MATERIAL_BYTES = 64
_FILE_BYTES = _MATERIAL_BYTES + 8  # material, genesis time (int64 big-endian)


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


def load_chain_secret(
    data_dir: Path, draw: Callable[[int], bytes], now: Callable[[], float] = time.time
) -> ChainSecret:
    """The chain secret of ``data_dir``, made on first use with ``draw(64)`` (the DRBG)
    mixed with OS entropy and a genesis time of now (whole seconds)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        drawn = draw(_MATERIAL_BYTES)
        material = bytes(a ^ b for a, b in zip(drawn, os.urandom(_MATERIAL_BYTES), strict=True))
        genesis = math.floor(now())
        if create_secret_file(path, material + genesis.to_bytes(8, "big"), "drand key"):
            log.info("created the drand chain key %s (genesis %d)", path, genesis)
    return _parse(read_secret_file(path, "drand key", limit=_FILE_BYTES), path)
