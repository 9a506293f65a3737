"""The ledger store in one SQLite file, ``<data_dir>/ledger.sqlite3``, shared by the
processes of a node (the ``LedgerStore`` of :mod:`quantumrng.transparency.store`).

- **Atomic appends.** :meth:`SqliteLedger.append` runs in one ``BEGIN IMMEDIATE``
  transaction (the write lock): it reads the counters, calls ``make`` once,
  checks the numbering and inserts the entries, their level-0 nodes and their
  pulse rows, then commits. Another writer waits on the lock (``busy_timeout``),
  so ``make`` never needs a second call here and serials stay gap-free across
  processes.
- **One source of truth.** The counters are read from the entries themselves
  (the largest serial, leaf index and key serial, through their indexes); the
  unique indexes on serial, (key hash, key serial), (chain, pulse) and pulse
  time refuse any second writer of a number.
- **Few statements per append.** A batch's counters are one query, its entries and
  leaf hashes a few multi-row inserts (row counts from a fixed set, so their
  statements stay prepared): each statement gives up the GIL while SQLite
  works and must win it back from the event loop, so their number, more than
  their size, sets how long a batch of signed answers takes.
- **Durability.** WAL with ``synchronous=FULL``: a result is answered only once
  its commit is on disk. With ``NORMAL`` a power loss could undo the last
  appends, and their serials would then be signed a second time for other
  results: a client would see the log rewritten.
- **Schema** version 1 in ``PRAGMA user_version``; a file of an unknown version
  is refused (``ConfigError``) rather than written.
- **Threads and forks.** One connection per thread of each process
  (:class:`~quantumrng.storage.sqlite.ThreadConnections`), never one inherited
  through ``fork``.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from quantumrng.errors import ConfigError, Unavailable
from quantumrng.storage.errors import translate_errors
from quantumrng.storage.sqlite import open_private
from quantumrng.transparency.store import Counters, Entry, PulseExists, check_numbering

__all__ = ["DEFAULT_TIMEOUT", "SCHEMA_VERSION", "SqliteLedger"]

DEFAULT_TIMEOUT = 10.0  # seconds a writer waits for the lock before Unavailable
SCHEMA_VERSION = 1
_PRUNE_BATCH = 1000  # results pruned per transaction, so appends wait little
_NODES_BATCH = 400  # (level, index) pairs per query
_RANGE_MIN = 16  # consecutive indexes read with one range query
_PRAGMAS = ("synchronous = FULL",)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS entries (
        leaf_index  INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,      -- result | pulse
        created_at  REAL NOT NULL,
        leaf        BLOB,               -- NULL once pruned
        document    BLOB,               -- NULL once pruned
        leaf_hash   BLOB NOT NULL,
        serial      INTEGER,            -- results
        key_hash    TEXT,               -- results ('' without an API key)
        key_serial  INTEGER,            -- results
        chain_index INTEGER,            -- pulses
        pulse_index INTEGER,            -- pulses
        time_ms     INTEGER             -- pulses
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS entries_by_serial ON entries(serial)"
    " WHERE serial IS NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS entries_by_key ON entries(key_hash, key_serial)"
    " WHERE key_hash IS NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS entries_by_pulse ON entries(chain_index, pulse_index)"
    " WHERE chain_index IS NOT NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS entries_by_time ON entries(time_ms)"
    " WHERE time_ms IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS entries_prunable ON entries(created_at)"
    " WHERE kind = 'result' AND document IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS nodes (
        level INTEGER NOT NULL,
        idx   INTEGER NOT NULL,
        hash  BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS heads (
        tree_size INTEGER PRIMARY KEY,
        document  BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS public_keys (
        key_id   TEXT NOT NULL UNIQUE,  -- rowid: the order first published
        document BLOB NOT NULL
    )""",
)

_COLUMNS = (
    "leaf_index, kind, created_at, leaf, document, leaf_hash, serial, key_hash, key_serial,"
    " chain_index, pulse_index, time_ms"
)
_ROWS_PER_INSERT = 64  # rows of one multi-row INSERT at most (64 x 12 variables)


def _row_counts(total: int) -> list[int]:
    """``total`` split into multi-row insert sizes: 64s, then the binary digits of the
    rest, so at most 7 distinct statements are ever prepared per table."""
    counts = [_ROWS_PER_INSERT] * (total // _ROWS_PER_INSERT)
    rest = total % _ROWS_PER_INSERT
    counts.extend(1 << bit for bit in reversed(range(rest.bit_length())) if rest >> bit & 1)
    return counts


@functools.cache
def _insert_entries(rows: int) -> str:
    return f"INSERT INTO entries ({_COLUMNS}) VALUES " + ", ".join(
        ["(" + ", ".join("?" * 12) + ")"] * rows
    )


@functools.cache
def _insert_leaf_hashes(rows: int) -> str:
    return "INSERT INTO nodes (level, idx, hash) VALUES " + ", ".join(["(0, ?, ?)"] * rows)


@functools.cache
def _insert_nodes(rows: int) -> str:
    return (
        "INSERT INTO nodes (level, idx, hash) VALUES "
        + ", ".join(["(?, ?, ?)"] * rows)
        + " ON CONFLICT (level, idx) DO NOTHING"
    )


@functools.cache
def _counters_query(keys: int) -> str:
    """The next serial, the next leaf index and the last key serial of ``keys`` keys,
    in one query (each through its index)."""
    per_key = ", (SELECT max(key_serial) FROM entries WHERE key_hash = ?)" * keys
    return (
        "SELECT (SELECT max(serial) FROM entries WHERE serial IS NOT NULL),"
        f" (SELECT max(leaf_index) FROM entries){per_key}"
    )


def _ranges(
    keys: Sequence[tuple[int, int]],
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """``keys`` as runs ``(level, first, last)`` of at least ``_RANGE_MIN`` consecutive
    indexes (the new leaves a head integrates: one range query) and the rest."""
    by_level: dict[int, list[int]] = {}
    for level, index in keys:
        by_level.setdefault(level, []).append(index)
    runs: list[tuple[int, int, int]] = []
    rest: list[tuple[int, int]] = []
    for level, indexes in by_level.items():
        indexes.sort()
        start = 0
        for end in range(1, len(indexes) + 1):
            if end < len(indexes) and indexes[end] == indexes[end - 1] + 1:
                continue
            if end - start >= _RANGE_MIN:
                runs.append((level, indexes[start], indexes[end - 1]))
            else:
                rest.extend((level, index) for index in indexes[start:end])
            start = end
    return runs, rest


def _insert_all(
    conn: sqlite3.Connection, statement: Callable[[int], str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` with the multi-row statements of :func:`_row_counts`."""
    start = 0
    for count in _row_counts(len(rows)):
        values = [v for row in rows[start : start + count] for v in row]
        conn.execute(statement(count), values)
        start += count


_BY_TIME = {
    "at": "time_ms = ?",
    "before": "time_ms < ? ORDER BY time_ms DESC LIMIT 1",
    "after": "time_ms > ? ORDER BY time_ms LIMIT 1",
}


def _entry(row: Sequence[Any]) -> Entry:
    index, kind, created, leaf, document, hashed, serial, key, key_serial, chain, pulse, t = row
    return Entry(
        leaf_index=index,
        kind=kind,
        created_at=created,
        leaf=leaf,
        document=document,
        serial=serial,
        key_hash=key,
        key_serial=key_serial,
        chain_index=chain,
        pulse_index=pulse,
        time_ms=t,
        leaf_hash=hashed,
    )


def _row(e: Entry) -> tuple[Any, ...]:
    return (
        e.leaf_index,
        e.kind,
        e.created_at,
        e.leaf,
        e.document,
        e.leaf_hash,
        e.serial,
        e.key_hash,
        e.key_serial,
        e.chain_index,
        e.pulse_index,
        e.time_ms,
    )


class SqliteLedger:
    """A :class:`~quantumrng.transparency.store.LedgerStore` in one SQLite file."""

    def __init__(self, path: Path | str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._path = Path(path)
        self._store = f"the ledger {self._path}"
        self._closed = False
        self._connections = open_private(
            self._path, "", what="the ledger", pragmas=_PRAGMAS, timeout=timeout
        )
        try:
            self._migrate()
        except BaseException:
            self._connections.close()
            raise

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"SqliteLedger({str(self._path)!r}, {state})"

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def _migrate(self) -> None:
        """Create the schema in a new file; refuse one of an unknown version."""
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ConfigError(f"ledger file {self._path} has unknown schema {version}")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise Unavailable("the ledger is closed")
        return self._connections.get()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the write lock from the first statement; roll back on any error."""
        with translate_errors(self._store):
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with translate_errors(self._store):
            yield self._conn()

    # --- appends --------------------------------------------------------------

    @staticmethod
    def _counters(conn: sqlite3.Connection, key_hashes: Collection[str]) -> Counters:
        keys = list(dict.fromkeys(key_hashes))
        serial, leaf, *lasts = conn.execute(_counters_query(len(keys)), keys).fetchone()
        return Counters(
            (serial or 0) + 1,
            0 if leaf is None else leaf + 1,
            {key: (last or 0) + 1 for key, last in zip(keys, lasts, strict=True)},
        )

    @staticmethod
    def _check_pulses(conn: sqlite3.Connection, entries: Sequence[Entry]) -> None:
        """Raise ``PulseExists`` if a pulse's (chain, index) or time is stored or repeated."""
        seen: set[tuple[int | None, int | None]] = set()
        times: set[int | None] = set()
        for e in entries:
            if e.kind != "pulse":
                continue
            taken = conn.execute(
                "SELECT 1 FROM entries WHERE (chain_index = ? AND pulse_index = ?)"
                " OR time_ms = ? LIMIT 1",
                (e.chain_index, e.pulse_index, e.time_ms),
            ).fetchone()
            if taken or (e.chain_index, e.pulse_index) in seen or e.time_ms in times:
                raise PulseExists(f"pulse {e.chain_index}/{e.pulse_index} exists")
            seen.add((e.chain_index, e.pulse_index))
            times.add(e.time_ms)

    def append(
        self, key_hashes: Collection[str], make: Callable[[Counters], Sequence[Entry]]
    ) -> list[Entry]:
        """Store what ``make(counters)`` returns in one ``BEGIN IMMEDIATE`` transaction
        (``make`` runs once, holding the write lock)."""
        with self._transaction() as conn:
            counters = self._counters(conn, key_hashes)
            entries = [e.hashed() for e in make(counters)]
            check_numbering(counters, entries)
            self._check_pulses(conn, entries)
            _insert_all(conn, _insert_entries, [_row(e) for e in entries])
            _insert_all(conn, _insert_leaf_hashes, [(e.leaf_index, e.leaf_hash) for e in entries])
        return entries

    # --- reads ----------------------------------------------------------------

    def _find(self, where: str, params: tuple[Any, ...]) -> Entry | None:
        """The first entry ``WHERE <where>`` selects."""
        with self._reading() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE {where}", params).fetchone()
        return None if row is None else _entry(row)

    def size(self) -> int:
        with self._reading() as conn:
            last = conn.execute("SELECT max(leaf_index) FROM entries").fetchone()[0]
        return 0 if last is None else int(last) + 1

    def entry(self, leaf_index: int) -> Entry | None:
        return self._find("leaf_index = ?", (leaf_index,))

    def result(self, serial: int) -> Entry | None:
        return self._find("serial = ?", (serial,))

    def nodes(self, keys: Sequence[tuple[int, int]]) -> list[bytes | None]:
        found: dict[tuple[int, int], bytes] = {}
        unique = list(dict.fromkeys((int(level), int(index)) for level, index in keys))
        ranges, scattered = _ranges(unique)
        with self._reading() as conn:
            for level, first, last in ranges:
                rows = conn.execute(
                    "SELECT idx, hash FROM nodes WHERE level = ? AND idx BETWEEN ? AND ?",
                    (level, first, last),
                ).fetchall()
                found.update(((level, idx), value) for idx, value in rows)
            for start in range(0, len(scattered), _NODES_BATCH):
                chunk = scattered[start : start + _NODES_BATCH]
                pairs = ", ".join("(?, ?)" for _ in chunk)
                rows = conn.execute(
                    f"SELECT level, idx, hash FROM nodes WHERE (level, idx) IN (VALUES {pairs})",
                    [v for pair in chunk for v in pair],
                ).fetchall()
                found.update(((level, idx), value) for level, idx, value in rows)
        return [found.get((int(level), int(index))) for level, index in keys]

    def put_nodes(self, nodes: Mapping[tuple[int, int], bytes]) -> None:
        if any(level < 1 for level, _ in nodes):
            raise ValueError("level 0 (leaf hashes) is written by append")
        if not nodes:
            return
        with self._transaction() as conn:
            _insert_all(
                conn,
                _insert_nodes,
                [(level, index, value) for (level, index), value in nodes.items()],
            )

    def put_head(self, tree_size: int, document: bytes) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO heads (tree_size, document) VALUES (?, ?)"
                " ON CONFLICT (tree_size) DO NOTHING",
                (tree_size, document),
            )

    def head(self, tree_size: int | None = None) -> bytes | None:
        with self._reading() as conn:
            if tree_size is None:
                row = conn.execute(
                    "SELECT document FROM heads ORDER BY tree_size DESC LIMIT 1"
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT document FROM heads WHERE tree_size = ?", (tree_size,)
                ).fetchone()
        return None if row is None else bytes(row[0])

    def pulse(self, chain_index: int, pulse_index: int) -> Entry | None:
        return self._find("chain_index = ? AND pulse_index = ?", (chain_index, pulse_index))

    def last_pulse(self, chain_index: int | None = None) -> Entry | None:
        if chain_index is None:
            return self._find(
                "chain_index IS NOT NULL ORDER BY chain_index DESC, pulse_index DESC LIMIT 1",
                (),
            )
        return self._find(
            "chain_index = ? ORDER BY pulse_index DESC LIMIT 1",
            (chain_index,),
        )

    def pulse_by_time(self, time_ms: int, relation: str) -> Entry | None:
        where = _BY_TIME.get(relation)
        if where is None:
            raise ValueError("relation must be at, before or after")
        return self._find(where, (time_ms,))

    def register_key(self, key_id: str, document: bytes) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO public_keys (key_id, document) VALUES (?, ?)"
                " ON CONFLICT (key_id) DO UPDATE SET document = excluded.document",
                (key_id, document),
            )

    def public_keys(self) -> list[bytes]:
        with self._reading() as conn:
            rows = conn.execute("SELECT document FROM public_keys ORDER BY rowid").fetchall()
        return [bytes(row[0]) for row in rows]

    def prune(self, before: float) -> int:
        """Drop old results' leaves and documents, a batch per transaction."""
        dropped = 0
        while True:
            with self._transaction() as conn:
                done = conn.execute(
                    "UPDATE entries SET leaf = NULL, document = NULL WHERE leaf_index IN"
                    " (SELECT leaf_index FROM entries WHERE kind = 'result'"
                    " AND document IS NOT NULL AND created_at < ? LIMIT ?)",
                    (before, _PRUNE_BATCH),
                ).rowcount
            dropped += done
            if done < _PRUNE_BATCH:
                return dropped

    def close(self) -> None:
        """Close this process's connections; the file keeps its contents."""
        self._closed = True
        self._connections.close()
