"""Verifiable randomness: the store of signed results and the RFC 9162 transparency log.

``open_ledger(settings)`` opens the deployment's ledger store beside its pool:
SQLite ``<data_dir>/ledger.sqlite3``, Redis under ``{redis_key}``, or memory.
"""

from __future__ import annotations

from quantumrng.config import Settings
from quantumrng.transparency.store import LedgerStore, MemoryLedger

__all__ = ["LedgerStore", "open_ledger"]


def open_ledger(settings: Settings) -> LedgerStore:
    """The ledger store of ``settings.pool``'s backend."""
    if settings.pool == "memory":
        return MemoryLedger()
    raise NotImplementedError(f"the {settings.pool} ledger store")  # sqlite, redis: next step
