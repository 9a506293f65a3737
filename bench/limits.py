"""Cost of a rate-limited admission: shared GCRA (SQLite, Redis) against a per-process bucket.

Run: ``python bench/limits.py [--seconds S] [--rounds R] [--redis-url URL]``.
Measures requests/s of ``Access.admit`` for a key with a rate limit high
enough that every request is admitted (the cost of the check, not of
refusals), one request at a time on one event loop:

- ``bucket``: the token bucket each worker process kept before limits were
  shared (the old code, kept here only as the baseline);
- ``memory``: GCRA in-process (the memory pool's limiter);
- ``sqlite``: GCRA in the key store's SQLite file (one upsert, in a worker thread);
- ``redis``: GCRA in Redis (one Lua script, in a worker thread).

Rounds are interleaved so a noisy shared machine slows every variant alike;
each figure is the median over rounds and its ratio to ``bucket``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # bench/http.py would stand for the standard library's http

from starlette.requests import Request

from quantumrng.config import Settings, load_settings
from quantumrng.server.access import Access
from quantumrng.server.limits import Decision, MemoryLimiter
from quantumrng.storage.redis import key_prefix, open_url

RATE, BURST = 1e6, 10**6  # never refuses within a run: measures the check itself


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class OldBucket:
    """The per-process token bucket ``Access`` used before limits were shared (baseline)."""

    blocking = False

    def __init__(self) -> None:
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, principal: str, rate: float, burst: int) -> Decision:
        now = time.monotonic()
        bucket = self._buckets.get(principal)
        if bucket is None:
            bucket = self._buckets[principal] = _Bucket(float(burst), now)
            if len(self._buckets) > 65_536:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(principal)
        bucket.tokens = min(float(burst), bucket.tokens + max(0.0, now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / rate
            return Decision(False, 0, wait, wait)
        bucket.tokens -= 1.0
        return Decision(True, int(bucket.tokens), (burst - bucket.tokens) / rate, 0.0)

    def peek(self, principal: str, rate: float, burst: int) -> int:
        return burst

    def close(self) -> None:
        self._buckets.clear()


def request(key: str) -> Request:
    headers = [(b"authorization", f"Bearer {key}".encode())]
    return Request({"type": "http", "headers": headers, "client": ("127.0.0.1", 1)})


def gate(settings: Settings, limiter: Any = None) -> tuple[Access, Request]:
    """An access gate of ``settings`` (its own limiter unless one is given) and a request
    carrying a rate-limited key of its store."""
    access = Access(settings, limiter=limiter)
    key, _ = access.store.create(f"bench-{time.monotonic_ns()}", {"drbg"}, RATE, None, burst=BURST)
    return access, request(key)


def takes_per_second(access: Access, seconds: float) -> float:
    """``limiter.take`` alone, called in this thread: the store's own cost."""
    limiter = access.limiter
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(50):
            limiter.take("bench", RATE, BURST)
        n += 50
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


async def admits_per_second(access: Access, req: Request, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(50):
            await access.admit(req, scope="drbg", nbytes=64)
        n += 50
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="qrng-bench-limits-"))
    base = {"data_dir": tmp, "redis_url": args.redis_url}
    redis_key = f"qrng-bench-{time.monotonic_ns()}"
    variants: dict[str, tuple[Access, Request]] = {
        "bucket": gate(load_settings(overrides=base, environ={}), OldBucket()),
        "memory": gate(load_settings(overrides=base, environ={}), MemoryLimiter()),
        "sqlite": gate(load_settings(overrides=base, environ={})),
    }
    try:
        redis = load_settings(overrides={**base, "pool": "redis", "redis_key": redis_key})
        variants["redis"] = gate(redis)
    except Exception as exc:  # no Redis: the other figures still stand
        print(f"redis: skipped ({type(exc).__name__})", file=sys.stderr)

    admits: dict[str, list[float]] = {name: [] for name in variants}
    takes: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (access, req) in variants.items():
            admits[name].append(asyncio.run(admits_per_second(access, req, args.seconds)))
            takes[name].append(takes_per_second(access, args.seconds / 2))

    for title, figures in (
        ("Access.admit, rate-limited key", admits),
        ("limiter.take alone (no event loop, no thread hop)", takes),
    ):
        baseline = statistics.median(figures["bucket"])
        print(f"{title}: {args.rounds} rounds x {args.seconds} s")
        print(f"  {'limiter':<8} {'per s':>10} {'µs each':>9} {'x bucket':>9}")
        for name, values in figures.items():
            median = statistics.median(values)
            print(f"  {name:<8} {median:>10.0f} {1e6 / median:>9.1f} {median / baseline:>9.3f}")

    if "redis" in variants:
        client = open_url(args.redis_url)
        keys = list(client.scan_iter(match=f"{key_prefix(redis_key)}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
