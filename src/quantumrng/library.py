"""The library front end: ``token_bytes`` and friends, and ``QuantumRandom``.

Like CPython's ``secrets`` module, a thin safe layer over one hidden engine,
built on first use from the node's settings (``QRNG_*`` environment or
config file). The pool is harvested on demand when it is empty.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from typing import TypeVar

from quantumrng import formats
from quantumrng.engine import Engine

__all__ = [
    "QuantumRandom",
    "choice",
    "default_engine",
    "randbelow",
    "token_bytes",
    "token_hex",
    "token_urlsafe",
]

T = TypeVar("T")
DEFAULT_ENTROPY = 32  # bytes, as in CPython's secrets

_lock = threading.Lock()
_engine: Engine | None = None


def default_engine() -> Engine:
    """Return the process-wide engine, building its node on first use."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                from quantumrng.node import Node

                _engine = Node().engine
    return _engine


def token_bytes(nbytes: int | None = None) -> bytes:
    """Return a random byte string of ``nbytes`` bytes (default 32)."""
    return default_engine().random_bytes(DEFAULT_ENTROPY if nbytes is None else nbytes)


def token_hex(nbytes: int | None = None) -> str:
    """Return a random text string in hexadecimal, two digits per byte."""
    return token_bytes(nbytes).hex()


def token_urlsafe(nbytes: int | None = None) -> str:
    """Return a random URL-safe base64 text string of ``nbytes`` random bytes."""
    return base64.urlsafe_b64encode(token_bytes(nbytes)).rstrip(b"=").decode("ascii")


def randbelow(exclusive_upper_bound: int) -> int:
    """Return a random int in the range [0, n)."""
    if exclusive_upper_bound <= 0:
        raise ValueError("Upper bound must be positive.")
    return formats.randbelow(default_engine().random_bytes, exclusive_upper_bound)


def choice(seq: Sequence[T]) -> T:
    """Return a random element from a non-empty sequence."""
    if not seq:
        raise IndexError("Cannot choose from an empty sequence")
    return seq[randbelow(len(seq))]


class QuantumRandom(formats.BytesRandom):
    """A ``random.Random`` whose every draw comes from the QuantumRNG engine.

    Like ``random.SystemRandom`` it has no state to seed, save or restore.
    """

    def __init__(self, engine: Engine | None = None) -> None:
        self._engine = engine
        super().__init__()

    def _bytes(self, n: int) -> bytes:
        engine = self._engine if self._engine is not None else default_engine()
        return engine.random_bytes(n)
