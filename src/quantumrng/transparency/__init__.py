"""Verifiable randomness: the store of signed results and the RFC 9162 transparency log.

``open_ledger(settings)`` opens the deployment's ledger store beside its pool:
SQLite ``<data_dir>/ledger.sqlite3``, Redis under ``{redis_key}``, or memory.
"""

from __future__ import annotations

from quantumrng.config import Settings
from quantumrng.errors import ConfigError
from quantumrng.storage.redis import describe, open_redis
from quantumrng.transparency.redis import RedisLedger
from quantumrng.transparency.sqlite import SqliteLedger
from quantumrng.transparency.store import LedgerStore, MemoryLedger

__all__ = ["LedgerStore", "MemoryLedger", "RedisLedger", "SqliteLedger", "open_ledger"]


def open_ledger(settings: Settings) -> LedgerStore:
    """The ledger store of ``settings.pool``'s backend: memory (this process only), the
    SQLite file ``settings.ledger_path``, or Redis under the pool's ``{redis_key}``."""
    if settings.pool == "memory":
        return MemoryLedger()
    if settings.pool == "sqlite":
        return SqliteLedger(settings.ledger_path)
    if settings.pool == "redis":
        return RedisLedger(open_redis(settings), prefix=settings.redis_key, name=describe(settings))
    raise ConfigError(f"no ledger store for pool {settings.pool!r}")
