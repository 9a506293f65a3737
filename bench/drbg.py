"""Engine throughput against os.urandom and a bare AES-256-CTR keystream.

Run: ``python bench/drbg.py [--seconds S]``. Every figure is a ratio to a
baseline measured in the same run, interleaved round by round, so a noisy
shared machine slows both sides alike. Goals (issue 2): at 1 MiB at least
5x os.urandom and 0.5x bare AES-CTR; at 64 B at least 1x os.urandom.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from quantumrng.block import Block
from quantumrng.engine import Engine
from quantumrng.pool.memory import MemoryPool
from quantumrng.provenance import Provenance

SIZES = {"64 B": 64, "4 KiB": 4096, "1 MiB": 1 << 20, "64 MiB": 64 << 20}


def bare_aes_ctr(n: int) -> Callable[[], bytes]:
    """A fresh AES-256-CTR keystream of n bytes: the cost floor of CTR_DRBG."""
    key, zeros = os.urandom(32), bytes(n)

    def run() -> bytes:
        enc = Cipher(algorithms.AES(key), modes.CTR(os.urandom(16))).encryptor()
        return enc.update(zeros)

    return run


def rate(fn: Callable[[], bytes], n: int, seconds: float) -> float:
    """Bytes per second of fn over about ``seconds`` (at least 3 calls)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            return calls * n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    pool = MemoryPool()
    prov = Provenance(source="os", harvest_id="bench", harvested_at=time.time())
    pool.put([Block(os.urandom(64), 512, prov) for _ in range(64)])
    engine = Engine(pool, source="os")
    engine.random_bytes(1)

    print(f"{'size':>7} {'engine MB/s':>12} {'urandom MB/s':>13} {'AES-CTR MB/s':>13}"
          f" {'x urandom':>10} {'x AES-CTR':>10}")
    ok = True
    for label, n in SIZES.items():
        seconds = args.seconds * (4 if n >= 64 << 20 else 1)
        contenders = {
            "engine": lambda n=n: engine.random_bytes(n),
            "urandom": lambda n=n: os.urandom(n),
            "aes": bare_aes_ctr(n),
        }
        samples: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                samples[name].append(rate(fn, n, seconds))
        med = {k: statistics.median(v) for k, v in samples.items()}
        vs_os, vs_aes = med["engine"] / med["urandom"], med["engine"] / med["aes"]
        print(f"{label:>7} {med['engine'] / 1e6:12.1f} {med['urandom'] / 1e6:13.1f}"
              f" {med['aes'] / 1e6:13.1f} {vs_os:10.2f} {vs_aes:10.2f}")
        if n == 64:
            ok &= vs_os >= 1.0
        if n == 1 << 20:
            ok &= vs_os >= 5.0 and vs_aes >= 0.5
    print("goals met" if ok else "goals NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
