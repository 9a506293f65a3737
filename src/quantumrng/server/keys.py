"""API keys: in one SQLite file (``settings.keys_path``, :class:`KeyStore`), or in Redis
with the Redis pool (:class:`RedisKeyStore`, shared by every node); pick with
:func:`open_key_store`.

A key reads ``qrng_<id>_<secret>``: ``id`` is 12 hex digits, public, the
row to look up; ``secret`` is 32 bytes from :mod:`secrets` in base64url.
Only SHA-256 of the whole key is stored. A salted slow hash (bcrypt, scrypt)
protects low-entropy passwords against guessing; a 256-bit random secret
cannot be guessed, so one SHA-256 is as strong as a preimage attack on it,
and a keyed HMAC would add nothing but a second secret to keep. Hashes are
compared with :func:`hmac.compare_digest` (constant time).

The same file keeps the daily byte counters, in their own store
(:class:`~quantumrng.server.usage.UsageStore`), and the rate limits
(:class:`~quantumrng.server.limits.SqliteLimiter`). The file is created with mode
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
from typing import TYPE_CHECKING, Any, Protocol

from quantumrng.errors import ConfigError, NotFound, Unavailable, ValidationError
from quantumrng.storage.errors import translate_errors
from quantumrng.storage.redis import key_prefix, open_redis, run_script
from quantumrng.storage.sqlite import open_private

if TYPE_CHECKING:
    from quantumrng.config import Settings

__all__ = [
    "DEFAULT_SCOPES",
    "KEY_PREFIX",
    "SCOPES",
    "KeyRecord",
    "KeyStore",
    "Keys",
    "RedisKeyStore",
    "count_active",
    "count_active_keys",
    "open_key_store",
    "parse_scopes",
]

KEY_PREFIX = "qrng_"
ID_HEX = 12  # digits of the public key id (48 bits: ids only need to be unique)
SECRET_BYTES = 32  # 256-bit secret, base64url without padding: 43 characters
MAX_KEY_CHARS = 128  # longer presented keys are rejected before hashing
MAX_NAME_CHARS = 64
BUSY_TIMEOUT_MS = 10_000  # wait this long for another process's write lock
ID_TRIES = 8  # fresh ids drawn before giving up (48 bits: a collision is already rare)

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


def _checked(
    name: str,
    scopes: Iterable[str],
    rate: float | None,
    daily_bytes: int | None,
    burst: int | None,
) -> tuple[str, frozenset[str], float | None, int | None, int | None]:
    """Validate a new key's fields; return (name, scopes, rate, burst, daily), 0 as None."""
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
    return name, scope_set, rate_v, burst_v, daily_bytes or None


def _draw() -> tuple[str, str]:
    """A fresh key id and the whole key."""
    key_id = secrets.token_hex(ID_HEX // 2)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES))
    return key_id, f"{KEY_PREFIX}{key_id}_{secret.rstrip(b'=').decode('ascii')}"


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

    def count_active(self) -> int:
        """How many keys are active."""
        with translate_errors(self._store):
            (count,) = (
                self._conn()
                .execute("SELECT COUNT(*) FROM keys WHERE revoked_at IS NULL")
                .fetchone()
            )
        return int(count)

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
        name, scope_set, rate_v, burst_v, daily_v = _checked(name, scopes, rate, daily_bytes, burst)
        now = time.time()
        with translate_errors(self._store):
            conn = self._conn()
            for _ in range(ID_TRIES):
                key_id, key = _draw()
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


_REDIS_FIELDS = (b"name", b"scopes", b"rate", b"burst", b"daily", b"created", b"revoked")

# Every script names P:keys (the listing) in KEYS, for Cluster routing; the
# prefix and the rest come in ARGV.
_CREATE_LUA = """
local p, id, name = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HEXISTS', p .. ':keys:active', name) == 1 then return 'name' end
local k = p .. ':key:' .. id
if redis.call('EXISTS', k) == 1 then return 'id' end
redis.call('HSET', k, 'name', name, 'hash', ARGV[4], 'scopes', ARGV[5], 'created', ARGV[9])
if ARGV[6] ~= '' then redis.call('HSET', k, 'rate', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', k, 'burst', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('HSET', k, 'daily', ARGV[8]) end
redis.call('HSET', p .. ':keys:active', name, id)
redis.call('ZADD', KEYS[1], ARGV[9], id)
return 'ok'
"""

_REVOKE_LUA = """
local p, id = ARGV[1], ARGV[2]
local k = p .. ':key:' .. id
local name = redis.call('HGET', k, 'name')
if not name then return 0 end
if redis.call('HEXISTS', k, 'revoked') == 1 then return 1 end
redis.call('HSET', k, 'revoked', ARGV[3])
if redis.call('HGET', p .. ':keys:active', name) == id then
  redis.call('HDEL', p .. ':keys:active', name)
end
return 2
"""


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _redis_record(key_id: str, values: list[bytes | None]) -> KeyRecord | None:
    """A record from the hash fields ``_REDIS_FIELDS``, None when the key does not exist."""
    name, scopes, rate, burst, daily, created, revoked = (_text(v) for v in values)
    if name is None or scopes is None or created is None:
        return None
    return _record((key_id, name, scopes, rate, burst, daily, created, revoked))


class RedisKeyStore:
    """API keys (hashes only) in Redis: one store for every node of a deployment.

    Layout under the prefix ``P`` (``{redis_key}``, a Cluster hash tag):
    ``P:key:<id>`` a hash per key (``name``, ``hash`` (SHA-256, 32 bytes),
    ``scopes``, ``rate``, ``burst``, ``daily``, ``created``, ``revoked``; an
    unlimited field is absent), ``P:keys:active`` the active names (name →
    id), ``P:keys`` every id scored by its creation time. Create and revoke
    are one Lua script each (a name is active at most once); a lookup is one
    ``HMGET``. Same records, validation and constant-time check as
    :class:`KeyStore`.
    """

    def __init__(self, client: Any, *, prefix: str = "quantumrng") -> None:
        self._client = client
        self._prefix = key_prefix(prefix)
        self._route = [f"{self._prefix}:keys"]
        self._create = client.register_script(_CREATE_LUA)
        self._revoke = client.register_script(_REVOKE_LUA)
        self._store = "the key store in Redis"

    def __repr__(self) -> str:
        return f"RedisKeyStore(prefix={self._prefix!r})"

    def _key(self, key_id: str) -> str:
        return f"{self._prefix}:key:{key_id}"

    def check(self) -> None:
        """Read the key listing once; raise ``Unavailable`` if Redis cannot be read."""
        with translate_errors(self._store):
            self._client.zcard(self._route[0])

    def count_active(self) -> int:
        """How many keys are active."""
        with translate_errors(self._store):
            return int(self._client.hlen(f"{self._prefix}:keys:active"))

    def create(
        self,
        name: str,
        scopes: set[str] | frozenset[str],
        rate: float | None,
        daily_bytes: int | None,
        *,
        burst: int | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; return its plaintext (shown this once) and its record."""
        name, scope_set, rate_v, burst_v, daily_v = _checked(name, scopes, rate, daily_bytes, burst)
        now = time.time()
        for _ in range(ID_TRIES):
            key_id, key = _draw()
            args: list[str | bytes] = [
                self._prefix,
                key_id,
                name,
                _hash(key),
                ",".join(sorted(scope_set)),
                "" if rate_v is None else repr(rate_v),
                "" if burst_v is None else str(burst_v),
                "" if daily_v is None else str(daily_v),
                repr(now),
            ]
            with translate_errors(self._store):
                outcome = run_script(self._client, self._create, self._route, args)
            if outcome == b"name":
                raise ValidationError(f"an active key named {name!r} exists")
            if outcome == b"ok":
                return key, KeyRecord(key_id, name, scope_set, rate_v, daily_v, now, None, burst_v)
        raise ConfigError("could not draw an unused key id")  # pragma: no cover

    def _by_id(self, key_id: str) -> KeyRecord | None:
        with translate_errors(self._store):
            values = self._client.hmget(self._key(key_id), _REDIS_FIELDS)
        return _redis_record(key_id, values)

    def get(self, id_or_name: str) -> KeyRecord:
        """Return the key with this id, else the active key with this name."""
        record = self._by_id(id_or_name) if _ID_RE.fullmatch(id_or_name) else None
        if record is None:
            with translate_errors(self._store):
                found = self._client.hget(f"{self._prefix}:keys:active", id_or_name)
            record = None if found is None else self._by_id(found.decode())
        if record is None:
            raise NotFound(f"no API key with id or name {id_or_name!r}")
        return record

    def revoke(self, id_or_name: str) -> KeyRecord:
        """Revoke a key by id or (active) name and return its record; idempotent."""
        record = self.get(id_or_name)
        if record.revoked_at is None:
            with translate_errors(self._store):
                run_script(
                    self._client,
                    self._revoke,
                    self._route,
                    [self._prefix, record.id, repr(time.time())],
                )
        return self.get(record.id)

    def records(self) -> list[KeyRecord]:
        """Return every key, revoked ones included, oldest first."""
        with translate_errors(self._store):
            ids = [i.decode() for i in self._client.zrange(self._route[0], 0, -1)]
            pipe = self._client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hmget(self._key(key_id), _REDIS_FIELDS)
            rows = pipe.execute() if ids else []
        found = (_redis_record(i, v) for i, v in zip(ids, rows, strict=True))
        return [r for r in found if r is not None]

    def verify(self, presented: str) -> KeyRecord | None:
        """Return the active key ``presented`` is, else None (constant-time compare)."""
        key_id = _split(presented)
        if key_id is None:
            return None
        with translate_errors(self._store):
            values = self._client.hmget(self._key(key_id), (*_REDIS_FIELDS, b"hash"))
        stored = values[-1] if values[-1] is not None and len(values[-1]) == 32 else _DUMMY_HASH
        record = _redis_record(key_id, values[:-1])
        if not hmac.compare_digest(stored, _hash(presented)) or record is None:
            return None
        return record if record.active else None

    def close(self) -> None:
        """Close this client's connections; the keys stay."""
        self._client.close()


class Keys(Protocol):
    """What the server and ``qrng keys`` need of a key store (SQLite or Redis)."""

    def check(self) -> None: ...

    def count_active(self) -> int: ...

    def create(
        self,
        name: str,
        scopes: set[str] | frozenset[str],
        rate: float | None,
        daily_bytes: int | None,
        *,
        burst: int | None = None,
    ) -> tuple[str, KeyRecord]: ...

    def get(self, id_or_name: str) -> KeyRecord: ...

    def revoke(self, id_or_name: str) -> KeyRecord: ...

    def records(self) -> list[KeyRecord]: ...

    def verify(self, presented: str) -> KeyRecord | None: ...

    def close(self) -> None: ...


def open_key_store(settings: Settings) -> Keys:
    """Open the key store of ``settings``: Redis with the Redis pool, else the SQLite file
    ``settings.keys_path`` (created on first use)."""
    if settings.pool == "redis":
        return RedisKeyStore(open_redis(settings), prefix=settings.redis_key)
    return KeyStore(settings.keys_path)


def count_active(settings: Settings) -> int:
    """How many keys are active in the key store of ``settings``, without creating one.

    Raises ``Unavailable`` when the store cannot be read.
    """
    if settings.pool != "redis":
        return count_active_keys(settings.keys_path)
    store = RedisKeyStore(open_redis(settings), prefix=settings.redis_key)
    try:
        return store.count_active()
    finally:
        store.close()


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
