"""One ``qrng serve`` process for a benchmark: a free loopback port, ready before use,
stopped (its whole process group) after. Shared by the benchmarks that measure
through HTTP, so each measures the same server the same way."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT = 120.0  # seconds for the server to become ready on a busy machine


def free_port() -> int:
    """A loopback port free at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(data_dir: Path, *flags: str, settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run ``qrng serve --source os`` with ``flags`` (data under ``data_dir``, ``QRNG_*``
    from ``settings`` only) until ``/ready`` answers 200; yield its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    env.update(settings or {})
    log = data_dir / "server.log"
    command = [
        *(sys.executable, "-m", "quantumrng", "serve", "--host", "127.0.0.1"),
        *("--port", str(port), "--data-dir", str(data_dir / "data"), "--source", "os"),
        *("--log-level", "warning", "--no-access-log", *flags),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(base + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"qrng serve did not start; see {log}")
            time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
