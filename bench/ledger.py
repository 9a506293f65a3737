"""Ledger store: one-entry appends per second on SQLite and Redis, against a baseline.

Run: ``python bench/ledger.py [--appends N] [--rounds R] [--redis URL]``. Signed
answers append once per batch, so an append's cost bounds the signed routes'
requests per second. Each round times ``N`` appends of one result (a ~600-byte
leaf and document, as a signed ``integers?n=1`` answer) and, in the same round,
the cheapest write of the same bytes to the same backend: a plain SQLite
``INSERT`` + ``COMMIT`` (WAL, ``synchronous=FULL``, as the ledger) and a Redis
``SET``. It prints the medians and each store's rate as a ratio of its baseline.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quantumrng.storage.redis import open_url
from quantumrng.transparency.redis import RedisLedger
from quantumrng.transparency.sqlite import SqliteLedger
from quantumrng.transparency.store import Counters, Entry, LedgerStore

LEAF = os.urandom(300).hex().encode()  # ~ the canonical bytes of a signed integers?n=1
KEY = "f" * 64  # a hashed API key


def one_result(counters: Counters) -> list[Entry]:
    return [
        Entry(
            leaf_index=counters.next_leaf,
            kind="result",
            created_at=time.time(),
            leaf=LEAF,
            document=LEAF,
            serial=counters.next_serial,
            key_hash=KEY,
            key_serial=counters.key_serials[KEY],
        )
    ]


def rate(run: Callable[[], object], n: int) -> float:
    """Calls per second of ``run`` over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        run()
    return n / (time.perf_counter() - start)


def appends(store: LedgerStore) -> Callable[[], object]:
    return lambda: store.append((KEY,), one_result)


def sqlite_baseline(path: Path) -> Callable[[], object]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, leaf BLOB, document BLOB)")

    def insert() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (leaf, document) VALUES (?, ?)", (LEAF, LEAF))
        conn.execute("COMMIT")

    return insert


def setter(client: Any, key: str) -> Callable[[], object]:
    return lambda: client.set(key, LEAF)


def report(name: str, store: list[float], baseline: list[float], what: str) -> None:
    s, b = statistics.median(store), statistics.median(baseline)
    print(
        f"{name:7s} append: {s:9.0f}/s ({1e6 / s:6.1f} us)   {what}: {b:9.0f}/s"
        f" ({1e6 / b:6.1f} us)   ratio {s / b:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=500, help="appends per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        ledger = SqliteLedger(Path(tmp, "ledger.sqlite3"))
        plain = sqlite_baseline(Path(tmp, "plain.sqlite3"))
        runs: dict[str, list[float]] = {"ledger": [], "plain": []}
        for _ in range(args.rounds):
            runs["ledger"].append(rate(appends(ledger), args.appends))
            runs["plain"].append(rate(plain, args.appends))
        ledger.close()
        report("SQLite", runs["ledger"], runs["plain"], "INSERT+COMMIT")
    prefix = f"bench-{uuid.uuid4().hex}"
    shared = RedisLedger(args.redis, prefix=prefix)
    client = open_url(args.redis)
    try:
        runs = {"ledger": [], "set": []}
        for i in range(args.rounds):
            runs["ledger"].append(rate(appends(shared), args.appends))
            runs["set"].append(rate(setter(client, f"{{{prefix}}}:baseline:{i}"), args.appends))
        report("Redis", runs["ledger"], runs["set"], "SET")
    finally:
        keys = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        shared.close()
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
