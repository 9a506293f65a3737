"""MQTT: signed entropy chunks per second through a broker, verified, against unsigned payloads.

Run: ``python bench/mqtt.py [--broker URL] [--chunks N] [--bytes B] [--rounds R]``
(default: the Mosquitto on ``mqtt://127.0.0.1:1883``, 1000 chunks of 32 bytes, 3 rounds).

Before timing, ``N`` signed chunks of ``B`` bytes are fetched from a ``qrng serve``
started here (OS source), so the service's cost is not measured. Each round then
times the broker round trip twice, on a topic of this run's own:

- baseline: ``N`` payloads of ``B`` random bytes, unsigned, published one at a time
  with QoS 1, each awaiting its PUBACK (as ``qrng mqtt publish`` does), received by a
  subscriber that checks nothing;
- signed: the ``N`` chunks (the signed objects as JSON, :mod:`quantumrng.mqtt`)
  published the same way, received by a subscriber whose ``Verifier`` checks each
  Ed25519 signature and serial (as ``qrng mqtt subscribe --verify``).

A rate is ``N`` over the time from the first publish to the subscriber's last
message; publisher and subscriber are two sessions of this one process. Rounds
alternate, so a noisy machine slows both alike; prints the medians and the ratio
signed / baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # bench/http.py would stand for the standard library's http


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for bench._serve
from bench._serve import serve

from quantumrng.client import Client, load_public_keys
from quantumrng.mqtt import BrokerConfig, Session, Verifier, chunk_payload, parse_broker, topics

TIMEOUT = 30.0  # seconds for any one message


def fetch_chunks(data_dir: Path, count: int, size: int) -> tuple[list[dict[str, Any]], Any]:
    """``count`` signed chunks and the service's public keys, from a ``qrng serve`` of its own."""
    with serve(data_dir) as base, Client(base) as client:
        keys = client.public_keys()
        chunks = [client.signed_bytes(size)[1] for _ in range(count)]
    return chunks, keys


def round_trip(
    config: BrokerConfig, topic: str, payloads: list[bytes], check: Callable[[bytes], bool]
) -> float:
    """Messages/s: publish ``payloads`` (PUBACK each) and receive them, ``check``ing each."""
    failures: list[str] = []
    done = threading.Event()
    with Session(config) as subscriber, Session(config) as publisher:
        subscriber.subscribe([topic])

        def receive() -> None:
            try:
                for _ in payloads:
                    message = subscriber.receive(TIMEOUT)
                    if message is None or not check(message.payload):
                        failures.append("a message was lost or did not verify")
                        return
            finally:
                done.set()

        thread = threading.Thread(target=receive)
        start = time.perf_counter()
        thread.start()
        for body in payloads:
            publisher.publish(topic, body)
        done.wait(TIMEOUT * 2)
        elapsed = time.perf_counter() - start
        thread.join(TIMEOUT)
    if failures:
        raise SystemExit(f"bench/mqtt.py: {failures[0]}")
    return len(payloads) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--bytes", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = BrokerConfig(parse_broker(args.broker), timeout=TIMEOUT)
    layout = topics(f"qrng-bench/{uuid.uuid4().hex}")
    with tempfile.TemporaryDirectory(prefix="qrng-bench-mqtt-") as tmp:
        print(f"fetching {args.chunks} signed chunks of {args.bytes} bytes ...", file=sys.stderr)
        chunks, keys = fetch_chunks(Path(tmp), args.chunks, args.bytes)
    pinned = load_public_keys(keys)
    signed = [chunk_payload(c) for c in chunks]
    unsigned = [os.urandom(args.bytes) for _ in chunks]
    round_trip(config, layout.entropy, unsigned[:50], lambda _: True)  # warm: connect, TLS, JIT
    baseline, verified = [], []
    for r in range(args.rounds):
        baseline.append(round_trip(config, layout.entropy, unsigned, lambda _: True))
        check = Verifier(pinned).check_chunk
        verified.append(round_trip(config, layout.entropy, signed, lambda b, c=check: c(b).valid))
        print(
            f"round {r + 1}: unsigned {baseline[-1]:7.0f} msg/s, "
            f"signed+verified {verified[-1]:7.0f} msg/s",
            file=sys.stderr,
        )
    b, v = statistics.median(baseline), statistics.median(verified)
    size = sum(map(len, signed)) / len(signed)
    print(f"{args.chunks} messages through {config.broker}, QoS 1, PUBACK awaited per message")
    print(
        f"unsigned, unchecked:  {b:8.0f} messages/s (median of {args.rounds}; {args.bytes} B each)"
    )
    print(f"signed, verified:     {v:8.0f} chunks/s   (median of {args.rounds}; {size:.0f} B each)")
    print(f"ratio:                {v / b:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
