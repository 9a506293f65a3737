"""Daily byte counters per principal: what makes a daily quota hold across workers.

The counters live in the key store's SQLite file (``settings.keys_path``),
in the ``usage`` table that :class:`~quantumrng.server.keys.KeyStore` kept
before them, with the same schema, so existing deployments keep today's
counts. Keys and counters are separate stores all the same: each can move
(to Redis, for scale-out) without the other.

A count is one atomic ``INSERT ... ON CONFLICT DO UPDATE ... WHERE bytes + n
<= limit``, so a quota holds across ``--workers N`` processes. Rows of past
days are deleted on the first count of a new day. The file is mode 0600 and
in WAL mode; each thread of each process has its own connection. A damaged
or unreadable file raises ``Unavailable`` (503) naming the file, as "the
usage counters in the key store <path>": the file operators know.

With the Redis pool the counters live in Redis (:class:`RedisUsageStore`),
shared by every node; :func:`open_usage_store` picks the store from settings.

A refund gives back at most what the counter holds (``min(n, counter)``),
and the caller passes at most what its own request was charged, once (the
server's :class:`~quantumrng.server.access.Charge`): so a refund never takes
back bytes that other requests were charged.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from quantumrng.storage.errors import translate_errors
from quantumrng.storage.redis import key_prefix, open_redis, run_script
from quantumrng.storage.sqlite import open_private

if TYPE_CHECKING:
    from quantumrng.config import Settings

__all__ = ["RedisUsageStore", "Usage", "UsageStore", "open_usage_store"]

BUSY_TIMEOUT = 10.0  # seconds to wait for another process's write lock
#: A power loss may lose the last counts (a few bytes served uncounted), never the file.
_PRAGMAS = ("synchronous=NORMAL",)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    principal TEXT NOT NULL,
    day TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (principal, day)
) WITHOUT ROWID;
"""


class UsageStore:
    """Bytes served per principal and UTC day (``YYYY-MM-DD``), in a SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        what = "the usage counters in the key store"
        self._connections = open_private(
            self.path, _SCHEMA, what=what, pragmas=_PRAGMAS, timeout=BUSY_TIMEOUT
        )
        self._store = f"{what} {self.path}"
        self._cleaned_day: str | None = None

    def __repr__(self) -> str:
        return f"UsageStore({str(self.path)!r})"

    def consume(self, principal: str, day: str, nbytes: int, limit: int) -> int | None:
        """Count ``nbytes`` for ``principal`` on ``day`` if the total stays <= ``limit``.

        Returns the new total, or None (and counts nothing) when it would
        exceed ``limit``. One SQL statement: atomic across processes.
        """
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        if nbytes > limit:
            return None
        with translate_errors(self._store):
            conn = self._connections.get()
            if self._cleaned_day != day:
                conn.execute("DELETE FROM usage WHERE day < ?", (day,))
                self._cleaned_day = day
            rows = conn.execute(
                "INSERT INTO usage (principal, day, bytes) VALUES (?, ?, ?) "
                "ON CONFLICT (principal, day) DO UPDATE SET bytes = bytes + excluded.bytes "
                "WHERE usage.bytes + excluded.bytes <= ? RETURNING bytes",
                (principal, day, nbytes, limit),
            ).fetchall()
        return int(rows[0][0]) if rows else None

    def refund(self, principal: str, day: str, nbytes: int) -> None:
        """Give back up to ``nbytes`` counted by :meth:`consume` (never below zero)."""
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        with translate_errors(self._store):
            self._connections.get().execute(
                "UPDATE usage SET bytes = MAX(0, bytes - ?) WHERE principal = ? AND day = ?",
                (nbytes, principal, day),
            )

    def used(self, principal: str, day: str) -> int:
        """Return the bytes counted for ``principal`` on ``day``."""
        with translate_errors(self._store):
            row = (
                self._connections.get()
                .execute(
                    "SELECT bytes FROM usage WHERE principal = ? AND day = ?", (principal, day)
                )
                .fetchone()
            )
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        """Close this process's connections; the file stays."""
        self._connections.close()


# KEYS[1] = P:usage:<day>:<principal>; ARGV = bytes, limit, expiry (Unix seconds).
_CONSUME_LUA = """
local n, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + n > limit then return -1 end
used = redis.call('INCRBY', KEYS[1], n)
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return used
"""

# KEYS[1] = P:usage:<day>:<principal>; ARGV[1] = bytes. Gives back min(bytes, counter).
_REFUND_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = math.min(tonumber(ARGV[1]), used)
if n > 0 then redis.call('DECRBY', KEYS[1], n) end
return n
"""

KEEP_DAYS = 1  # a day's counters are kept this long after the day ends (late refunds)


def _expiry(day: str) -> int:
    """Unix time when ``day``'s counters may go: its end plus ``KEEP_DAYS``."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    return int((start + timedelta(days=1 + KEEP_DAYS)).timestamp())


class RedisUsageStore:
    """Bytes served per principal and UTC day in Redis, shared by every node.

    One counter per principal and day, ``P:usage:<day>:<principal>``, which
    expires a day after its day. :meth:`consume` is one Lua script that adds
    only when the total stays within the limit, so concurrent large requests
    near the limit never overshoot it; :meth:`refund` subtracts at most what
    the counter holds.
    """

    def __init__(self, client: Any, *, prefix: str = "quantumrng") -> None:
        self._client = client
        self._prefix = key_prefix(prefix)
        self._consume = client.register_script(_CONSUME_LUA)
        self._refund = client.register_script(_REFUND_LUA)
        self._store = "the usage counters in Redis"

    def __repr__(self) -> str:
        return f"RedisUsageStore(prefix={self._prefix!r})"

    def key(self, principal: str, day: str) -> str:
        """The Redis key of ``principal``'s counter on ``day``."""
        return f"{self._prefix}:usage:{day}:{principal}"

    def consume(self, principal: str, day: str, nbytes: int, limit: int) -> int | None:
        """Count ``nbytes`` if the day's total stays <= ``limit``; the new total, else None."""
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        if nbytes > limit:
            return None
        with translate_errors(self._store):
            used = run_script(
                self._client,
                self._consume,
                [self.key(principal, day)],
                [nbytes, limit, _expiry(day)],
            )
        return None if int(used) < 0 else int(used)

    def refund(self, principal: str, day: str, nbytes: int) -> None:
        """Give back up to ``nbytes`` counted by :meth:`consume` (never below zero)."""
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        with translate_errors(self._store):
            run_script(self._client, self._refund, [self.key(principal, day)], [nbytes])

    def used(self, principal: str, day: str) -> int:
        """Return the bytes counted for ``principal`` on ``day``."""
        with translate_errors(self._store):
            value = self._client.get(self.key(principal, day))
        return 0 if value is None else int(value)

    def close(self) -> None:
        """Close this client's connections; the counters stay."""
        self._client.close()


class Usage(Protocol):
    """What the access gate needs of a usage store (SQLite or Redis)."""

    def consume(self, principal: str, day: str, nbytes: int, limit: int) -> int | None: ...

    def refund(self, principal: str, day: str, nbytes: int) -> None: ...

    def used(self, principal: str, day: str) -> int: ...

    def close(self) -> None: ...


def open_usage_store(settings: Settings) -> Usage:
    """Open the counters of ``settings``: Redis with the Redis pool, else the key store's
    SQLite file."""
    if settings.pool == "redis":
        return RedisUsageStore(open_redis(settings), prefix=settings.redis_key)
    return UsageStore(settings.keys_path)
