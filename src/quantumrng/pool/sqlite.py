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
  database pages, and every take ends with ``PRAGMA wal_checkpoint(TRUNCATE)``,
  so the WAL frames that held them are copied over (with the zeroed pages)
  and cut off. What remains: filesystem blocks freed by the truncation are
  not overwritten, an SSD may keep remapped copies, and a checkpoint that a
  long reader keeps busy leaves them until the next take. The file and its
  WAL are created mode 0600.
- **Damage.** Opening runs ``PRAGMA quick_check(1)``. A damaged file (that
  check, or SQLite calling the file malformed or not a database at any later
  time, or stored text that does not decode) makes this pool refuse every
  later call with ``Unavailable`` (503): nothing is served from it. Stored
  text is read as bytes (``CAST ... AS BLOB``) and decoded here, so no
  SQLite message ever quotes it.
- **Integrity.** Each block row keeps the opaque ``tag`` it was put with
  (schema 2; a schema 1 file gains the column with empty tags);
  :mod:`quantumrng.pool.integrity` seals and checks it.
- **Provenance history.** A harvest row is deleted with its last block, so
  the table only describes blocks still in the pool; consumed provenance
  travels with the taken blocks, not in the file.
- **Leases.** A ``leases`` table (schema 4): the check and change of a lease,
  and the fence of a fenced ``put``, run inside ``BEGIN IMMEDIATE``, so the
  processes sharing the file see them in one order. Times are this machine's
  wall clock (every process using the file runs on it); a lease is valid from
  its last grant until its expiry, so a clock set back ends it.
- **Threads and forks.** One connection per thread of each process, never
  one inherited through ``fork``
  (:class:`~quantumrng.storage.sqlite.ThreadConnections`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from quantumrng.block import Block
from quantumrng.errors import ConfigError, EntropyUnavailable, Unavailable
from quantumrng.pool._common import (
    LeaseState,
    check_holder,
    check_lease,
    check_limit,
    check_record_name,
    check_take,
    dump_provenance,
    group_harvests,
    lease_lost,
    lease_millis,
    load_provenance,
)
from quantumrng.pool.base import Lease, LeaseInfo, PoolLevel
from quantumrng.provenance import Provenance
from quantumrng.storage.errors import translate_errors
from quantumrng.storage.sqlite import ThreadConnections, connect

__all__ = ["DEFAULT_TIMEOUT", "SCHEMA_VERSION", "SqlitePool"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0  # seconds a writer waits for the lock before Unavailable
SCHEMA_VERSION = 4  # 1: no tag column; 2: no records table; 3: no leases table
_STORE = "the SQLite pool"
_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_ADD_TAG = "ALTER TABLE blocks ADD COLUMN tag BLOB NOT NULL DEFAULT x''"

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
        credited_bits INTEGER NOT NULL,
        tag           BLOB NOT NULL DEFAULT x''  -- opaque integrity tag (pool/integrity.py)
    )""",
    "CREATE INDEX IF NOT EXISTS blocks_by_source ON blocks(source, id)",
    "CREATE INDEX IF NOT EXISTS blocks_by_harvest ON blocks(harvest_id)",
    """CREATE TABLE IF NOT EXISTS records (
        name  TEXT PRIMARY KEY,  -- e.g. assessment:<key>, state:<source>
        value BLOB NOT NULL      -- opaque here (sealed by pool/integrity.py)
    )""",
    """CREATE TABLE IF NOT EXISTS leases (
        name    TEXT PRIMARY KEY,  -- e.g. harvest:<source>
        holder  TEXT NOT NULL,     -- '': nobody holds it
        token   INTEGER NOT NULL,  -- the last token granted, kept after release and expiry
        granted REAL NOT NULL,     -- wall clock of the last grant or renewal
        expires REAL NOT NULL
    )""",
)


def _is_damage(exc: sqlite3.Error) -> bool:
    """True when SQLite says the file is corrupt or not a database at all."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _DAMAGE_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


def _first_line(report: str) -> str:
    """The first line of a ``quick_check`` report that says what is wrong."""
    lines = [line.strip() for line in report.splitlines() if line.strip()]
    named = [line for line in lines if not line.startswith("***")]
    return (named or lines or ["unknown damage"])[0]


class SqlitePool:
    """A :class:`~quantumrng.pool.base.Pool` in one SQLite file."""

    def __init__(self, path: Path | str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._path = Path(path)
        self._timeout = timeout
        self._closed = False
        self._damage: str | None = None
        self._opened = False
        self._connections = ThreadConnections(self._path, self._connect)
        self._create_file()
        try:
            self._check()
            self._migrate()
            self._opened = True
        except Unavailable as exc:
            self.close()
            if self._damage is not None:
                raise Unavailable(
                    f"the entropy pool {self._path} is damaged: {self._damage}"
                ) from None
            raise Unavailable(f"cannot open the entropy pool {self._path}: {exc.message}") from None
        except BaseException:
            self.close()
            raise

    def _check(self) -> None:
        """Refuse a file that ``PRAGMA quick_check`` finds damaged (O(pages), no index check)."""
        with self._guard():
            rows = self._conn().execute("PRAGMA quick_check(1)").fetchall()
        report = "\n".join(str(row[0]) for row in rows)
        if report.strip() != "ok":
            raise self._damaged(_first_line(report))

    def _migrate(self) -> None:
        """Create the schema, or bring an older file to 4 (schema 1 blocks get empty tags;
        schema 2 gains the records table, schema 3 the leases table)."""
        untagged = 0
        with self._guard(), self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, 2, 3, SCHEMA_VERSION):
                raise ConfigError(f"pool file {self._path} has unknown schema {version}")
            if version == 1:
                conn.execute(_ADD_TAG)
                untagged = int(conn.execute("SELECT count(*) FROM blocks").fetchone()[0])
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if untagged:
            log.warning(
                "pool file %s: %d blocks from before integrity tags carry none; "
                "they will be dropped as they are taken",
                self._path,
                untagged,
            )

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

    def _damaged(self, detail: str) -> Unavailable:
        """Mark this pool damaged and return the error to raise.

        Damage found after opening is logged once with the path, which the
        error (a 503 answer's message) leaves out; at opening the error names it.
        """
        if self._damage is None:
            self._damage = detail
            if self._opened:
                log.error(
                    "the entropy pool %s is damaged: %s; nothing is served from it",
                    self._path,
                    detail,
                )
        return Unavailable(f"the entropy pool is damaged: {self._damage}")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Refuse a damaged pool; turn SQLite's damage reports into it, other errors ours."""
        if self._damage is not None:
            raise Unavailable(f"the entropy pool is damaged: {self._damage}")
        with translate_errors(_STORE):
            try:
                yield
            except sqlite3.DatabaseError as exc:
                if _is_damage(exc):
                    detail = str(exc).splitlines()[0] if str(exc) else "corrupt"
                    raise self._damaged(detail) from exc
                raise

    def _text(self, value: object, what: str) -> str:
        """Decode a column read ``CAST(... AS BLOB)``; anything else is damage."""
        try:
            if not isinstance(value, bytes):
                raise TypeError(what)
            return value.decode()
        except (TypeError, UnicodeDecodeError):
            raise self._damaged(f"{what} does not decode") from None

    def _provenance(self, value: object) -> Provenance:
        if not isinstance(value, bytes):
            raise self._damaged("a harvest's provenance does not decode")
        try:
            return load_provenance(value, _STORE)
        except Unavailable:
            raise self._damaged("a harvest's provenance does not decode") from None

    def _erase_wal(self, conn: sqlite3.Connection) -> None:
        """Checkpoint and truncate the WAL, so the frames of taken blocks leave the file.

        A checkpoint kept busy by a reader is left to the next take; the take
        it follows has committed and is not undone.
        """
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError as exc:
            if _is_damage(exc):
                raise
            log.debug("WAL checkpoint after a take deferred: %s", exc)

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

    def put(self, blocks: Sequence[Block], *, fence: Lease | None = None) -> None:
        """Add blocks in one durable transaction; with ``fence``, only while it is held
        (checked inside the transaction)."""
        groups = group_harvests(blocks)
        if fence is not None:
            check_lease(fence)
        if not groups:
            return
        with self._guard(), self._transaction() as conn:
            if fence is not None and not self._holds(conn, fence, time.time()):
                raise lease_lost(fence)
            conn.executemany(
                "INSERT INTO harvests (harvest_id, source, provenance) VALUES (?, ?, ?)"
                " ON CONFLICT (harvest_id) DO NOTHING",
                [(hid, prov.source, dump_provenance(prov)) for hid, prov in groups.items()],
            )
            sources = {
                hid: self._text(
                    conn.execute(
                        "SELECT CAST(source AS BLOB) FROM harvests WHERE harvest_id = ?", (hid,)
                    ).fetchone()[0],
                    "a harvest's source",
                )
                for hid in groups
            }
            conn.executemany(
                "INSERT INTO blocks (harvest_id, source, data, credited_bits, tag)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        b.provenance.harvest_id,
                        sources[b.provenance.harvest_id],
                        b.data,
                        b.credited_bits,
                        b.tag,
                    )
                    for b in blocks
                ],
            )

    def take(self, n: int, *, source: str | None = None) -> list[Block]:
        """Remove and return the ``n`` oldest blocks (of ``source``), or none at all.

        Returns each block as stored: a row whose columns were rewritten with
        the wrong types comes back with bytes that are not a block, or
        ``credited_bits`` -1, for the integrity check to drop.
        """
        check_take(n, source)
        only = "" if source is None else " AND b.source = ?"
        params: tuple[str, ...] = () if source is None else (source,)
        with self._guard():
            with self._transaction() as conn:
                rows = conn.execute(
                    "SELECT b.id, CAST(b.harvest_id AS BLOB), CAST(b.data AS BLOB),"
                    " CASE typeof(b.credited_bits) WHEN 'integer' THEN b.credited_bits"
                    " ELSE -1 END, CAST(b.tag AS BLOB), CAST(h.provenance AS BLOB)"
                    " FROM blocks AS b JOIN harvests AS h ON h.harvest_id = b.harvest_id"
                    f" WHERE 1{only} ORDER BY b.id LIMIT ?",
                    (*params, n),
                ).fetchall()
                if len(rows) < n:
                    raise EntropyUnavailable(
                        f"the pool holds {len(rows)} of the {n} blocks asked for"
                    )
                deleted = conn.execute(
                    f"DELETE FROM blocks AS b WHERE b.id <= ?{only}", (rows[-1][0], *params)
                ).rowcount
                if deleted != n:
                    raise Unavailable("the pool changed during a take; nothing was taken")
                hids = [self._text(row[1], "a block's harvest id") for row in rows]
                conn.executemany(
                    "DELETE FROM harvests WHERE harvest_id = ?"
                    " AND NOT EXISTS (SELECT 1 FROM blocks WHERE blocks.harvest_id = ?)",
                    [(hid, hid) for hid in dict.fromkeys(hids)],
                )
            self._erase_wal(conn)
            provenance: dict[str, Provenance] = {}
            taken: list[Block] = []
            for hid, (_id, _hid, data, bits, tag, prov_json) in zip(hids, rows, strict=True):
                prov = provenance.get(hid)
                if prov is None:
                    prov = provenance[hid] = self._provenance(prov_json)
                taken.append(
                    Block(
                        data=data if isinstance(data, bytes) else b"",
                        credited_bits=int(bits),
                        provenance=prov,
                        tag=tag if isinstance(tag, bytes) else b"",
                    )
                )
        return taken

    def level(self) -> PoolLevel:
        """Return blocks, credited bits and blocks per source kind, from one snapshot."""
        with self._guard():
            rows = (
                self._conn()
                .execute(
                    "SELECT CAST(source AS BLOB), count(*), total(credited_bits)"
                    " FROM blocks GROUP BY source"
                )
                .fetchall()
            )
            by_source = {
                self._text(kind, "a block's source"): int(count) for kind, count, _ in rows
            }
        return PoolLevel(
            blocks=sum(by_source.values()),
            credited_bits=int(sum(bits for _kind, _count, bits in rows)),
            by_source=by_source,
        )

    def recent(self, limit: int = 10) -> list[tuple[Provenance, int]]:
        """Return the most recently put harvests still in the pool, newest first."""
        check_limit(limit)
        if limit == 0:
            return []
        with self._guard():
            rows = (
                self._conn()
                .execute(
                    "SELECT CAST(h.provenance AS BLOB), count(*), max(b.id) AS newest"
                    " FROM blocks AS b JOIN harvests AS h ON h.harvest_id = b.harvest_id"
                    " GROUP BY b.harvest_id ORDER BY newest DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
            return [(self._provenance(prov), int(left)) for prov, left, _newest in rows]

    def discard(self, harvest_ids: Collection[str]) -> int:
        """Remove every block of these harvests in one durable transaction; return how many."""
        ids = list(dict.fromkeys(harvest_ids))
        if not ids:
            return 0
        with self._guard():
            with self._transaction() as conn:
                removed = 0
                for hid in ids:
                    removed += conn.execute(
                        "DELETE FROM blocks WHERE harvest_id = ?", (hid,)
                    ).rowcount
                    conn.execute("DELETE FROM harvests WHERE harvest_id = ?", (hid,))
            self._erase_wal(conn)
        return removed

    def read_record(self, name: str) -> bytes | None:
        """Return the record ``name``, or None."""
        check_record_name(name)
        with self._guard():
            row = (
                self._conn()
                .execute("SELECT CAST(value AS BLOB) FROM records WHERE name = ?", (name,))
                .fetchone()
            )
        if row is None:
            return None
        if not isinstance(row[0], bytes):
            raise self._damaged("a record does not decode")
        return row[0]

    def write_record(self, name: str, value: bytes | None) -> None:
        """Store or delete the record ``name`` in one durable transaction."""
        check_record_name(name, value)
        with self._guard(), self._transaction() as conn:
            if value is None:
                conn.execute("DELETE FROM records WHERE name = ?", (name,))
            else:
                conn.execute(
                    "INSERT INTO records (name, value) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (name, value),
                )

    # --- leases ---------------------------------------------------------------

    def _lease(self, conn: sqlite3.Connection, name: str) -> LeaseState:
        """The lease ``name`` as stored (a never-granted one when there is no row)."""
        row = conn.execute(
            "SELECT CAST(holder AS BLOB), token, granted, expires FROM leases WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return LeaseState()
        holder, token, granted, expires = row
        if not all(isinstance(v, int | float) for v in (token, granted, expires)):
            raise self._damaged("a lease does not decode")
        holder = self._text(holder, "a lease's holder")
        return LeaseState(int(token), holder, float(granted), float(expires))

    def _holds(self, conn: sqlite3.Connection, lease: Lease, now: float) -> bool:
        return self._lease(conn, lease.name).holds(lease, now)

    @staticmethod
    def _store_lease(conn: sqlite3.Connection, name: str, state: LeaseState) -> None:
        conn.execute(
            "INSERT INTO leases (name, holder, token, granted, expires) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
            " token = excluded.token, granted = excluded.granted, expires = excluded.expires",
            (name, state.holder, state.token, state.granted, state.expires),
        )

    def acquire_lease(self, name: str, holder: str, seconds: float) -> Lease | None:
        """Take or renew the lease ``name`` in one transaction; None while another holds it."""
        check_record_name(name)
        check_holder(holder)
        span = lease_millis(seconds) / 1000
        with self._guard(), self._transaction() as conn:
            state = self._lease(conn, name).acquired(holder, time.time(), span)
            if state is None:
                return None
            self._store_lease(conn, name, state)
        return Lease(name, holder, state.token)

    def renew_lease(self, lease: Lease, seconds: float) -> bool:
        """Extend ``lease`` in one transaction if still held as it says."""
        check_lease(lease)
        span = lease_millis(seconds) / 1000
        with self._guard(), self._transaction() as conn:
            now = time.time()
            state = self._lease(conn, lease.name)
            if not state.holds(lease, now):
                return False
            self._store_lease(conn, lease.name, state.renewed(now, span))
        return True

    def release_lease(self, lease: Lease) -> None:
        """Give ``lease`` up if still held as it says (its token is kept)."""
        check_lease(lease)
        with self._guard(), self._transaction() as conn:
            state = self._lease(conn, lease.name)
            if state.holds(lease, time.time()):
                self._store_lease(conn, lease.name, state.released())

    def lease_holder(self, name: str) -> LeaseInfo | None:
        """Who holds the lease ``name`` now, by this machine's clock, or None."""
        check_record_name(name)
        with self._guard():
            state = self._lease(self._conn(), name)
        return state.info(name, time.time())

    def close(self) -> None:
        """Close this process's connections; the file keeps its contents.

        Call it when no other thread is using the pool.
        """
        self._closed = True
        self._connections.close()
