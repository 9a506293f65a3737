"""One table from storage drivers' exceptions to ours, and one context manager applying it.

Every store (the SQLite and Redis pools, the key store, the usage store)
wraps its driver calls in :func:`translate_errors`, so a failing store is
always the same error class with the same kind of message, whatever the
driver: the store fails closed (503) instead of leaking a driver exception.

Messages never carry stored values. SQLite builds its messages from the
schema and its own state, never from bound parameters, so they are quoted
(and chained, for the traceback). A Redis error may echo a command's
arguments (pool bytes) or the server's address, so only its class is named
and the chain is cut.

``redis`` is an optional extra: its classes join the table only once
``redis.exceptions`` is imported, which any Redis error implies.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

from quantumrng.errors import QuantumRNGError, Unavailable

__all__ = ["driver_errors", "translate_errors"]

#: Driver errors whose message may be shown: it never quotes a stored value.
_QUOTED: tuple[type[Exception], ...] = (sqlite3.Error,)

_SQLITE: Mapping[type[Exception], type[QuantumRNGError]] = {sqlite3.Error: Unavailable}


def driver_errors() -> Mapping[type[Exception], type[QuantumRNGError]]:
    """Return our error class for each driver exception class, most specific first."""
    table = dict(_SQLITE)
    redis = sys.modules.get("redis.exceptions")
    if redis is not None:
        table[redis.RedisError] = Unavailable
        table[redis.RedisClusterException] = Unavailable  # not a RedisError
    return MappingProxyType(table)


@contextmanager
def translate_errors(store: str) -> Iterator[None]:
    """Re-raise a driver error as our class, as ``"<store> failed: <detail>"``.

    ``store`` names the store for operators ("the SQLite pool", "the key store
    /path"); it must hold no secret (no credentials, no URL).
    """
    try:
        yield
    except Exception as exc:
        ours = next((cls for kind, cls in driver_errors().items() if isinstance(exc, kind)), None)
        if ours is None:
            raise
        if isinstance(exc, _QUOTED):
            raise ours(f"{store} failed: {exc}") from exc
        raise ours(f"{store} failed: {type(exc).__name__}") from None
