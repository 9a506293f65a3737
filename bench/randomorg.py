"""RANDOM.ORG's JSON-RPC against the native route: ``generateIntegers`` (and its signed
variant) with n=1 against ``GET /api/v2/integers?n=1``, in one run.

Run: ``python bench/randomorg.py [--seconds S] [--rounds R] [--concurrency C]``.

The app runs in process over a SQLite pool and source ``os``, ASGI called directly on
one event loop (no socket, no HTTP parser), ``C`` requests in flight (default 64).
The JSON-RPC calls present an unlimited API key in ``params.apiKey``; the baseline is
anonymous (also unlimited), so neither touches a rate or quota store. Rounds
alternate the three so a noisy machine slows all alike; prints the medians and the
ratios to the baseline (the price of JSON-RPC parsing, admission from the body and
RANDOM.ORG's usage fields; and of signing, logging and storing a ``random`` object).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # bench/http.py would stand for the standard library's http

from quantumrng.config import load_settings
from quantumrng.node import Node
from quantumrng.server import create_app
from quantumrng.server.keys import KeyStore

Request = tuple[str, str, bytes, bytes]  # method, path, query, body


def scope(method: str, path: str, query: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5000),
    }


async def one(app: Any, request: Request) -> bytes:
    """The answer's body (the JSON-RPC status is always 200: its body says)."""
    method, path, query, body = request
    out = bytearray()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            out.extend(message.get("body", b""))

    await app(scope(method, path, query), receive, send)
    return bytes(out)


async def rate(
    app: Any, request: Request, ok: Callable[[bytes], bool], seconds: float, c: int
) -> float:
    """Requests/s answered as ``ok`` says with ``c`` in flight for ``seconds``."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            if not ok(await one(app, request)):
                raise SystemExit(f"bench/randomorg.py: a request failed ({request[1]})")
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    return done / (time.perf_counter() - start)


def rpc(method: str, key: str) -> Request:
    body = {"jsonrpc": "2.0", "method": method, "id": 1}
    body["params"] = {"apiKey": key, "n": 1, "min": 1, "max": 6}  # type: ignore[assignment]
    return ("POST", "/json-rpc/4/invoke", b"", json.dumps(body).encode())


def rpc_ok(body: bytes) -> bool:
    return b'"result"' in body


def native_ok(body: bytes) -> bool:
    return b'"data"' in body


async def run(args: argparse.Namespace, data_dir: Path) -> int:
    settings = load_settings(
        overrides={"data_dir": data_dir, "pool": "sqlite", "source": "os"}, environ={}
    )
    key, _ = KeyStore(settings.keys_path).create("bench", {"drbg"}, None, None)
    node = Node(settings)
    app = create_app(settings, node)
    cases: dict[str, tuple[Request, Callable[[bytes], bool]]] = {
        "GET /api/v2/integers?n=1": (
            ("GET", "/api/v2/integers", b"n=1&min=1&max=6", b""),
            native_ok,
        ),
        "generateIntegers n=1": (rpc("generateIntegers", key), rpc_ok),
        "GET ...&signed=true": (
            ("GET", "/api/v2/integers", b"n=1&min=1&max=6&signed=true", b""),
            native_ok,
        ),
        "generateSignedIntegers n=1": (rpc("generateSignedIntegers", key), rpc_ok),
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for request, ok in cases.values():  # warm: seed, open the stores, make the log key
            await rate(app, request, ok, 0.3, args.concurrency)
        for r in range(args.rounds):
            for name, (request, ok) in cases.items():
                rates[name].append(await rate(app, request, ok, args.seconds, args.concurrency))
            line = ", ".join(f"{n} {v[-1]:7.0f}" for n, v in rates.items())
            print(f"round {r + 1}: {line} req/s", file=sys.stderr)
    finally:
        node.close()
    base_name = next(iter(cases))
    base = statistics.median(rates[base_name])
    print(f"in-process ASGI, sqlite pool, {args.concurrency} in flight, median of {args.rounds}")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:28s} {median:8.0f} requests/s   ratio to baseline {median / base:5.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    raise SystemExit(main())
