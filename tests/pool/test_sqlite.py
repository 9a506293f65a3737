"""The SQLite engine's own promises: file modes, WAL, erasure, locking, threads, damage."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quantumrng.errors import ConfigError, EntropyUnavailable, Unavailable
from quantumrng.pool import SqlitePool
from tests.blocks import make_blocks
from tests.cli.support import qrng
from tests.server.test_keys import damage
from tests.server.test_ops import damage_table


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


# -- erasure: the WAL ------------------------------------------------------------------------


def test_after_a_take_the_wal_holds_no_taken_bytes(path: Path, pool: SqlitePool) -> None:
    taken, kept = make_blocks(20), make_blocks(20)
    pool.put(taken + kept)
    wal = Path(f"{path}-wal")
    assert any(b.data in wal.read_bytes() for b in taken)  # the put's frames
    pool.take(20)
    held = wal.read_bytes() if wal.exists() else b""
    assert not any(b.data in held for b in taken)
    assert not any(b.data in path.read_bytes() for b in taken)


def test_a_take_seeding_the_drbg_is_erased_alike(path: Path, pool: SqlitePool) -> None:
    blocks = make_blocks(3)
    pool.put(blocks)
    pool.take(1, source="os")
    wal = Path(f"{path}-wal")
    content = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert blocks[0].data not in content
    assert all(b.data in content for b in blocks[1:])


# -- damage ----------------------------------------------------------------------------------


def test_opening_a_damaged_file_fails_with_one_line_naming_it(path: Path) -> None:
    pool = SqlitePool(path)
    pool.put(make_blocks(50))
    pool.close()
    damage_table(path, "harvests")
    with pytest.raises(Unavailable) as err:
        SqlitePool(path)
    message = err.value.message
    assert message.startswith(f"the entropy pool {path} is damaged: ") and "\n" not in message


def test_opening_a_file_that_is_not_a_database_fails_with_one_line(path: Path) -> None:
    damage(path)
    with pytest.raises(Unavailable) as err:
        SqlitePool(path)
    assert err.value.message == f"the entropy pool {path} is damaged: file is not a database"


def in_new_thread(call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a new thread (a new connection, with no cached pages); return its error."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return errors[0] if errors else None


def test_damage_found_later_stops_every_call(path: Path, pool: SqlitePool) -> None:
    pool.put(make_blocks(50))
    assert pool.take(1)
    damage_table(path, "harvests")
    error = in_new_thread(lambda: pool.take(1))
    assert isinstance(error, Unavailable)
    assert error.message == "the entropy pool is damaged: database disk image is malformed"
    for call in (pool.level, pool.recent, lambda: pool.take(1), lambda: pool.put(make_blocks(1))):
        with pytest.raises(Unavailable, match="the entropy pool is damaged") as err:
            call()
        assert "\n" not in err.value.message and str(path) not in err.value.message


def test_provenance_that_does_not_decode_is_damage_in_one_line(
    path: Path, pool: SqlitePool
) -> None:
    blocks = make_blocks(2)
    pool.put(blocks)
    with raw(path) as conn:
        conn.execute("UPDATE harvests SET provenance = CAST(X'7bff22fe' AS TEXT)")
    for call in (pool.recent, lambda: pool.take(1)):
        with pytest.raises(Unavailable) as err:
            call()
        assert "does not decode" in err.value.message and "\n" not in err.value.message
        assert "\\x" not in err.value.message and "\ufffd" not in err.value.message
    with pytest.raises(Unavailable, match="damaged"):
        pool.level()


def test_a_damaged_pool_is_one_cli_line_and_exit_1(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    damage(data / "pool.sqlite3")
    for command in ("pool", "status"):
        done = qrng(tmp_path, command)
        lines = done.stderr.decode().splitlines()
        assert done.returncode == 1, done.stderr
        assert lines == [
            f"qrng: error: the entropy pool {data / 'pool.sqlite3'} is damaged: "
            "file is not a database"
        ]
