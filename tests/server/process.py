"""A real `qrng serve` process on a free loopback port, for end-to-end and attack tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT = 90.0  # seconds for the server to become ready (shared, busy CI machine)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A running `qrng serve` process."""

    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.log = log

    def processes(self) -> list[int]:
        """The server's pid and its children's (the workers)."""
        pids = [self.proc.pid]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    pids.append(int(entry))
        return pids


@contextmanager
def run_server(
    tmp: Path,
    *flags: str,
    verify: ssl.SSLContext | bool = True,
    settings: Mapping[str, str] | None = None,
    wait_for: str = "/ready",
) -> Iterator[Server]:
    """Run `qrng serve` (source os) on a free loopback port until ``wait_for`` answers 200;
    stop it after.

    ``flags`` go on the command line, ``settings`` into ``QRNG_<NAME>`` variables.
    """
    port = free_port()
    scheme = "https" if "--tls-cert" in flags else "http"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    env.update({f"QRNG_{name.upper()}": value for name, value in (settings or {}).items()})
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quantumrng",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(tmp / "data"),
                "--source",
                "os",
                *flags,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(proc, f"{scheme}://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}: {log.read_text()}")
            try:
                if (
                    httpx.get(server.base_url + wait_for, verify=verify, timeout=2).status_code
                    == 200
                ):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready: {log.read_text()}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.2)  # the poll interval, cut short if the server exits
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
