"""ThreadConnections: one connection per thread and process, none used or closed across fork."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantumrng.errors import ConfigError, Unavailable
from quantumrng.storage import sqlite as storage_sqlite
from quantumrng.storage.sqlite import ThreadConnections, connect, open_private

#: (id of the connection, pid) of every explicit ``close()`` of a :class:`Recording`.
CLOSED: list[tuple[int, int]] = []


class Recording(sqlite3.Connection):
    """A connection that notes who closes it (a garbage-collected one is not noted)."""

    def close(self) -> None:
        CLOSED.append((id(self), os.getpid()))
        super().close()


def is_open(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return False
    return True


@pytest.fixture
def conns(tmp_path: Path) -> Iterator[ThreadConnections]:
    path = tmp_path / "db.sqlite3"

    def opened() -> sqlite3.Connection:
        return sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, factory=Recording
        )

    keeper = ThreadConnections(path, opened)
    keeper.get().execute("CREATE TABLE IF NOT EXISTS t (pid INTEGER)")
    yield keeper
    keeper.close()


def in_thread(conns: ThreadConnections) -> sqlite3.Connection:
    got: list[sqlite3.Connection] = []
    worker = threading.Thread(target=lambda: got.append(conns.get()))
    worker.start()
    worker.join()
    return got[0]


def test_a_thread_keeps_its_connection(conns: ThreadConnections) -> None:
    assert conns.get() is conns.get()
    assert len(conns) == 1


def test_threads_get_distinct_connections(conns: ThreadConnections) -> None:
    together = threading.Barrier(4)
    seen: list[sqlite3.Connection] = []

    def grab() -> None:
        seen.append(conns.get())
        together.wait(timeout=5)

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in [*seen, conns.get()]}) == 5


def test_a_dead_threads_connection_is_closed(conns: ThreadConnections) -> None:
    dead = in_thread(conns)
    assert is_open(dead)
    in_thread(conns)  # opening another prunes the ended thread's
    assert not is_open(dead)
    assert (id(dead), os.getpid()) in CLOSED
    assert len(conns) == 2  # this thread's and the last worker's


def test_close_closes_every_thread_and_get_opens_anew(conns: ThreadConnections) -> None:
    mine, other = conns.get(), in_thread(conns)
    conns.close()
    assert not is_open(mine) and not is_open(other)
    assert len(conns) == 0
    fresh = conns.get()
    assert fresh is not mine and is_open(fresh)


def _child(
    conns: ThreadConnections, inherited: sqlite3.Connection, out: multiprocessing.Queue[str]
) -> None:
    try:
        before = len(conns)
        conn = conns.get()
        conn.execute("INSERT INTO t VALUES (?)", (os.getpid(),))
        in_thread(conns)
        in_thread(conns)
        conns.close()
        checks = {
            "nothing inherited is tracked": before == 0,
            "a new connection": conn is not inherited,
            "the inherited one is kept referenced": any(
                c is inherited for c in storage_sqlite._INHERITED
            ),
            "the inherited one is never closed": all(
                pid != os.getpid() for _id, pid in CLOSED if _id == id(inherited)
            ),
        }
        failed = [name for name, ok in checks.items() if not ok]
        out.put(", ".join(failed) or "ok")
    except BaseException as exc:
        out.put(repr(exc))


def test_a_forked_child_opens_its_own_and_never_closes_the_inherited(
    conns: ThreadConnections,
) -> None:
    inherited = conns.get()
    inherited.execute("BEGIN IMMEDIATE")
    inherited.execute("INSERT INTO t VALUES (0)")
    inherited.execute("COMMIT")
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[str] = ctx.Queue()
    child = ctx.Process(target=_child, args=(conns, inherited, out))
    child.start()
    assert out.get(timeout=30) == "ok"
    child.join(timeout=30)
    assert child.exitcode == 0
    assert conns.get() is inherited and is_open(inherited)
    pids = [row[0] for row in inherited.execute("SELECT pid FROM t ORDER BY rowid")]
    assert pids == [0, child.pid]


def test_connect_is_autocommit_with_a_busy_timeout(tmp_path: Path) -> None:
    conn = connect(tmp_path / "db.sqlite3", timeout=2.5)
    try:
        assert conn.isolation_level is None
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    finally:
        conn.close()


def test_open_private_makes_an_owner_only_wal_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "db.sqlite3"
    conns = open_private(
        path,
        "CREATE TABLE IF NOT EXISTS t (x);",
        what="the test store",
        pragmas=("synchronous=NORMAL",),
        timeout=1.0,
    )
    try:
        conn = conns.get()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    finally:
        conns.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0


def test_open_private_names_the_store_and_file_when_it_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open the test store"):
        open_private(tmp_path, "", what="the test store", pragmas=(), timeout=1.0)
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(b"this is not an SQLite database " * 256)
    with pytest.raises(Unavailable, match="not a database") as err:
        open_private(damaged, "CREATE TABLE t (x);", what="the test store", pragmas=(), timeout=1.0)
    assert err.value.message.startswith(f"cannot open the test store {damaged}: ")
