"""Rate limits shared by every worker and node: GCRA in the deployment's store.

A principal's limit is ``rate`` requests per second with a burst of
``burst``. The generic cell rate algorithm (GCRA) keeps one number per
principal, its theoretical arrival time (TAT): with the emission interval
``T = 1 / rate`` and the span ``burst * T``, a request at ``now`` is
admitted when ``max(TAT, now) + T - span <= now``, and then TAT becomes
``max(TAT, now) + T``. It is the token bucket of the same rate and size
(``tokens = burst - (TAT - now) / T``) with one value to store and no
refill step, so one atomic read-modify-write decides, wherever it runs:

- :class:`RedisLimiter` (``pool = "redis"``): one Lua script on
  ``{P}:rl:<principal>``, timed by the Redis server's ``TIME`` (the nodes'
  clocks differ; the server's is the one they share), with a ``PX`` expiry
  at the moment the bucket is full again, so idle principals vanish;
- :class:`SqliteLimiter` (``pool = "sqlite"``): one ``INSERT ... ON CONFLICT
  DO UPDATE ... WHERE ... RETURNING`` in the ``limits`` table of the key
  store's file (``settings.keys_path``), timed by the wall clock the node's
  processes share; rows of full buckets are deleted once a minute;
- :class:`MemoryLimiter` (``pool = "memory"``): a dict under a lock, for
  tests and single-process use.

So the limit a key is given is the limit it gets, whatever the number of
workers (SQLite, Redis) and nodes (Redis). A TAT further ahead than one
whole span (a clock stepped back, a lower limit than before) is clamped to
it: no principal ever waits longer than an empty bucket takes to refill.
Every limiter counts in whole microseconds: integers, so no float drift and
the same arithmetic in Python, SQL and Lua.

:func:`gcra` is the arithmetic as a pure function; the SQL statement and the
Lua script compute the same thing, and :func:`decision` turns what each
returns into a :class:`Decision` (headers, ``Retry-After``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from quantumrng.config import Settings
from quantumrng.storage.errors import translate_errors
from quantumrng.storage.redis import key_prefix, open_redis, run_script
from quantumrng.storage.sqlite import open_private

__all__ = [
    "Decision",
    "Limiter",
    "MemoryLimiter",
    "RedisLimiter",
    "SqliteLimiter",
    "decision",
    "gcra",
    "interval",
    "open_limiter",
    "requests_left",
    "ticks",
]

MAX_PRINCIPALS = 65_536  # principals a MemoryLimiter keeps; the least recently used go
CLEAN_SECONDS = 60.0  # how often a SqliteLimiter deletes the rows of full buckets
BUSY_TIMEOUT = 10.0  # seconds to wait for another process's write lock
TICKS = 1_000_000  # ticks a second: limiters count whole microseconds (Redis's TIME unit)

_PRAGMAS = ("synchronous=NORMAL",)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS limits (
    principal TEXT PRIMARY KEY,
    tat INTEGER NOT NULL
) WITHOUT ROWID;
"""

_TAKE_SQL = (
    "INSERT INTO limits (principal, tat) VALUES (:p, :now + :t) "
    "ON CONFLICT (principal) DO UPDATE SET tat = MAX(MIN(tat, :cap), :now) + :t "
    "WHERE MAX(MIN(tat, :cap), :now) + :t - :span <= :now RETURNING tat"
)

# KEYS[1] = P:rl:<principal>; ARGV = emission interval, span (microseconds).
# Returns {1, TAT - now} when admitted, {0, wait} when not (microseconds).
_TAKE_LUA = """
local interval, span = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat > now + span then tat = now + span end
if tat < now then tat = now end
local new = tat + interval
local wait = new - span - now
if wait > 0 then return {0, wait} end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000))
return {1, new - now}
"""

# KEYS[1] = P:rl:<principal>; ARGV[1] = span. Returns TAT - now (microseconds, >= 0).
_PEEK_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
local ahead = math.min(tat - now, tonumber(ARGV[1]))
if ahead < 0 then return 0 end
return ahead
"""


@dataclass(frozen=True, slots=True)
class Decision:
    """What one request's rate-limit check decided.

    ``remaining``: whole requests still allowed at once after this one;
    ``reset``: seconds until the burst is whole again (when admitted) or
    until the next request is admitted (when not, as ``wait``).
    """

    allowed: bool
    remaining: int
    reset: float
    wait: float


def ticks(seconds: float) -> int:
    """Seconds as whole microseconds, the unit every limiter counts in."""
    return round(seconds * TICKS)


def interval(rate: float) -> int:
    """The emission interval of ``rate`` requests/s, in ticks (at least one)."""
    return max(1, round(TICKS / rate))


def gcra(tat: int | None, now: int, interval: int, burst: int) -> tuple[bool, int, int]:
    """One GCRA step in ticks: return (admitted, the new TAT, ``ahead``).

    ``tat`` None is a principal never seen (or forgotten: a full bucket).
    ``ahead`` is ``new TAT - now`` when admitted and the wait before the
    next admission when not; the TAT is unchanged when not admitted.
    """
    span = burst * interval
    current = now if tat is None else max(min(tat, now + span), now)
    new = current + interval
    if new - span <= now:
        return True, new, new - now
    return False, current, new - span - now


def decision(allowed: bool, ahead: int, interval: int, burst: int) -> Decision:
    """Turn a store's answer (admitted, ``ahead`` ticks) into a :class:`Decision`."""
    if not allowed:
        return Decision(False, 0, ahead / TICKS, ahead / TICKS)
    return Decision(True, requests_left(ahead, interval, burst), ahead / TICKS, 0.0)


def requests_left(ahead: int, interval: int, burst: int) -> int:
    """Whole requests a principal may make at once, its TAT ``ahead`` ticks from now."""
    return max(0, burst - -(-max(0, ahead) // interval))


class Limiter(Protocol):
    """A store of GCRA state: ``take`` one request's cell, or ``peek`` at what is left.

    ``blocking`` is True when a call waits on I/O (the caller then runs it
    in a worker thread).
    """

    blocking: bool

    def take(self, principal: str, rate: float, burst: int) -> Decision:
        """Admit one request of ``principal`` or not, atomically for every process."""
        ...

    def peek(self, principal: str, rate: float, burst: int) -> int:
        """Whole requests ``principal`` may make at once now (changes nothing)."""
        ...

    def close(self) -> None:
        """Release this process's connections."""
        ...


class MemoryLimiter:
    """GCRA state in this process (a dict under a lock): tests and the memory pool."""

    blocking = False

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryLimiter({len(self._tats)} principals)"

    def take(self, principal: str, rate: float, burst: int) -> Decision:
        step = interval(rate)
        with self._lock:
            now = ticks(self._clock())
            allowed, tat, ahead = gcra(self._tats.get(principal), now, step, burst)
            if allowed:
                self._tats[principal] = tat
                self._tats.move_to_end(principal)
                if len(self._tats) > MAX_PRINCIPALS:
                    self._tats.popitem(last=False)
        return decision(allowed, ahead, step, burst)

    def peek(self, principal: str, rate: float, burst: int) -> int:
        with self._lock:
            tat = self._tats.get(principal)
            now = ticks(self._clock())
        return burst if tat is None else requests_left(tat - now, interval(rate), burst)

    def close(self) -> None:
        with self._lock:
            self._tats.clear()


class SqliteLimiter:
    """GCRA state in the ``limits`` table of the key store's SQLite file.

    One statement per request decides and writes (SQLite serialises writers
    across processes); a refusal costs a second read, for ``Retry-After``.
    """

    blocking = True

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        what = "the rate limits in the key store"
        self._connections = open_private(
            self.path, _SCHEMA, what=what, pragmas=_PRAGMAS, timeout=BUSY_TIMEOUT
        )
        self._store = f"{what} {self.path}"
        self._clock = clock
        self._cleaned_at: int | None = None

    def __repr__(self) -> str:
        return f"SqliteLimiter({str(self.path)!r})"

    def take(self, principal: str, rate: float, burst: int) -> Decision:
        step = interval(rate)
        span = burst * step
        now = ticks(self._clock())
        with translate_errors(self._store):
            conn = self._connections.get()
            if self._cleaned_at is None or abs(now - self._cleaned_at) >= ticks(CLEAN_SECONDS):
                self._cleaned_at = now
                conn.execute("DELETE FROM limits WHERE tat < ?", (now,))
            args = {"p": principal, "now": now, "t": step, "cap": now + span, "span": span}
            row = conn.execute(_TAKE_SQL, args).fetchone()
            if row is None:
                stored = conn.execute(
                    "SELECT tat FROM limits WHERE principal = ?", (principal,)
                ).fetchone()
        if row is not None:
            return decision(True, int(row[0]) - now, step, burst)
        # refused: the wait is GCRA's for the TAT as stored now (0 if a clean-up removed it)
        allowed, _, wait = gcra(None if stored is None else int(stored[0]), now, step, burst)
        return decision(False, 0 if allowed else wait, step, burst)

    def peek(self, principal: str, rate: float, burst: int) -> int:
        with translate_errors(self._store):
            row = (
                self._connections.get()
                .execute("SELECT tat FROM limits WHERE principal = ?", (principal,))
                .fetchone()
            )
        if row is None:
            return burst
        return requests_left(int(row[0]) - ticks(self._clock()), interval(rate), burst)

    def close(self) -> None:
        self._connections.close()


class RedisLimiter:
    """GCRA state in Redis, one key per principal, timed by the Redis server's clock."""

    blocking = True

    def __init__(self, client: Any, *, prefix: str = "quantumrng") -> None:
        self._client = client
        self._prefix = key_prefix(prefix)
        self._take = client.register_script(_TAKE_LUA)
        self._peek = client.register_script(_PEEK_LUA)
        self._store = "the rate limits in Redis"

    def __repr__(self) -> str:
        return f"RedisLimiter(prefix={self._prefix!r})"

    def key(self, principal: str) -> str:
        """The Redis key holding ``principal``'s TAT."""
        return f"{self._prefix}:rl:{principal}"

    def take(self, principal: str, rate: float, burst: int) -> Decision:
        step = interval(rate)
        with translate_errors(self._store):
            allowed, ahead = run_script(
                self._client, self._take, [self.key(principal)], [step, burst * step]
            )
        return decision(bool(allowed), int(ahead), step, burst)

    def peek(self, principal: str, rate: float, burst: int) -> int:
        step = interval(rate)
        with translate_errors(self._store):
            ahead = self._peek(keys=[self.key(principal)], args=[burst * step])
        return requests_left(int(ahead), step, burst)

    def close(self) -> None:
        self._client.close()


def open_limiter(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], float] = time.time,
) -> Limiter:
    """Open the limiter of ``settings.pool``: Redis, the key store's SQLite file, or memory.

    ``clock`` times a memory limiter, ``now`` (Unix time, shared by the
    node's processes) a SQLite one; Redis uses its own.
    """
    if settings.pool == "redis":
        return RedisLimiter(open_redis(settings), prefix=settings.redis_key)
    if settings.pool == "memory":
        return MemoryLimiter(clock)
    return SqliteLimiter(settings.keys_path, now)
