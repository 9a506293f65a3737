"""The entropy pool: conditioned blocks waiting to seed the DRBG (low level).

Engines: :class:`SqlitePool` (embedded default), :class:`RedisPool` (shared by
several nodes; needs the ``redis`` extra), :class:`MemoryPool` (tests). Pick
one from settings with :func:`open_pool`; given the node key, it wraps the
engine in a :class:`TaggedPool`, which seals and checks every block
(:mod:`quantumrng.pool.integrity`).
"""

from __future__ import annotations

from quantumrng.config import Settings
from quantumrng.errors import ConfigError
from quantumrng.pool.base import Pool, PoolLevel
from quantumrng.pool.integrity import TaggedPool, load_or_create_key
from quantumrng.pool.memory import MemoryPool
from quantumrng.pool.redis import RedisPool
from quantumrng.pool.sqlite import SqlitePool

__all__ = [
    "MemoryPool",
    "Pool",
    "PoolLevel",
    "RedisPool",
    "SqlitePool",
    "TaggedPool",
    "load_or_create_key",
    "open_pool",
]

DATA_DIR_MODE = 0o700  # the pool file holds secrets: owner only


def open_pool(settings: Settings, *, key: bytes | None = None) -> Pool:
    """Open the pool engine named by ``settings.pool``; with ``key``, inside a ``TaggedPool``."""
    engine = _open_engine(settings)
    if key is None:
        return engine
    try:
        return TaggedPool(engine, key)
    except BaseException:
        engine.close()
        raise


def _open_engine(settings: Settings) -> Pool:
    if settings.pool == "sqlite":
        try:
            settings.data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create data_dir {settings.data_dir}: {exc.strerror}"
            ) from None
        return SqlitePool(settings.pool_path)
    if settings.pool == "redis":
        return RedisPool(settings.redis_url, prefix=settings.redis_key)
    if settings.pool == "memory":
        return MemoryPool()
    raise ConfigError(f"unknown pool engine {settings.pool!r}")
