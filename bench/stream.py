"""Throughput of ``qrng stream`` (the local DRBG) into a pipe, against /dev/urandom.

Run: ``python bench/stream.py [--mib N] [--rounds R] [--chunk BYTES]``. Each
round reads N MiB from ``qrng stream`` (source ``os``, a fresh data dir)
and from ``head -c`` of ``/dev/urandom``, each through a pipe into this
process, timed from the first byte (interpreter start excluded); the two
alternate round by round so a noisy machine slows both alike. Prints each
one's median MB/s and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

READ = 1 << 20


def drain(cmd: list[str], n: int, env: dict[str, str] | None = None) -> float:
    """Bytes per second read from ``cmd``'s standard output, from its first byte to n bytes."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = bytearray(READ)
    try:
        got = os.readv(fd, [buffer])
        if got <= 0:
            raise SystemExit(f"{cmd[0]} wrote nothing")
        start = time.perf_counter()
        total = 0
        while total < n:
            got = os.readv(fd, [buffer])
            if got <= 0:
                raise SystemExit(f"{cmd[0]} stopped after {total} bytes")
            total += got
        return total / (time.perf_counter() - start)
    finally:
        proc.stdout.close()
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB read per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=1 << 16, help="qrng stream --chunk")
    args = parser.parse_args()
    n = args.mib << 20
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
        env.update(QRNG_DATA_DIR=data, QRNG_SOURCE="os")
        contenders = {
            "qrng stream": (
                [sys.executable, "-m", "quantumrng", "stream", "--chunk", str(args.chunk)],
                env,
            ),
            "/dev/urandom": (["head", "-c", str(n + READ), "/dev/urandom"], None),
        }
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, (cmd, cmd_env) in contenders.items():
                rates[name].append(drain(cmd, n, cmd_env))
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"{args.mib} MiB through a pipe, median of {args.rounds} rounds")
    for name, rate in median.items():
        print(f"{name:>14}: {rate / 1e6:8.1f} MB/s")
    print(f"{'ratio':>14}: {median['qrng stream'] / median['/dev/urandom']:8.2f}x /dev/urandom")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
