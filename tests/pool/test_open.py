"""``open_engine``: the engine the settings name, in a private data directory;
``open_pool``: the same, always sealed in a ``TaggedPool``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from quantumrng.config import Settings, load_settings
from quantumrng.errors import ConfigError
from quantumrng.pool import (
    MemoryPool,
    Pool,
    RedisPool,
    SqlitePool,
    TaggedPool,
    open_engine,
    open_pool,
)
from tests.blocks import make_blocks
from tests.pool.support import delete_prefix, new_prefix, redis_url


def settings_for(data_dir: Path, **values: object) -> Settings:
    return load_settings(overrides={"data_dir": data_dir, **values}, environ={})


def test_sqlite_creates_a_private_data_dir_and_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "data"
    settings = settings_for(data_dir, pool="sqlite")
    old = os.umask(0o022)
    try:
        pool = open_engine(settings)
    finally:
        os.umask(old)
    try:
        assert isinstance(pool, SqlitePool) and isinstance(pool, Pool)
        assert pool.path == settings.pool_path
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(settings.pool_path.stat().st_mode) == 0o600
    finally:
        pool.close()


def test_sqlite_data_dir_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError):
        open_engine(settings_for(blocker / "data", pool="sqlite"))


def test_memory(tmp_path: Path) -> None:
    pool = open_engine(settings_for(tmp_path, pool="memory"))
    assert isinstance(pool, MemoryPool)
    assert not any(tmp_path.iterdir())


def test_redis_uses_url_and_key_prefix(tmp_path: Path) -> None:
    prefix = new_prefix()
    settings = settings_for(tmp_path, pool="redis", redis_url=redis_url(), redis_key=prefix)
    pool = open_engine(settings)
    try:
        assert isinstance(pool, RedisPool) and pool.prefix == "{" + prefix + "}"
        pool.put(make_blocks(1))
        assert pool.level().blocks == 1
    finally:
        pool.close()
        delete_prefix(prefix)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("engine", ["sqlite", "memory"])
def test_open_pool_always_seals_the_engine(tmp_path: Path, engine: str) -> None:
    settings = settings_for(tmp_path, pool=engine)
    pool = open_pool(settings)
    try:
        assert isinstance(pool, TaggedPool)
        assert (engine == "memory") != settings.pool_key_path.exists()
    finally:
        pool.close()
