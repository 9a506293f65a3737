"""drand beacon: the cost of a round against hashing to the curve, and rounds served per second.

Run: ``python bench/drand.py [--rounds R] [--requests N]``. A round of quicknet's
scheme is one hash to G1 (RFC 9380) and one scalar multiplication; the chained scheme
does the same on G2. This prints, measured in the same run, the time to sign one round
against the time of ``hash_to_curve`` alone (the ratio is what the multiplication and
encoding add), the time to check one (two pairings), then requests per second in
process (ASGI, no network) for distinct past rounds (each signed on demand), the same
round again (the LRU cache) and ``/drand/info`` (no signature: the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from py_arkworks_bls12381 import G1Point, G2Point, Scalar

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # bench/http.py would stand for the standard library's http

from quantumrng.block import Block
from quantumrng.config import Settings
from quantumrng.drand.chain import (
    CHAINED,
    DST_G1,
    DST_G2,
    UNCHAINED_G1,
    message,
    public_key,
    secret_scalar,
    sign,
    verify,
)
from quantumrng.drand.key import load_chain_secret
from quantumrng.node import Node
from quantumrng.provenance import Provenance
from quantumrng.server import create_app


def per_call(fn: Callable[[int], object], count: int) -> float:
    """Seconds per ``fn(i)`` over ``count`` calls."""
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return (time.perf_counter() - start) / count


def one_scheme(scheme: str, secret: Scalar, rounds: int, repeats: int) -> None:
    previous = os.urandom(96)
    dst, group = (DST_G2, G2Point) if scheme == CHAINED else (DST_G1, G1Point)
    pk = public_key(scheme, secret)
    msg = message(scheme, 7, previous)
    sig = sign(scheme, secret, msg)

    def hash_only(i: int) -> object:
        return group.hash_to_curve(message(scheme, i + 1, previous), dst)

    def sign_round(i: int) -> object:
        return sign(scheme, secret, message(scheme, i + 1, previous))

    def check(i: int) -> object:
        return verify(scheme, pk, msg, sig)

    hashed, signed, checked = [], [], []
    for _ in range(repeats):
        hashed.append(per_call(hash_only, rounds))
        signed.append(per_call(sign_round, rounds))
        checked.append(per_call(check, max(1, rounds // 4)))
    h, s, c = (statistics.median(x) for x in (hashed, signed, checked))
    print(
        f"  {scheme:26s} hash_to_curve {h * 1e3:6.3f} ms   sign {s * 1e3:6.3f} ms"
        f" ({s / h:.2f}x)   verify {c * 1e3:6.3f} ms ({c / h:.2f}x)"
    )


def crypto(rounds: int, repeats: int) -> None:
    secret = secret_scalar(os.urandom(64))
    print(f"one round, median of {repeats} runs of {rounds}:")
    for scheme in (UNCHAINED_G1, CHAINED):
        one_scheme(scheme, secret, rounds, repeats)


async def serving(requests: int, repeats: int) -> None:
    import httpx  # after the path fix: it imports the standard library's http

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        data = Path(tmp)
        settings = Settings(data_dir=data, pool="memory", source="simulator", drand_period=1)
        node = Node(settings, harvest_on_demand=False)
        prov = Provenance(source="simulator", harvest_id="bench", harvested_at=time.time())
        node.pool.put([Block(os.urandom(64), 0, prov) for _ in range(16)])
        past = time.time() - 10 * requests * repeats  # enough emitted rounds to never repeat
        load_chain_secret(data, lambda n: hashlib.sha512(os.urandom(64)).digest()[:n], lambda: past)
        transport = httpx.ASGITransport(app=create_app(settings, node))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            assert (await client.get("/drand/info")).status_code == 200
            next_round = iter(range(1, 10 * requests * repeats))
            paths: dict[str, Callable[[], str]] = {
                "/drand/info (baseline)": lambda: "/drand/info",
                "/drand/public/{new round}": lambda: f"/drand/public/{next(next_round)}",
                "/drand/public/1 (cached)": lambda: "/drand/public/1",
            }
            rates: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(repeats):
                for name, path in paths.items():
                    start = time.perf_counter()
                    for _ in range(requests):
                        assert (await client.get(path())).status_code == 200
                    rates[name].append(requests / (time.perf_counter() - start))
        node.close()
    base = statistics.median(rates["/drand/info (baseline)"])
    print(f"requests/s in process, median of {repeats} runs of {requests}:")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:28s} {rate:9.0f}/s   ratio to info {rate / base:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="signatures per measurement")
    parser.add_argument("--requests", type=int, default=300, help="requests per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    crypto(args.rounds, args.repeats)
    asyncio.run(serving(args.requests, args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
