"""SQLite pool engine: the embedded default, one file shared by the processes of a node.

Implements the pool stage of docs/ARCHITECTURE.md ("a block is taken exactly once").

Guarantees and the choices behind them:

- **Exactly once.** ``take`` runs ``BEGIN IMMEDIATE`` (the write lock), selects
  the oldest ``n`` blocks, deletes exactly them and commits; another taker
  waits on the lock (``busy_timeout``) instead of failing, then sees the rows
  gone. Short of ``n`` blocks, it rolls back: all or nothing.
- **Durability.** WAL journal with ``synchronous=FULL``: every commit fsyncs the
  WAL. ``NORMAL`` would survive a killed process but may roll back the last
  commits on power loss, and a rolled-back take would hand out again blocks
  that were already served. One fsync per put/take is cheap next to that.
- **Erasure.** ``secure_delete=ON`` zeroes a taken block's bytes in the
  database pages. Until the WAL is checkpointed and recycled, older WAL frames
  may still hold them; the file and its WAL are created mode 0600.
- **Provenance history.** A harvest row is deleted with its last block, so
  the table only describes blocks still in the pool; consumed provenance
  travels with the taken blocks, not in the file.
- **Threads and forks.** One connection per thread of each process, never
  one inherited through ``fork``
  (:class:`~quantumrng.storage.sqlite.ThreadConnections`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from quantumrng.block import Block
from quantumrng.errors import ConfigError, EntropyUnavailable, Unavailable
from quantumrng.pool._common import (
    check_limit,
    check_take,
    dump_provenance,
    group_harvests,
    load_provenance,
)
from quantumrng.pool.base import PoolLevel
from quantumrng.provenance import Provenance
from quantumrng.storage.errors import translate_errors
from quantumrng.storage.sqlite import ThreadConnections, connect

__all__ = ["DEFAULT_TIMEOUT", "SqlitePool"]

DEFAULT_TIMEOUT = 10.0  # seconds a writer waits for the lock before Unavailable
SCHEMA_VERSION = 1
_STORE = "the SQLite pool"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS harvests (
        harvest_id TEXT PRIMARY KEY,
        source     TEXT NOT NULL,
        provenance TEXT NOT NULL  -- canonical JSON of Provenance.to_dict()
    )""",
    """CREATE TABLE IF NOT EXISTS blocks (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- put order, never reused
        harvest_id    TEXT NOT NULL REFERENCES harvests(harvest_id),
        source        TEXT NOT NULL,  -- the harvest's, copied for the filtered take
        data          BLOB NOT NULL,
        credited_bits INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS blocks_by_source ON blocks(source, id)",
    "CREATE INDEX IF NOT EXISTS blocks_by_harvest ON blocks(harvest_id)",
)


class SqlitePool:
    """A :class:`~quantumrng.pool.base.Pool` in one SQLite file."""

    def __init__(self, path: Path | str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._path = Path(path)
        self._timeout = timeout
        self._closed = False
        self._connections = ThreadConnections(self._path, self._connect)
        self._create_file()
        try:
            with translate_errors(_STORE), self._transaction() as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, SCHEMA_VERSION):
                    raise ConfigError(f"pool file {self._path} has unknown schema {version}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"SqlitePool({str(self._path)!r}, {state})"

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # --- connections ----------------------------------------------------------

    def _create_file(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open pool file {self._path}: {exc.strerror}") from None
        os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self._path, timeout=self._timeout)
        try:
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            if conn.execute("PRAGMA secure_delete = ON").fetchone()[0] != 1:
                raise ConfigError("this SQLite build cannot enable secure_delete")
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal" and conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                raise ConfigError(f"cannot switch pool file {self._path} to WAL mode")
        except BaseException:
            conn.close()
            raise
        return conn

    def _conn(self) -> sqlite3.Connection:
        """Return this thread's connection, opening one in a new thread or process."""
        if self._closed:
            raise Unavailable("the entropy pool is closed")
        return self._connections.get()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the write lock from the first statement; roll back on any error."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # --- Pool -----------------------------------------------------------------

    def put(self, blocks: Sequence[Block]) -> None:
        """Add blocks in one durable transaction."""
        groups = group_harvests(blocks)
        if not groups:
            return
        with translate_errors(_STORE), self._transaction() as conn:
            conn.executemany(
                "INSERT INTO harvests (harvest_id, source, provenance) VALUES (?, ?, ?)"
                " ON CONFLICT (harvest_id) DO NOTHING",
                [(hid, prov.source, dump_provenance(prov)) for hid, prov in groups.items()],
            )
            sources = {
                hid: conn.execute(
                    "SELECT source FROM harvests WHERE harvest_id = ?", (hid,)
                ).fetchone()[0]
                for hid in groups
            }
            conn.executemany(
                "INSERT INTO blocks (harvest_id, source, data, credited_bits) VALUES (?, ?, ?, ?)",
                [
                    (
                        b.provenance.harvest_id,
                        sources[b.provenance.harvest_id],
                        b.data,
                        b.credited_bits,
                    )
                    for b in blocks
                ],
            )

    def take(self, n: int, *, source: str | None = None) -> list[Block]:
        """Remove and return the ``n`` oldest blocks (of ``source``), or none at all."""
        check_take(n, source)
        only = "" if source is None else " AND b.source = ?"
        params: tuple[str, ...] = () if source is None else (source,)
        with translate_errors(_STORE), self._transaction() as conn:
            rows = conn.execute(
                "SELECT b.id, b.harvest_id, b.data, b.credited_bits, h.provenance"
                " FROM blocks AS b JOIN harvests AS h ON h.harvest_id = b.harvest_id"
                f" WHERE 1{only} ORDER BY b.id LIMIT ?",
                (*params, n),
            ).fetchall()
            if len(rows) < n:
                raise EntropyUnavailable(f"the pool holds {len(rows)} of the {n} blocks asked for")
            deleted = conn.execute(
                f"DELETE FROM blocks AS b WHERE b.id <= ?{only}", (rows[-1][0], *params)
            ).rowcount
            if deleted != n:
                raise Unavailable("the pool changed during a take; nothing was taken")
            touched = list(dict.fromkeys(row[1] for row in rows))
            conn.executemany(
                "DELETE FROM harvests WHERE harvest_id = ?"
                " AND NOT EXISTS (SELECT 1 FROM blocks WHERE blocks.harvest_id = ?)",
                [(hid, hid) for hid in touched],
            )
        provenance: dict[str, Provenance] = {}
        taken: list[Block] = []
        for _id, hid, data, bits, prov_json in rows:
            prov = provenance.get(hid)
            if prov is None:
                prov = provenance[hid] = load_provenance(prov_json)
            taken.append(Block(data=bytes(data), credited_bits=int(bits), provenance=prov))
        return taken

    def level(self) -> PoolLevel:
        """Return blocks, credited bits and blocks per source kind, from one snapshot."""
        with translate_errors(_STORE):
            rows = (
                self._conn()
                .execute("SELECT source, count(*), sum(credited_bits) FROM blocks GROUP BY source")
                .fetchall()
            )
        by_source = {str(kind): int(count) for kind, count, _bits in rows}
        return PoolLevel(
            blocks=sum(by_source.values()),
            credited_bits=sum(int(bits) for _kind, _count, bits in rows),
            by_source=by_source,
        )

    def recent(self, limit: int = 10) -> list[tuple[Provenance, int]]:
        """Return the most recently put harvests still in the pool, newest first."""
        check_limit(limit)
        if limit == 0:
            return []
        with translate_errors(_STORE):
            rows = (
                self._conn()
                .execute(
                    "SELECT h.provenance, count(*), max(b.id) AS newest"
                    " FROM blocks AS b JOIN harvests AS h ON h.harvest_id = b.harvest_id"
                    " GROUP BY b.harvest_id ORDER BY newest DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [(load_provenance(prov), int(left)) for prov, left, _newest in rows]

    def close(self) -> None:
        """Close this process's connections; the file keeps its contents.

        Call it when no other thread is using the pool.
        """
        self._closed = True
        self._connections.close()
