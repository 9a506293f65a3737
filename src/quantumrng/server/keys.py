"""API keys, in one SQLite file (``settings.keys_path``).

A key reads ``qrng_<id>_<secret>``: ``id`` is 12 hex digits, public, the
row to look up; ``secret`` is 32 bytes from :mod:`secrets` in base64url.
Only SHA-256 of the whole key is stored. A salted slow hash (bcrypt, scrypt)
protects low-entropy passwords against guessing; a 256-bit random secret
cannot be guessed, so one SHA-256 is as strong as a preimage attack on it,
and a keyed HMAC would add nothing but a second secret to keep. Hashes are
compared with :func:`hmac.compare_digest` (constant time).

The same file keeps the daily byte counters, in their own store
(:class:`~quantumrng.server.usage.UsageStore`). The file is created with mode
0600 and opened in WAL mode; each thread of each process has its own
connection (:class:`~quantumrng.storage.sqlite.ThreadConnections`). A damaged
or unreadable file raises ``Unavailable`` (503) naming the file; the server's
access gate shows clients a fixed message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantumrng.errors import ConfigError, NotFound, Unavailable, ValidationError
from quantumrng.storage.errors import translate_errors
from quantumrng.storage.sqlite import open_private

__all__ = [
    "DEFAULT_SCOPES",
    "KEY_PREFIX",
    "SCOPES",
    "KeyRecord",
    "KeyStore",
    "count_active_keys",
    "parse_scopes",
]

KEY_PREFIX = "qrng_"
ID_HEX = 12  # digits of the public key id (48 bits: ids only need to be unique)
SECRET_BYTES = 32  # 256-bit secret, base64url without padding: 43 characters
MAX_KEY_CHARS = 128  # longer presented keys are rejected before hashing
MAX_NAME_CHARS = 64
BUSY_TIMEOUT_MS = 10_000  # wait this long for another process's write lock

#: ``drbg``: DRBG output (default); ``raw``: pool entropy (``mode=raw``);
#: ``admin``: every scope.
SCOPES = ("drbg", "raw", "admin")
DEFAULT_SCOPES = frozenset({"drbg"})

_ID_RE = re.compile(rf"[0-9a-f]{{{ID_HEX}}}")
_NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9 ._@:+-]{{0,{MAX_NAME_CHARS - 1}}}")
_DUMMY_HASH = bytes(32)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash BLOB NOT NULL,
    scopes TEXT NOT NULL,
    rate REAL,
    burst INTEGER,
    daily_bytes INTEGER,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS keys_active_name ON keys(name) WHERE revoked_at IS NULL;
"""
#: A power loss may lose the last commits (a key just made), never corrupt the file.
_PRAGMAS = ("synchronous=NORMAL",)
_COLUMNS = "id, name, scopes, rate, burst, daily_bytes, created_at, revoked_at"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What is known of a key: never its secret nor its hash.

    ``rate`` (requests/s), ``burst`` and ``daily_bytes`` are None when
    unlimited; ``burst`` None with a rate means ``max(1, 2 * rate)``.
    """

    id: str
    name: str
    scopes: frozenset[str]
    rate: float | None
    daily_bytes: int | None
    created_at: float  # seconds since the Unix epoch
    revoked_at: float | None = None
    burst: int | None = None

    @property
    def principal(self) -> str:
        """The name rate limits and quotas are counted under."""
        return f"key:{self.id}"

    @property
    def active(self) -> bool:
        """True until the key is revoked."""
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """True when the key carries ``scope`` (``admin`` carries every scope)."""
        return scope in self.scopes or "admin" in self.scopes

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (no secret, no hash)."""
        return {
            "id": self.id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "rate": self.rate,
            "burst": self.burst,
            "daily_bytes": self.daily_bytes,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    """Return the scopes of a comma-separated string or iterable; reject unknown ones."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = frozenset(s.strip().lower() for s in items if s.strip())
    unknown = scopes - set(SCOPES)
    if unknown:
        raise ValidationError(
            f"unknown scope {sorted(unknown)[0]!r}; scopes are {', '.join(SCOPES)}"
        )
    if not scopes:
        raise ValidationError(f"a key needs at least one scope of {', '.join(SCOPES)}")
    return scopes


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("ascii")).digest()


def _split(presented: str) -> str | None:
    """Return the key id of a well-formed key, else None."""
    if len(presented) > MAX_KEY_CHARS or not presented.isascii():
        return None
    if not presented.startswith(KEY_PREFIX):
        return None
    rest = presented[len(KEY_PREFIX) :]
    key_id, sep, secret = rest[:ID_HEX], rest[ID_HEX : ID_HEX + 1], rest[ID_HEX + 1 :]
    if sep != "_" or not secret or not _ID_RE.fullmatch(key_id):
        return None
    return key_id


def _record(row: tuple[Any, ...]) -> KeyRecord:
    key_id, name, scopes, rate, burst, daily, created, revoked = row
    return KeyRecord(
        id=str(key_id),
        name=str(name),
        scopes=frozenset(str(scopes).split(",")),
        rate=None if rate is None else float(rate),
        daily_bytes=None if daily is None else int(daily),
        created_at=float(created),
        revoked_at=None if revoked is None else float(revoked),
        burst=None if burst is None else int(burst),
    )


class KeyStore:
    """API keys (hashes only) in a SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._connections = open_private(
            self.path,
            _SCHEMA,
            what="the key store",
            pragmas=_PRAGMAS,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        self._store = f"the key store {self.path}"

    def __repr__(self) -> str:
        return f"KeyStore({str(self.path)!r})"

    def _conn(self) -> sqlite3.Connection:
        return self._connections.get()

    def check(self) -> None:
        """Read every page (``PRAGMA quick_check``); raise ``Unavailable`` if one is damaged."""
        with translate_errors(self._store):
            rows = self._conn().execute("PRAGMA quick_check").fetchall()
        if [tuple(r) for r in rows] != [("ok",)]:
            raise Unavailable(f"the key store {self.path} is damaged: {rows[0][0]}")

    # -- keys ------------------------------------------------------------------

    def create(
        self,
        name: str,
        scopes: set[str] | frozenset[str],
        rate: float | None,
        daily_bytes: int | None,
        *,
        burst: int | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; return its plaintext (shown this once) and its record.

        ``rate``, ``burst`` and ``daily_bytes`` of None or 0 mean unlimited.
        """
        name = name.strip()
        if not _NAME_RE.fullmatch(name) or _ID_RE.fullmatch(name):
            raise ValidationError(
                f"a key name is 1-{MAX_NAME_CHARS} letters, digits or ' ._@:+-', "
                "starting with a letter or digit, and not 12 hex digits"
            )
        scope_set = parse_scopes(scopes)
        if rate is not None and (not math.isfinite(rate) or rate < 0):
            raise ValidationError("rate must be a finite number of requests/s, 0 for unlimited")
        if daily_bytes is not None and daily_bytes < 0:
            raise ValidationError("daily_bytes must be 0 (unlimited) or positive")
        if burst is not None and burst < 0:
            raise ValidationError("burst must be 0 (default) or positive")
        rate_v = rate or None
        burst_v = (burst or None) if rate_v is not None else None
        daily_v = daily_bytes or None
        now = time.time()
        with translate_errors(self._store):
            conn = self._conn()
            for _ in range(8):
                key_id = secrets.token_hex(ID_HEX // 2)
                secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES))
                key = f"{KEY_PREFIX}{key_id}_{secret.rstrip(b'=').decode('ascii')}"
                try:
                    conn.execute(
                        "INSERT INTO keys (id, name, hash, scopes, rate, burst, daily_bytes, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            key_id,
                            name,
                            _hash(key),
                            ",".join(sorted(scope_set)),
                            rate_v,
                            burst_v,
                            daily_v,
                            now,
                        ),
                    )
                except sqlite3.IntegrityError:
                    if self._find_active(conn, name) is not None:
                        raise ValidationError(f"an active key named {name!r} exists") from None
                    continue  # id collision: draw another
                record = KeyRecord(key_id, name, scope_set, rate_v, daily_v, now, None, burst_v)
                return key, record
        raise ConfigError("could not draw an unused key id")  # pragma: no cover

    @staticmethod
    def _find_active(conn: sqlite3.Connection, name: str) -> KeyRecord | None:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM keys WHERE name = ? AND revoked_at IS NULL", (name,)
        ).fetchone()
        return None if row is None else _record(row)

    def get(self, id_or_name: str) -> KeyRecord:
        """Return the key with this id, else the active key with this name."""
        with translate_errors(self._store):
            conn = self._conn()
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM keys WHERE id = ?", (id_or_name,)
            ).fetchone()
            record = _record(row) if row is not None else self._find_active(conn, id_or_name)
        if record is None:
            raise NotFound(f"no API key with id or name {id_or_name!r}")
        return record

    def revoke(self, id_or_name: str) -> KeyRecord:
        """Revoke a key by id or (active) name and return its record; idempotent."""
        record = self.get(id_or_name)
        if record.revoked_at is not None:
            return record
        now = time.time()
        with translate_errors(self._store):
            self._conn().execute(
                "UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, record.id),
            )
        return self.get(record.id)

    def records(self) -> list[KeyRecord]:
        """Return every key, revoked ones included, oldest first."""
        with translate_errors(self._store):
            rows = (
                self._conn()
                .execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created_at, id")
                .fetchall()
            )
        return [_record(r) for r in rows]

    def verify(self, presented: str) -> KeyRecord | None:
        """Return the active key ``presented`` is, else None (constant-time compare)."""
        key_id = _split(presented)
        if key_id is None:
            return None  # the format is public: rejecting it early leaks nothing
        with translate_errors(self._store):
            row = (
                self._conn()
                .execute(f"SELECT {_COLUMNS}, hash FROM keys WHERE id = ?", (key_id,))
                .fetchone()
            )
        stored = bytes(row[-1]) if row is not None else _DUMMY_HASH
        if not hmac.compare_digest(stored, _hash(presented)) or row is None:
            return None
        record = _record(row[:-1])
        return record if record.active else None

    def close(self) -> None:
        """Close this process's connections; the file stays."""
        self._connections.close()


def count_active_keys(path: Path) -> int:
    """Return how many keys of the store at ``path`` are active, 0 when it does not exist.

    Opens the file read-only and never creates it (``qrng serve`` reports
    the count before any request opens the store). Raises ``Unavailable``
    when the file cannot be read.
    """
    path = Path(path)
    if not path.exists():
        return 0
    with translate_errors(f"the key store {path}"):
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            (count,) = conn.execute("SELECT COUNT(*) FROM keys WHERE revoked_at IS NULL").fetchone()
        finally:
            conn.close()
    return int(count)
