"""Who may ask, and how much: API keys, scopes, rate limits and daily byte quotas.

The server core calls :meth:`Access.admit` before serving randomness and
:meth:`Access.usage` for ``GET /api/v2/usage`` (after RANDOM.ORG's
``getUsage``). Keys come as ``Authorization: Bearer <key>`` (RFC 6750) or
``X-API-Key: <key>``.

Auth is required when ``settings.require_auth`` is True, or when it is None
and the server binds a non-loopback host; an explicit False disables it.
Without auth an anonymous client is counted by its address (an IPv6 client by
its /64, which one host usually owns whole); a presented key is verified
all the same, so a bad key is a 401 whatever the setting.

Limits (0 or None: unlimited) come from the key, or for anonymous clients
from ``rate_limit``/``rate_burst``/``daily_bytes``:

- ``burst`` requests at once, refilled at ``rate`` per second: a GCRA cell
  per principal in the deployment's store (:mod:`quantumrng.server.limits`:
  Redis with the Redis pool, else the key store's SQLite file), one atomic
  step per request, so the limit holds whatever the number of workers and
  nodes;
- a daily byte quota, reset at 00:00 UTC, counted by the usage store (the key
  store's SQLite file, or Redis with the Redis pool) with one atomic
  conditional add: it holds across workers and nodes.

Keys, counters and limits are opened from settings
(:func:`~quantumrng.server.keys.open_key_store`,
:func:`~quantumrng.server.usage.open_usage_store`,
:func:`~quantumrng.server.limits.open_limiter`) on first need.

A request that takes a token keeps it spent whatever follows: a refused
quota (429, or 413 for more than the whole quota), a failing usage store
(503) or a client that hangs up while the store is read. Each of these has
already cost the store a read or write, so an exhausted key, a client
cancelling on purpose or retries against a broken store all stay at the
rate limit instead of hammering the store at full speed.

An admitted request carries its :class:`Charge`; bytes it did not serve
(an error, a stream the client aborted) are given back through
:meth:`Access.refund`, at most what it was charged, once.

A verified key is remembered for ``KEY_CACHE_SECONDS`` (1 s), a lookup
saved per request: a revoked key stops working within that second, on every
node (the store is shared; each process's cache expires on its own).

Invalid keys are counted per client address in a bucket kept in each
process: it only bounds how often one address makes the store look up keys
that do not exist, so a shared count would spend a store write on every bad
key, the very load it is there to keep off the store.

``/api/v2/status`` and ``/metrics`` are public unless auth is required; then,
unless ``public_status`` is set, they need a key with the ``admin`` scope
(:attr:`Access.private_status`, :meth:`Access.authorize`: no token, no quota).

Responses carry ``RateLimit-Limit``, ``RateLimit-Remaining``,
``RateLimit-Reset`` and ``RateLimit-Policy`` (draft-ietf-httpapi-ratelimit-
headers) whenever a limit applies, for the policy nearest exhaustion. With
no limit the path touches no store and no lock: the defaults (all limits 0,
auth off on loopback) never throttle anyone.

A key or usage store that cannot be opened or read answers 503
``unavailable`` with the fixed message :data:`STORE_UNAVAILABLE`; the detail
(file, SQLite error, never a key) goes to the server log, at most once per
``STORE_LOG_SECONDS``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TypeVar

from anyio import to_thread
from starlette.requests import Request

from quantumrng.config import Settings
from quantumrng.errors import (
    AuthenticationError,
    ConfigError,
    PayloadTooLarge,
    PermissionDenied,
    QuantumRNGError,
    RateLimited,
    Unavailable,
)
from quantumrng.server.keys import SCOPES, KeyRecord, Keys, KeyStore, open_key_store
from quantumrng.server.limits import Limiter, open_limiter
from quantumrng.server.usage import Usage, UsageStore, open_usage_store

__all__ = [
    "ANONYMOUS_SCOPES",
    "STORE_UNAVAILABLE",
    "Access",
    "Admission",
    "Charge",
    "Limits",
    "is_loopback",
    "presented_key",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: What a client without a key may do when auth is off: ``admin`` needs a key.
ANONYMOUS_SCOPES = frozenset({"drbg", "raw"})
KEY_CACHE_SECONDS = 1.0  # seconds a verified key is trusted before it is read again
#: Invalid keys one address may present before it waits (a bucket refilled at
#: BAD_KEY_RATE per second): each costs a key-store read, so guessing or
#: flooding with made-up keys is bounded before it reaches the store.
BAD_KEY_BURST = 20
BAD_KEY_RATE = 1.0
MAX_CACHED_KEYS = 4096
MAX_BUCKETS = 65_536  # addresses whose bad-key buckets are kept; the oldest are forgotten
DAY_SECONDS = 86_400
STORE_LOG_SECONDS = 60.0  # a failing key store is logged at most this often
STORE_UNAVAILABLE = "the key store is unavailable; try again later"

_HOW_TO = "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
_REALM = 'Bearer realm="quantumrng"'


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def client_principal(host: str | None) -> str:
    """Name an anonymous client by its address, an IPv6 client by its /64."""
    if not host:
        return "ip:unknown"
    if ":" not in host:
        return f"ip:{host}"
    try:
        addr = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return f"ip:{host}"
    if addr.ipv4_mapped is not None:
        return f"ip:{addr.ipv4_mapped}"
    return f"ip:{ipaddress.IPv6Network((addr, 64), strict=False)}"


class Charge:
    """Bytes one request was counted for against a daily quota, and what it may get back.

    :meth:`claim` hands out at most ``nbytes`` in all, under a lock: however
    many times and from wherever a refund is asked, a request never gives
    back more than it was charged.
    """

    __slots__ = ("_left", "_lock", "day", "nbytes")

    def __init__(self, day: str, nbytes: int) -> None:
        self.day = day
        self.nbytes = nbytes
        self._left = nbytes
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Charge({self.day!r}, {self.nbytes}, refundable={self._left})"

    @property
    def refundable(self) -> int:
        """Bytes not given back yet."""
        return self._left

    def claim(self, nbytes: int) -> int:
        """Take up to ``nbytes`` of what is still refundable; return how many."""
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        with self._lock:
            n = min(nbytes, self._left)
            self._left -= n
        return n


@dataclass(frozen=True)
class Admission:
    """A request let in: who asked, with which key, and headers for the answer."""

    principal: str
    key: KeyRecord | None
    headers: dict[str, str]
    charged: Charge | None = None  # bytes counted against a daily quota


@dataclass(frozen=True, slots=True)
class Limits:
    """One principal's limits; None is unlimited."""

    rate: float | None  # requests per second
    burst: int | None  # token bucket size
    daily_bytes: int | None

    @classmethod
    def of(cls, rate: float | None, burst: int | None, daily: int | None) -> Limits:
        """Normalise 0 to None and fill in the default burst, ``max(1, 2 * rate)``."""
        r = rate if rate and rate > 0 else None
        b = None if r is None else (burst if burst and burst > 0 else max(1, int(2 * r)))
        return cls(r, b, daily if daily and daily > 0 else None)

    @property
    def unlimited(self) -> bool:
        """True when neither a rate nor a quota applies."""
        return self.rate is None and self.daily_bytes is None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float  # monotonic seconds of the last refill


def _bucket(buckets: OrderedDict[str, _Bucket], principal: str, burst: int, now: float) -> _Bucket:
    """Return ``principal``'s bucket (full when new), the least recently used
    forgotten beyond :data:`MAX_BUCKETS`."""
    bucket = buckets.get(principal)
    if bucket is None:
        bucket = buckets[principal] = _Bucket(float(burst), now)
        if len(buckets) > MAX_BUCKETS:
            buckets.popitem(last=False)
    else:
        buckets.move_to_end(principal)
    return bucket


def refill(tokens: float, elapsed: float, rate: float, burst: int) -> float:
    """Return a bucket's tokens after ``elapsed`` seconds at ``rate``, capped at ``burst``."""
    return min(float(burst), tokens + max(0.0, elapsed) * rate)


def next_midnight(now: float) -> float:
    """Return the Unix time of the next 00:00 UTC after ``now``."""
    day = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).date().isoformat()


def _headers(policies: list[tuple[int, int, float, int]]) -> dict[str, str]:
    """RateLimit-* headers for (limit, remaining, reset seconds, window) policies."""
    limit, remaining, reset, _ = min(policies, key=lambda p: (p[1] / p[0], p[1]))
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": str(max(0, math.ceil(reset))),
        "RateLimit-Policy": ", ".join(f"{p[0]};w={p[3]}" for p in policies),
    }


class Admitted:
    """The context of :meth:`Access.admitted` (a plain class: this runs per request)."""

    __slots__ = ("_access", "_admission", "_nbytes", "_request", "_scope")

    def __init__(self, access: Access, request: Request, scope: str, nbytes: int) -> None:
        self._access = access
        self._request = request
        self._scope = scope
        self._nbytes = nbytes
        self._admission: Admission | None = None

    async def __aenter__(self) -> Admission:
        self._admission = await self._access.admit(
            self._request, scope=self._scope, nbytes=self._nbytes
        )
        return self._admission

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, QuantumRNGError) and self._admission is not None:
            await self._access.refund(self._admission)


class Access:
    """Authenticates requests and enforces scopes, rate limits and quotas.

    ``clock`` (monotonic seconds: the bad-key buckets, the key cache, a
    memory limiter) and ``now`` (Unix time: the UTC day, a SQLite limiter)
    are injectable so tests need no sleeps; a Redis limiter uses the Redis
    server's clock. ``store``, ``usage`` and ``limiter`` default to those of
    ``settings``, opened on first need.
    """

    def __init__(
        self,
        settings: Settings,
        store: Keys | None = None,
        usage: Usage | None = None,
        *,
        limiter: Limiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._store = store
        self._usage = usage
        self._limiter = limiter
        self._clock = clock
        self._now = now
        if settings.require_auth is None:
            self.auth_required = not is_loopback(settings.host)
        else:
            self.auth_required = bool(settings.require_auth)
        self.private_status = self.auth_required and not settings.public_status
        self.anonymous_limits = Limits.of(
            settings.rate_limit, settings.rate_burst, settings.daily_bytes
        )
        self._bad_keys: OrderedDict[str, _Bucket] = OrderedDict()  # by client address
        self._keys: dict[bytes, tuple[KeyRecord, float]] = {}
        self._store_lock = threading.Lock()
        self._store_logged_at: float | None = None

    @property
    def store(self) -> Keys:
        """The key store, opened on first need (a key presented).

        Raises ``ConfigError`` or ``Unavailable`` naming the store: for
        operators. Requests go through :meth:`_stored` instead.
        """
        if self._store is None:
            with self._store_lock:
                if self._store is None:
                    self._store = open_key_store(self.settings)
        return self._store

    @property
    def usage_store(self) -> Usage:
        """The daily byte counters, opened on first need (a quota): in the file of a given
        SQLite key store, else where ``settings`` say.

        Raises like :attr:`store`; requests go through :meth:`_stored`.
        """
        if self._usage is None:
            with self._store_lock:
                if self._usage is None:
                    keys = self._store
                    if isinstance(keys, KeyStore):
                        self._usage = UsageStore(keys.path)
                    else:
                        self._usage = open_usage_store(self.settings)
        return self._usage

    @property
    def limiter(self) -> Limiter:
        """The rate limits, opened on first need (a rate-limited request).

        Raises like :attr:`store`; requests go through :meth:`_stored`.
        """
        if self._limiter is None:
            with self._store_lock:
                if self._limiter is None:
                    self._limiter = open_limiter(self.settings, clock=self._clock, now=self._now)
        return self._limiter

    def _stored(self, op: Callable[[], T]) -> T:
        """Run ``op`` on a store; any failure of the store is a 503 with a fixed message."""
        try:
            return op()
        except (ConfigError, Unavailable) as exc:
            t = self._clock()
            if self._store_logged_at is None or t - self._store_logged_at >= STORE_LOG_SECONDS:
                self._store_logged_at = t
                log.error("key store unavailable: %s", exc.message)
            raise Unavailable(STORE_UNAVAILABLE) from None

    # -- who ---------------------------------------------------------------------

    def _identify(self, request: Request) -> tuple[str, KeyRecord | None]:
        presented = presented_key(request.scope.get("headers", ()))
        if presented is None:
            if self.auth_required:
                raise AuthenticationError(
                    f"this server needs an API key: {_HOW_TO}",
                    headers={"WWW-Authenticate": _REALM},
                )
            client = request.scope.get("client")
            return client_principal(client[0] if client else None), None
        record = self._verify(presented, request) if presented else None
        if record is None:
            raise AuthenticationError(
                f"the API key is invalid or revoked; {_HOW_TO}",
                headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
            )
        return record.principal, record

    def _verify(self, presented: str, request: Request) -> KeyRecord | None:
        """Verify a key, remembering a good one for ``KEY_CACHE_SECONDS``.

        A key not in the cache costs a store read; an address that presented
        ``BAD_KEY_BURST`` invalid keys gets 429 without one until its bucket
        refills (``BAD_KEY_RATE`` a second). Valid keys spend nothing.
        """
        digest = hashlib.sha256(presented.encode()).digest()
        t = self._clock()
        hit = self._keys.get(digest)
        if hit is not None and hit[1] > t:
            return hit[0]
        client = request.scope.get("client")
        address = client_principal(client[0] if client else None)
        bad = self._bad_keys.get(address)
        if bad is not None:
            bad.tokens = refill(bad.tokens, t - bad.stamp, BAD_KEY_RATE, BAD_KEY_BURST)
            bad.stamp = t
            if bad.tokens < 1.0:
                raise RateLimited(
                    "too many invalid API keys from this address; retry later",
                    retry_after=float(max(1, math.ceil((1.0 - bad.tokens) / BAD_KEY_RATE))),
                )
        record = self._stored(lambda: self.store.verify(presented))
        if record is None:
            self._keys.pop(digest, None)
            if bad is None:
                bad = _bucket(self._bad_keys, address, BAD_KEY_BURST, t)
            bad.tokens -= 1.0
            return None
        if len(self._keys) >= MAX_CACHED_KEYS:
            self._keys.clear()
        self._keys[digest] = (record, t + KEY_CACHE_SECONDS)
        return record

    def _limits(self, key: KeyRecord | None) -> Limits:
        if key is None:
            return self.anonymous_limits
        return Limits.of(key.rate, key.burst, key.daily_bytes)

    # -- admit ---------------------------------------------------------------------

    def authorize(self, request: Request, scope: str) -> tuple[str, KeyRecord | None]:
        """Return who asks and their key if they may act under ``scope``, or raise 401/403.

        Counts nothing against any limit: :meth:`admit` does, for randomness.
        """
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        principal, key = self._identify(request)
        if key is None:
            if scope not in ANONYMOUS_SCOPES:
                raise AuthenticationError(
                    f"this needs an API key with the {scope!r} scope: {_HOW_TO}",
                    headers={"WWW-Authenticate": _REALM},
                )
        elif not key.allows(scope):
            raise PermissionDenied(
                f"this API key lacks the {scope!r} scope",
                headers={
                    "WWW-Authenticate": f'{_REALM}, error="insufficient_scope", scope="{scope}"'
                },
            )
        return principal, key

    def authorize_status(self, request: Request) -> None:
        """Let a request for ``/api/v2/status`` or ``/metrics`` in, or raise 401/403:
        an ``admin`` key when :attr:`private_status`, anyone otherwise."""
        if self.private_status:
            self.authorize(request, "admin")

    async def admit(self, request: Request, *, scope: str, nbytes: int) -> Admission:
        """Let a request for ``nbytes`` under ``scope`` in, or raise 401/403/413/429.

        The rate-limit cell is taken before the quota is asked and stays
        spent when the quota refuses, the store fails or the client cancels.
        Store calls run in a worker thread, both in one.
        """
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        principal, key = self.authorize(request, scope)
        limits = self._limits(key)
        if limits.unlimited:
            return Admission(principal, key, {})
        limiter = self._limiter or self._stored(lambda: self.limiter)
        if limits.daily_bytes is None and not limiter.blocking:
            return self._count(principal, key, limits, nbytes)
        return await to_thread.run_sync(self._count, principal, key, limits, nbytes)

    def admitted(self, request: Request, *, scope: str, nbytes: int) -> Admitted:
        """``async with``: ``admit``, and give the bytes back to the quota if the block
        raised one of our errors (503, 413, ...): the answer then carries no randomness."""
        return Admitted(self, request, scope, nbytes)

    async def refund(self, admission: Admission, nbytes: int | None = None) -> int:
        """Give back to the quota ``nbytes`` (all by default) of what ``admission`` was
        charged and not given back yet; return the bytes given back.

        Never more than the request was charged, in all; a failing store is
        logged and gives nothing back (the first error is the answer).
        """
        charge = admission.charged
        if charge is None:
            return 0
        n = charge.claim(charge.refundable if nbytes is None else nbytes)
        if n == 0:
            return 0
        principal = admission.principal
        try:
            await to_thread.run_sync(
                self._stored, lambda: self.usage_store.refund(principal, charge.day, n)
            )
        except Unavailable:
            return 0
        return n

    def _count(
        self, principal: str, key: KeyRecord | None, limits: Limits, nbytes: int
    ) -> Admission:
        """Take a rate-limit cell, then count the bytes against the quota (blocking)."""
        policies: list[tuple[int, int, float, int]] = []
        if limits.rate is not None and limits.burst is not None:
            self._take_token(principal, limits.rate, limits.burst, policies)
        charged = None
        if limits.daily_bytes is not None:
            charged = self._take_bytes(principal, limits.daily_bytes, nbytes, policies)
        return Admission(principal, key, _headers(policies), charged)

    def _take_token(
        self, principal: str, rate: float, burst: int, policies: list[tuple[int, int, float, int]]
    ) -> None:
        verdict = self._stored(lambda: self.limiter.take(principal, rate, burst))
        window = max(1, math.ceil(burst / rate))
        if not verdict.allowed:
            raise RateLimited(
                f"over the rate limit of {rate:g} requests/s (burst {burst}); retry later",
                retry_after=float(max(1, math.ceil(verdict.wait))),
                headers=_headers([(burst, 0, verdict.wait, window)]),
            )
        policies.append((burst, verdict.remaining, verdict.reset, window))

    def _take_bytes(
        self,
        principal: str,
        limit: int,
        nbytes: int,
        policies: list[tuple[int, int, float, int]],
    ) -> Charge:
        now = self._now()
        reset = next_midnight(now) - now
        if nbytes > limit:
            raise PayloadTooLarge(
                f"{nbytes} bytes is more than the daily quota of {limit} bytes",
                headers=_headers([*policies, (limit, limit, reset, DAY_SECONDS)]),
            )
        day = _day(now)
        used = self._stored(lambda: self.usage_store.consume(principal, day, nbytes, limit))
        if used is None:
            left = limit - self._stored(lambda: self.usage_store.used(principal, day))
            raise RateLimited(
                f"over the daily quota of {limit} bytes ({max(0, left)} left, {nbytes} asked); "
                "it resets at 00:00 UTC",
                retry_after=float(max(1, math.ceil(reset))),
                headers=_headers([(limit, 0, reset, DAY_SECONDS)]),
            )
        policies.append((limit, limit - used, reset, DAY_SECONDS))
        return Charge(day, nbytes)

    # -- usage -----------------------------------------------------------------------

    async def usage(self, request: Request) -> dict[str, object]:
        """What the caller has left, after RANDOM.ORG's ``getUsage``; None is unlimited."""
        principal, key = self._identify(request)
        limits = self._limits(key)
        now = self._now()
        requests_left: int | None = None
        if limits.rate is not None and limits.burst is not None:
            rate, burst = limits.rate, limits.burst
            requests_left = await to_thread.run_sync(
                self._stored, lambda: self.limiter.peek(principal, rate, burst)
            )
        bytes_left: int | None = None
        if limits.daily_bytes is not None:
            day = _day(now)
            used = await to_thread.run_sync(
                self._stored, lambda: self.usage_store.used(principal, day)
            )
            bytes_left = max(0, limits.daily_bytes - used)
        resets = datetime.fromtimestamp(next_midnight(now), UTC)
        return {
            "principal": principal,
            "name": None if key is None else key.name,
            "scopes": sorted(ANONYMOUS_SCOPES if key is None else key.scopes),
            "status": "running",
            "rate": limits.rate,
            "burst": limits.burst,
            "requests_left": requests_left,
            "daily_bytes": limits.daily_bytes,
            "bytes_left": bytes_left,
            "resets_at": resets.isoformat().replace("+00:00", "Z"),
        }


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Return the key in ``X-API-Key`` or ``Authorization: Bearer``, "" if malformed.

    Scans the raw ASGI header list: cheaper than building ``Headers`` on the
    fast path. Two different keys in one request are malformed.
    """
    found: str | None = None
    for name, value in headers:
        if name == b"x-api-key":
            key = value.decode("latin-1").strip()
        elif name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() != "bearer":
                continue  # another scheme (Basic, ...) is not ours to judge
            key = token.strip()
        else:
            continue
        if found is not None and key != found:
            return ""
        found = key
    return found
