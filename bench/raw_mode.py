"""Raw mode as RBG3(XOR): the cost of the per-request DRBG mask against plain pool bytes.

Run: ``python bench/raw_mode.py [--rounds R]``. ``mode=raw`` now serves
conditioned pool bytes XOR a CTR_DRBG instantiated for the request
(``quantumrng.rbg3``, issue 7). This prints, per request size, the time of
``Node.raw_bytes`` (check, take, mask) against ``Engine.raw_bytes`` (the take
alone, what raw mode served before) on the same in-memory pool, measured
round by round in the same run; the figure is their ratio (new / old).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from quantumrng.block import BLOCK_BYTES, Block
from quantumrng.config import load_settings
from quantumrng.node import Node
from quantumrng.provenance import Provenance

SIZES = (64, 4096, 65536)


def refill(node: Node, blocks: int) -> None:
    for start in range(0, blocks, 256):
        prov = Provenance(source="file", harvest_id=f"b{start}-{time.time_ns()}", harvested_at=0.0)
        node.pool.put([Block(os.urandom(64), 512, prov) for _ in range(min(256, blocks - start))])


def timed(read: Callable[[int], object], n: int, requests: int) -> float:
    start = time.perf_counter()
    for _ in range(requests):
        read(n)
    return (time.perf_counter() - start) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bytes-per-round", type=int, default=4 << 20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            overrides={"data_dir": Path(tmp), "pool": "memory", "source": "file"}, environ={}
        )
        node = Node(settings, harvest_on_demand=False)
        print(f"{'request':>10} {'plain take':>14} {'RBG3(XOR)':>14} {'ratio':>7}")
        for n in SIZES:
            requests = max(1, args.bytes_per_round // n)
            old: list[float] = []
            new: list[float] = []
            for _ in range(args.rounds):
                blocks = 2 * requests * -(-n // BLOCK_BYTES)
                refill(node, blocks)
                old.append(timed(lambda k: node.engine.raw_bytes(k), n, requests))
                new.append(timed(lambda k: node.raw_bytes(k), n, requests))
            o, w = statistics.median(old), statistics.median(new)
            print(f"{n:>9}B {o * 1e6:>11.1f} us {w * 1e6:>11.1f} us {w / o:>6.2f}x")
        node.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
