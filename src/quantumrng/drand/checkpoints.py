"""Checkpoints of a chained drand chain, kept in ``<data_dir>/drand/chained.<hash>``.

A chained round needs its predecessor's signature, so without checkpoints a process
would walk the chain from genesis after every start (about 4 ms a round: a day of
3-second rounds is two minutes). Record ``k`` of the file, at offset ``k * 192``,
holds the signatures of rounds ``k * N - 1`` and ``k * N`` (``N`` the checkpoint
interval). Every process computes the same bytes for a record (BLS signatures are
deterministic), so workers writing the same record at once cannot disagree: no lock,
no coordination. The file is not trusted: a record is used only if its second
signature verifies over the first (one pairing check), so a damaged or altered file
costs a longer walk, never a wrong round. Signatures are public; nothing secret is
written, and a record is written only once its round has been emitted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from quantumrng.errors import ConfigError

__all__ = ["RECORD_BYTES", "CheckpointFile"]

SIGNATURE_BYTES = 96  # a compressed G2 signature
RECORD_BYTES = 2 * SIGNATURE_BYTES


class CheckpointFile:
    """Fixed-size records of (previous signature, signature), read and written in place."""

    def __init__(self, path: Path, valid: Callable[[int, bytes, bytes], bool]) -> None:
        """``valid(k, previous, signature)`` says whether record ``k`` may be used."""
        self.path = path
        self._valid = valid
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open the drand checkpoints {path}: {exc.strerror}") from None

    def read(self, k: int) -> tuple[bytes, bytes] | None:
        """Record ``k`` if it is there and valid."""
        try:
            data = os.pread(self._fd, RECORD_BYTES, k * RECORD_BYTES)
        except OSError:
            return None
        if len(data) != RECORD_BYTES or not any(data):
            return None
        previous, signature = data[:SIGNATURE_BYTES], data[SIGNATURE_BYTES:]
        return (previous, signature) if self._valid(k, previous, signature) else None

    def write(self, k: int, previous: bytes, signature: bytes) -> None:
        """Store record ``k`` (a failure to write only costs a later walk)."""
        if len(previous) != SIGNATURE_BYTES or len(signature) != SIGNATURE_BYTES:
            raise ValueError("a checkpoint holds two G2 signatures")
        try:
            os.pwrite(self._fd, previous + signature, k * RECORD_BYTES)
        except OSError:
            return

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)
