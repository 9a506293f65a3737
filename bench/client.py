"""AsyncClient against the blocking Client, and prefetched reads against one request each
(issue 12, "Async client").

Run: ``python bench/client.py [--rounds R] [--calls N] [--concurrency C ...] [--reads M]
[--rtt-ms MS]``.

One ``qrng serve`` process (source ``os``, one worker, loopback) serves both sides
of each figure, measured alternately round by round (median over rounds) so a
noisy shared machine slows both alike:

1. ``N`` small requests (``integers(4, 1, 6)``): ``AsyncClient`` with
   ``asyncio.gather`` under a semaphore of ``C`` (1, 4 and 16 by default) against
   ``Client`` calling them one after another; ops/s each and the ratio async / sync.
   On loopback there is no latency for concurrency to hide: the figure is the
   clients' own cost per request (httpx's async stack costs more than its blocking
   one). The same comparison then runs through a TCP relay that delays each chunk
   by half of ``--rtt-ms`` (10 ms by default) each way, as a server farther away.
2. ``M`` calls of ``AsyncClient.read(32)`` with ``prefetch=65536`` against
   ``prefetch=0`` (a request per read); reads/s each and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and bench/http.py would hide http.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for bench._serve
from bench._serve import free_port, serve  # noqa: E402

from quantumrng.client import AsyncClient, Client  # noqa: E402

START_TIMEOUT = 120.0
PREFETCH = 65536

DELAY_PROXY = """
import asyncio, sys

LISTEN, UPSTREAM, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 2000


async def pump(reader, writer):
    try:
        while data := await reader.read(65536):
            await asyncio.sleep(DELAY)
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def relay(client_reader, client_writer):
    reader, writer = await asyncio.open_connection("127.0.0.1", UPSTREAM)
    await asyncio.gather(pump(client_reader, writer), pump(reader, client_writer))


async def main():
    server = await asyncio.start_server(relay, "127.0.0.1", LISTEN)
    print("ready", flush=True)
    await server.serve_forever()


asyncio.run(main())
"""


def start_delay_proxy(base: str, rtt_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    """A TCP relay to ``base`` that holds each chunk rtt_ms/2 each way: a server farther
    away than loopback."""
    port = free_port()
    upstream = base.rsplit(":", 1)[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", DELAY_PROXY, str(port), upstream, str(rtt_ms)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise SystemExit("bench/client.py: the delay relay did not start")
    return proc, f"http://127.0.0.1:{port}"


def sync_rate(base: str, calls: int) -> float:
    with Client(base) as c:
        c.integers(4, 1, 6)  # connect first, as the async side does
        start = time.perf_counter()
        for _ in range(calls):
            c.integers(4, 1, 6)
        return calls / (time.perf_counter() - start)


async def async_rate(base: str, calls: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async with AsyncClient(base) as c:

        async def one() -> list[int]:
            async with gate:
                return await c.integers(4, 1, 6)

        await asyncio.gather(*(one() for _ in range(concurrency)))  # open the connections
        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(calls)))
        return calls / (time.perf_counter() - start)


async def read_rate(base: str, reads: int, prefetch: int) -> float:
    async with AsyncClient(base, prefetch=prefetch) as c:
        await c.read(32)  # connect (and the first fill)
        start = time.perf_counter()
        for _ in range(reads):
            await c.read(32)
        return reads / (time.perf_counter() - start)


def median_rates(rounds: int, contenders: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Each contender's median rate, all run once per round, in turn."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(rounds):
        for name, measure in contenders.items():
            rates[name].append(measure())
        line = ", ".join(f"{name} {values[-1]:.0f}/s" for name, values in rates.items())
        print(f"round {r + 1}: {line}", file=sys.stderr)
    return {name: statistics.median(values) for name, values in rates.items()}


def compare_clients(args: argparse.Namespace, base: str, where: str) -> None:
    def gathered(concurrency: int) -> Callable[[], float]:
        return lambda: asyncio.run(async_rate(base, args.calls, concurrency))

    contenders = {"sync": lambda: sync_rate(base, args.calls)}
    contenders.update({f"async x{c}": gathered(c) for c in args.concurrency})
    rates = median_rates(args.rounds, contenders)
    sync = rates.pop("sync")
    print(f"{args.calls} integers(4, 1, 6) calls {where}, median of {args.rounds} rounds:")
    print(f"  Client, one after another:          {sync:7.0f} ops/s")
    for name, rate in rates.items():
        concurrency = name.removeprefix("async x")
        print(
            f"  AsyncClient, gather (concurrency {concurrency:>2}): {rate:7.0f} ops/s"
            f"  ratio async / sync {rate / sync:.2f}"
        )


def run(args: argparse.Namespace, base: str) -> None:
    def reads(prefetch: int) -> Callable[[], float]:
        return lambda: asyncio.run(read_rate(base, args.reads, prefetch))

    compare_clients(args, base, "on loopback")
    if args.rtt_ms > 0:
        proc, relayed = start_delay_proxy(base, args.rtt_ms)
        try:
            compare_clients(args, relayed, f"through a {args.rtt_ms:g} ms round-trip relay")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
    reading = median_rates(args.rounds, {"on": reads(PREFETCH), "off": reads(0)})
    on, off = reading["on"], reading["off"]
    print(
        f"{args.reads} AsyncClient.read(32) calls, median of {args.rounds} rounds:\n"
        f"  prefetch={PREFETCH}: {on:9.0f} reads/s\n"
        f"  prefetch=0:     {off:9.0f} reads/s\n"
        f"  ratio prefetch on / off: {on / off:.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4, 16], help="requests in flight"
    )
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument(
        "--rtt-ms", type=float, default=10.0, help="also through a relay this slow; 0: not"
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="qrng-bench-client-") as tmp,
        serve(Path(tmp), "--workers", "1") as base,
    ):
        run(args, base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
