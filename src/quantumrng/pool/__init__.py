"""The entropy pool: conditioned blocks waiting to seed the DRBG (low level).

Engines: :class:`SqlitePool` (embedded default), :class:`RedisPool` (shared by
several nodes; needs the ``redis`` extra), :class:`MemoryPool` (tests). Pick
one from settings with :func:`open_pool`, which wraps the engine in a
:class:`TaggedPool` under the node key, sealing and checking every block
(:mod:`quantumrng.pool.integrity`): there is no other way to open a pool from
settings. A memory pool has no store outside this process; it gets a key of
its own that no file holds.
"""

from __future__ import annotations

import secrets

from quantumrng.config import Settings
from quantumrng.errors import ConfigError
from quantumrng.pool.base import Pool, PoolLevel
from quantumrng.pool.integrity import KEY_BYTES, TaggedPool, load_or_create_key
from quantumrng.pool.memory import MemoryPool
from quantumrng.pool.redis import RedisPool
from quantumrng.pool.sqlite import SqlitePool
from quantumrng.storage.redis import describe, open_redis

__all__ = [
    "MemoryPool",
    "Pool",
    "PoolLevel",
    "RedisPool",
    "SqlitePool",
    "TaggedPool",
    "load_or_create_key",
    "open_engine",
    "open_pool",
]

DATA_DIR_MODE = 0o700  # the pool file holds secrets: owner only


def open_pool(settings: Settings) -> TaggedPool:
    """Open the pool engine named by ``settings.pool`` inside a ``TaggedPool`` under the
    node key (``settings.pool_key_path``, created if missing)."""
    engine = open_engine(settings)
    try:
        key = (
            secrets.token_bytes(KEY_BYTES)
            if settings.pool == "memory"
            else load_or_create_key(settings.pool_key_path)
        )
        return TaggedPool(engine, key)
    except BaseException:
        engine.close()
        raise


def open_engine(settings: Settings) -> Pool:
    """Open the bare engine named by ``settings.pool``, without tags: for tests and tools
    that inspect what a store holds, never to serve from."""
    if settings.pool == "sqlite":
        try:
            settings.data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create data_dir {settings.data_dir}: {exc.strerror}"
            ) from None
        return SqlitePool(settings.pool_path)
    if settings.pool == "redis":
        return RedisPool(open_redis(settings), prefix=settings.redis_key, name=describe(settings))
    if settings.pool == "memory":
        return MemoryPool()
    raise ConfigError(f"unknown pool engine {settings.pool!r}")
