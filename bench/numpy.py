"""NumPy front end against numpy's default PCG64 Generator.

Run: ``python bench/numpy.py [--rounds R] [--block-bytes B]``. Each figure is
a ratio to ``numpy.random.default_rng()`` measured in the same run, the two
interleaved round by round (best of a few calls per round, median over
rounds), so a noisy shared machine slows both sides alike. Goal (issue 10):
``random(10**6)`` and ``integers(0, 6, 10**6)`` at least 0.25x PCG64. Also
printed: the import time of ``quantumrng.numpy`` and the first ``generator()``
call (loading the compiled bit functions from numba's cache) in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

# Run as a script, this file's folder comes first on sys.path and its name would hide numpy.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import numpy  # noqa: E402

from quantumrng import numpy as qnumpy  # noqa: E402
from quantumrng.block import Block  # noqa: E402
from quantumrng.engine import Engine  # noqa: E402
from quantumrng.pool.memory import MemoryPool  # noqa: E402
from quantumrng.provenance import Provenance  # noqa: E402

GOAL = 0.25
N = 10**6
DRAWS: dict[str, Callable[[numpy.random.Generator], object]] = {
    "random(10**6)": lambda rng: rng.random(N),
    "integers(0, 6, 10**6)": lambda rng: rng.integers(0, 6, N),
    "standard_normal(10**6)": lambda rng: rng.standard_normal(N),
}
GOALS = ("random(10**6)", "integers(0, 6, 10**6)")

STARTUP = """
import time
start = time.perf_counter()
import quantumrng.numpy as q
imported = time.perf_counter()
q.from_fill(lambda view: None)
print(imported - start, time.perf_counter() - imported)
"""


def best_seconds(
    draw: Callable[[numpy.random.Generator], object], rng: numpy.random.Generator, calls: int
) -> float:
    """The fastest of ``calls`` draws: the least disturbed by other processes."""
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        draw(rng)
        best = min(best, time.perf_counter() - start)
    return best


def startup_seconds() -> tuple[float, float]:
    """Import and first-generator seconds in a fresh interpreter (numba's cache warm)."""
    run = [sys.executable, "-c", STARTUP]
    subprocess.run(run, check=True, capture_output=True)  # fills the cache if it is cold
    out = subprocess.run(run, check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5, help="per round, best kept")
    parser.add_argument("--block-bytes", type=int, default=qnumpy.DEFAULT_BLOCK_BYTES)
    args = parser.parse_args()

    pool = MemoryPool()
    prov = Provenance(source="os", harvest_id="bench", harvested_at=time.time())
    pool.put([Block(os.urandom(64), 512, prov) for _ in range(64)])
    engine = Engine(pool, source="os")
    ours = qnumpy.generator(engine=engine, block_bytes=args.block_bytes)
    pcg64 = numpy.random.default_rng()
    ours.random(N)

    print(f"block {args.block_bytes} B; best of {args.calls} calls, median of {args.rounds} rounds")
    print(f"{'draw':>24} {'ours ms':>8} {'PCG64 ms':>9} {'x PCG64':>8}")
    ok = True
    for label, draw in DRAWS.items():
        samples: dict[str, list[float]] = {"ours": [], "pcg64": []}
        for _ in range(args.rounds):
            samples["ours"].append(best_seconds(draw, ours, args.calls))
            samples["pcg64"].append(best_seconds(draw, pcg64, args.calls))
        med = {k: statistics.median(v) for k, v in samples.items()}
        ratio = med["pcg64"] / med["ours"]
        print(f"{label:>24} {med['ours'] * 1e3:8.2f} {med['pcg64'] * 1e3:9.2f} {ratio:8.2f}")
        if label in GOALS:
            ok &= ratio >= GOAL
    imported, first = startup_seconds()
    print(f"import quantumrng.numpy {imported:.2f} s; first generator() {first:.2f} s")
    print("goals met" if ok else "goals NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
