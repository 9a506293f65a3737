"""Signed answers against unsigned ones: ``integers?n=1`` with and without ``signed=true``.

Run: ``python bench/signed.py [--http] [--seconds S] [--rounds R] [--concurrency C] [--pool P]``.

Two ways, both over a ``P`` pool (default ``sqlite``: its ledger
``ledger.sqlite3`` is where signed results are appended, batched by the log's
group commit; with ``--pool redis`` a prefix of this run's own on
``--redis-url``, removed after), one worker, ``C`` requests in flight (default 64):

- default: the app in process, ASGI called directly on one event loop (no
  socket, no HTTP parser): the server's own cost, the strictest ratio;
- ``--http``: ``qrng serve`` (one worker) loaded by ``wrk`` over keep-alive
  connections, as ``bench/http.py`` measures (``wrk`` installed from Debian's
  packages when missing).

Each round measures unsigned then signed requests/s for ``S`` seconds; rounds
alternate so a noisy shared machine slows both alike. Prints the medians and
their ratio (goal: signed >= 0.5 x unsigned, issue 9); in process also the
mean results per append.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # bench/http.py would stand for the standard library's http


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for bench._serve
from bench._serve import serve

from quantumrng.config import load_settings
from quantumrng.node import Node
from quantumrng.server import create_app

UNSIGNED = b"n=1&min=1&max=6"
SIGNED = UNSIGNED + b"&signed=true"


def scope(query: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v2/integers",
        "raw_path": b"/api/v2/integers",
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5000),
    }


async def one(app: Any, query: bytes) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope(query), receive, send)
    return status


async def rate(app: Any, query: bytes, seconds: float, concurrency: int) -> float:
    """Requests/s answered 200 with ``concurrency`` in flight for ``seconds``."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            if await one(app, query) != 200:
                raise SystemExit(f"bench/signed.py: a request failed ({query.decode()})")
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def run(args: argparse.Namespace, data_dir: Path) -> int:
    settings = load_settings(
        overrides={"data_dir": data_dir, "pool": args.pool, "source": "os", **redis(args)},
        environ={},
    )
    node = Node(settings)
    app = create_app(settings, node)
    try:
        for query in (UNSIGNED, SIGNED):  # warm: seed, open the ledger, make the key
            await rate(app, query, 0.3, args.concurrency)
        batches_before = node.log.batches
        serial_before = node.log_store.size()
        unsigned, signed = [], []
        for r in range(args.rounds):
            unsigned.append(await rate(app, UNSIGNED, args.seconds, args.concurrency))
            signed.append(await rate(app, SIGNED, args.seconds, args.concurrency))
            print(
                f"round {r + 1}: unsigned {unsigned[-1]:8.0f} req/s, "
                f"signed {signed[-1]:8.0f} req/s",
                file=sys.stderr,
            )
        appended = node.log_store.size() - serial_before
        batches = max(1, node.log.batches - batches_before)
    finally:
        node.close()
    print(f"results per append: {appended / batches:.1f} ({appended} results, {batches} appends)")
    return report(args, "in-process ASGI", unsigned, signed)


def redis(args: argparse.Namespace) -> dict[str, str]:
    """With ``--pool redis``: this run's own key prefix on ``--redis-url``."""
    if args.pool != "redis":
        return {}
    return {"redis_url": args.redis_url, "redis_key": args.redis_key}


def drop_redis_keys(args: argparse.Namespace) -> None:
    """Remove what this run stored in Redis (every key under its prefix)."""
    if args.pool != "redis":
        return
    import redis as redis_py

    client = redis_py.Redis.from_url(args.redis_url)
    try:
        names = list(client.scan_iter(match=f"{{{args.redis_key}}}:*", count=1000))
        for start in range(0, len(names), 1000):
            client.unlink(*names[start : start + 1000])
    finally:
        client.close()


def report(args: argparse.Namespace, how: str, unsigned: list[float], signed: list[float]) -> int:
    u, s = statistics.median(unsigned), statistics.median(signed)
    print(f"integers?n=1, {args.pool} pool, {args.concurrency} in flight, {how}")
    print(f"unsigned:          {u:8.0f} requests/s (median of {args.rounds})")
    print(f"signed=true:       {s:8.0f} requests/s (median of {args.rounds})")
    print(f"ratio:             {s / u:8.2f}  (goal >= 0.5)")
    return 0 if s / u >= 0.5 else 1


def ensure_wrk() -> str:
    """The path of ``wrk``, installed from Debian's packages if missing (as bench/http.py)."""
    found = shutil.which("wrk")
    if found is None:
        print("installing wrk (apt-get install -y wrk) ...", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "wrk"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit("bench/signed.py: wrk is missing and apt-get could not install it")
    return found


def wrk_rate(wrk: str, url: str, seconds: float, connections: int) -> float:
    """Requests/s ``wrk`` measured; exits if any answer was not 2xx."""
    done = subprocess.run(
        [wrk, "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", url],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in done.stdout:
        raise SystemExit(f"bench/signed.py: errors from {url}:\n{done.stdout}")
    match = re.search(r"Requests/sec:\s+([0-9.]+)", done.stdout)
    if match is None:
        raise SystemExit(f"bench/signed.py: no rate in wrk's output:\n{done.stdout}")
    return float(match.group(1))


def run_http(args: argparse.Namespace, data_dir: Path) -> int:
    wrk = ensure_wrk()
    settings = {f"QRNG_{k.upper()}": v for k, v in redis(args).items()}
    with serve(data_dir, "--pool", args.pool, "--workers", "1", settings=settings) as base:
        path = base + "/api/v2/integers?"
        for query in (UNSIGNED, SIGNED):  # warm: seed, open the ledger, make the key
            wrk_rate(wrk, path + query.decode(), 1, args.concurrency)
        unsigned, signed = [], []
        for r in range(args.rounds):
            unsigned.append(wrk_rate(wrk, path + UNSIGNED.decode(), args.seconds, args.concurrency))
            signed.append(wrk_rate(wrk, path + SIGNED.decode(), args.seconds, args.concurrency))
            print(
                f"round {r + 1}: unsigned {unsigned[-1]:8.0f} req/s, "
                f"signed {signed[-1]:8.0f} req/s",
                file=sys.stderr,
            )
    return report(args, "qrng serve (1 worker) and wrk", unsigned, signed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="qrng serve and wrk")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool", choices=("sqlite", "redis", "memory"), default="sqlite")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    args.redis_key = f"bench-signed-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="qrng-bench-signed-") as tmp:
        try:
            if args.http:
                return run_http(args, Path(tmp))
            return asyncio.run(run(args, Path(tmp)))
        finally:
            drop_redis_keys(args)


if __name__ == "__main__":
    sys.exit(main())
