"""SQLite pool: the cost of erasing the WAL after each take, and of the quick check at open.

Run: ``python bench/pool_take.py [--blocks N] [--rounds R]``. A take ends with
``PRAGMA wal_checkpoint(TRUNCATE)`` so served bytes leave the ``-wal`` file
(issue 14). This prints the time per ``take(1)`` with that checkpoint against
the same take without it, measured round by round in the same run (the
figure is their ratio), through the integrity wrapper as the node uses it;
then the time ``PRAGMA quick_check`` adds to opening a full pool.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from quantumrng.block import Block
from quantumrng.pool.integrity import KEY_BYTES, TaggedPool
from quantumrng.pool.sqlite import SqlitePool
from quantumrng.provenance import Provenance


class NoEraseSqlitePool(SqlitePool):
    """The SQLite pool as it was: the WAL keeps taken blocks until SQLite checkpoints."""

    def _erase_wal(self, conn: sqlite3.Connection) -> None:
        return None


def fill(pool: TaggedPool, blocks: int) -> None:
    for start in range(0, blocks, 256):
        prov = Provenance(source="os", harvest_id=f"bench-{start}", harvested_at=time.time())
        pool.put([Block(os.urandom(64), 512, prov) for _ in range(min(256, blocks - start))])


def per_take(pool: TaggedPool, takes: int) -> float:
    """Seconds per ``take(1)`` over ``takes`` takes."""
    start = time.perf_counter()
    for _ in range(takes):
        pool.take(1)
    return (time.perf_counter() - start) / takes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2048, help="a full pool (high water)")
    parser.add_argument("--takes", type=int, default=200, help="takes per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    key = os.urandom(KEY_BYTES)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        paths = {"erase": Path(tmp, "erase.sqlite3"), "keep": Path(tmp, "keep.sqlite3")}
        pools = {
            "erase": TaggedPool(SqlitePool(paths["erase"]), key),
            "keep": TaggedPool(NoEraseSqlitePool(paths["keep"]), key),
        }
        times: dict[str, list[float]] = {"erase": [], "keep": []}
        for _ in range(args.rounds):
            for name, pool in pools.items():
                fill(pool, args.blocks - pool.level().blocks)
                times[name].append(per_take(pool, args.takes))
        for pool in pools.values():
            fill(pool, args.blocks - pool.level().blocks)
            pool.close()
        erase, keep = statistics.median(times["erase"]), statistics.median(times["keep"])
        print(f"take(1), median of {args.rounds} rounds of {args.takes}, pool of {args.blocks}:")
        print(f"  without WAL erasure {keep * 1e6:9.1f} us")
        print(f"  with TRUNCATE       {erase * 1e6:9.1f} us   ratio {erase / keep:.2f}x")

        checks: list[float] = []
        opens: list[float] = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            SqlitePool(paths["erase"]).close()
            opens.append(time.perf_counter() - started)
            conn = sqlite3.connect(paths["erase"])
            started = time.perf_counter()
            conn.execute("PRAGMA quick_check(1)").fetchall()
            checks.append(time.perf_counter() - started)
            conn.close()
        size = paths["erase"].stat().st_size
        print(f"open of a full pool ({args.blocks} blocks, {size // 1024} KiB):")
        print(f"  whole open          {statistics.median(opens) * 1e3:9.2f} ms")
        print(f"  of which quick_check{statistics.median(checks) * 1e3:9.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
