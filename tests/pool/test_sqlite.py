"""The SQLite engine's own promises: file modes, WAL, secure delete, locking, threads."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantumrng.errors import ConfigError, EntropyUnavailable
from quantumrng.pool import SqlitePool
from tests.blocks import make_blocks


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "pool.sqlite3"


@pytest.fixture
def pool(path: Path) -> Iterator[SqlitePool]:
    pool = SqlitePool(path)
    yield pool
    pool.close()


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection to inspect the file behind the pool's back."""
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


def test_file_and_wal_are_owner_only_even_with_a_lax_umask(path: Path) -> None:
    old = os.umask(0o000)
    try:
        pool = SqlitePool(path)
        pool.put(make_blocks(2))
    finally:
        os.umask(old)
    try:
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
    finally:
        pool.close()


def test_connection_settings(pool: SqlitePool) -> None:
    conn = pool._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_taken_bytes_are_erased_from_the_file(path: Path, pool: SqlitePool) -> None:
    kept, gone = make_blocks(20), make_blocks(20)
    pool.put(kept + gone)
    pool.take(20)  # the oldest: ``kept``'s blocks
    pool.close()
    with raw(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    wal = Path(f"{path}-wal")
    content = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert not any(b.data in content for b in kept)
    assert all(b.data in content for b in gone)


def test_harvest_rows_go_with_their_last_block(path: Path, pool: SqlitePool) -> None:
    a, b = make_blocks(2), make_blocks(2)
    pool.put(a + b)
    pool.take(3)
    with raw(path) as conn:
        rows = conn.execute("SELECT harvest_id FROM harvests").fetchall()
    assert rows == [(b[0].provenance.harvest_id,)]


def test_contents_survive_reopening(path: Path) -> None:
    blocks = make_blocks(4)
    first = SqlitePool(path)
    first.put(blocks)
    first.take(1)
    first.close()
    second = SqlitePool(path)
    try:
        assert second.level().blocks == 3
        assert second.recent() == [(blocks[0].provenance, 3)]
        assert second.take(3) == blocks[1:]
    finally:
        second.close()


def test_take_waits_for_a_writer_instead_of_failing(path: Path, pool: SqlitePool) -> None:
    pool.put(make_blocks(2))
    holder = raw(path)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, holder.execute, args=("COMMIT",))
    release.start()
    started = time.monotonic()
    try:
        assert len(pool.take(2)) == 2
    finally:
        release.join()
        holder.close()
    assert time.monotonic() - started >= 0.25


def test_a_short_take_leaves_the_file_unchanged(path: Path, pool: SqlitePool) -> None:
    pool.put(make_blocks(2))
    with raw(path) as conn:
        before = conn.execute("SELECT id, data FROM blocks").fetchall()
    with pytest.raises(EntropyUnavailable):
        pool.take(3)
    with raw(path) as conn:
        assert conn.execute("SELECT id, data FROM blocks").fetchall() == before


def test_each_thread_gets_its_own_connection_closed_after_it_ends(pool: SqlitePool) -> None:
    together = threading.Barrier(4)
    seen: list[object] = []

    def grab() -> None:
        seen.append(pool._conn())
        pool.level()
        together.wait(timeout=5)

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 4
    assert len(pool._connections) == 5  # the four and this thread's
    worker = threading.Thread(target=pool.level)
    worker.start()
    worker.join()  # opening its connection closed the four of the ended threads
    assert len(pool._connections) == 2


def test_unopenable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        SqlitePool(tmp_path / "missing" / "pool.sqlite3")
    assert "missing" in str(info.value)


def test_foreign_schema_version_is_refused(path: Path) -> None:
    with raw(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigError):
        SqlitePool(path)
