"""``qrng feed`` run as at boot, against a real ``qrng serve`` process and its pinned key."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from quantumrng.feed import RNDADDENTROPY
from tests.cli.support import qrng
from tests.server.process import Server, free_port, run_server

RUN_TIMEOUT = 60  # seconds for one qrng feed process


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """A running service and its signing key, pinned from GET /api/v2/keys/public."""
    tmp = tmp_path_factory.mktemp("feed-service")
    with run_server(tmp) as server:
        listed = httpx.get(server.base_url + "/api/v2/keys/public", timeout=10).json()
        pem = tmp / "service.pem"
        pem.write_text(listed["keys"][0]["pem"])
        (tmp / "keys.json").write_text(json.dumps(listed))
        yield server, pem


class Proxy:
    """A loopback HTTP proxy in front of the service that can alter its answers."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.alter: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: body
        self.replay: bytes | None = None
        self.replaying = False
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if proxy.replaying and proxy.replay is not None:
                    status, payload = 200, proxy.replay
                else:
                    answer = httpx.get(proxy.upstream + self.path, timeout=10)
                    status, payload = answer.status_code, answer.content
                    if status == 200:
                        payload = json.dumps(proxy.alter(answer.json())).encode()
                        proxy.replay = payload
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(service: tuple[Server, Path]) -> Iterator[Proxy]:
    p = Proxy(service[0].base_url)
    yield p
    p.close()


def feed(tmp_path: Path, url: str, pem: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return qrng(
        tmp_path, "feed", "--url", url, "--public-key", str(pem), *args, timeout=RUN_TIMEOUT
    )


def one_line(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert done.stdout == b""
    return lines[0]


def device(tmp_path: Path, content: bytes = b"") -> Path:
    path = tmp_path / "device"
    path.write_bytes(content)
    return path


def test_feed_once_writes_exactly_the_signed_bytes(
    tmp_path: Path, service: tuple[Server, Path]
) -> None:
    server, pem = service
    dev, state = device(tmp_path), tmp_path / "state"
    done = feed(
        tmp_path, server.base_url, pem, "--once", "--device", str(dev), "--state", str(state)
    )
    assert done.returncode == 0, done.stderr
    serial = json.loads(state.read_text())["serial"]
    assert f"mixed 64 bytes (serial {serial}, " in one_line(done)
    stored = httpx.get(f"{server.base_url}/api/v2/results/{serial}", timeout=10).json()
    fed = dev.read_bytes()
    assert fed == base64.b64decode(stored["signed"]["result"]["data"]) and len(fed) == 64
    for text in (fed.hex(), base64.b64encode(fed).decode(), fed[:8].hex()):
        assert text not in done.stderr.decode()  # never logged
    keys = pem.with_name("keys.json")  # the saved key list pins the key as well
    again = qrng(tmp_path, "feed", "--url", server.base_url, "--keys", str(keys),
                 "--device", str(dev), "--state", str(state))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert len(dev.read_bytes()) == 128
    assert json.loads(state.read_text())["serial"] > serial


def test_a_tampered_answer_is_refused_and_nothing_written(
    tmp_path: Path, service: tuple[Server, Path], proxy: Proxy
) -> None:
    def flip(body: dict[str, Any]) -> dict[str, Any]:
        raw = bytearray(base64.b64decode(body["data"]))
        raw[0] ^= 1
        body["data"] = body["signed"]["result"]["data"] = base64.b64encode(raw).decode()
        return body

    proxy.alter = flip
    dev = device(tmp_path, b"before")
    done = feed(tmp_path, proxy.url, service[1], "--device", str(dev))
    assert done.returncode == 3
    assert "signature does not match" in one_line(done)
    assert dev.read_bytes() == b"before"


def test_an_answer_whose_bytes_differ_from_the_signed_ones_is_refused(
    tmp_path: Path, service: tuple[Server, Path], proxy: Proxy
) -> None:
    def swap(body: dict[str, Any]) -> dict[str, Any]:
        body["data"] = base64.b64encode(os.urandom(64)).decode()
        return body

    proxy.alter = swap
    dev = device(tmp_path, b"before")
    done = feed(tmp_path, proxy.url, service[1], "--device", str(dev))
    assert done.returncode == 1  # the client refuses it before any check: a malformed answer
    assert "wrong shape or length" in one_line(done)
    assert dev.read_bytes() == b"before"


def test_an_answer_signed_by_another_key_is_refused(
    tmp_path: Path, service: tuple[Server, Path]
) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    dev = device(tmp_path, b"before")
    done = feed(tmp_path, service[0].base_url, other, "--device", str(dev))
    assert done.returncode == 3
    assert "unknown key" in one_line(done)
    assert dev.read_bytes() == b"before"


def test_a_replayed_answer_is_refused_by_its_serial_and_by_its_age(
    tmp_path: Path, service: tuple[Server, Path], proxy: Proxy
) -> None:
    pem = service[1]
    dev, state = device(tmp_path), tmp_path / "state"
    first = feed(tmp_path, proxy.url, pem, "--device", str(dev), "--state", str(state))
    assert first.returncode == 0, first.stderr
    fed = dev.read_bytes()
    proxy.replaying = True
    replayed = feed(tmp_path, proxy.url, pem, "--device", str(dev), "--state", str(state))
    assert replayed.returncode == 3
    assert "not above the last one fed" in one_line(replayed)
    time.sleep(1.1)
    stale = feed(tmp_path, proxy.url, pem, "--device", str(dev), "--max-age", "1")
    assert stale.returncode == 3
    assert "s old, more than --max-age 1 s" in one_line(stale)
    assert dev.read_bytes() == fed


def test_an_unreachable_service_exits_1_within_the_timeout(
    tmp_path: Path, service: tuple[Server, Path]
) -> None:
    dev = device(tmp_path, b"before")
    started = time.monotonic()
    done = feed(tmp_path, f"http://127.0.0.1:{free_port()}", service[1], "--device", str(dev))
    assert done.returncode == 1
    assert "cannot reach" in one_line(done)
    assert time.monotonic() - started < 10
    assert dev.read_bytes() == b"before"


def test_a_service_that_trickles_its_answer_is_given_up_at_the_timeout(
    tmp_path: Path, service: tuple[Server, Path]
) -> None:
    """Each byte comes within the per-read timeout; only the whole-fetch bound stops it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
                if stop.wait(0.2):
                    return
                conn.sendall(bytes([byte]))

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        started = time.monotonic()
        done = feed(tmp_path, url, service[1], "--device", str(device(tmp_path)), "--timeout", "1")
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        listener.close()
    assert done.returncode == 1
    assert "did not answer within 1 s" in one_line(done)
    assert elapsed < 8  # interpreter start plus the 1 s bound; the trickle would last 40 s


def test_a_fifo_device_gets_the_bytes_and_one_without_a_reader_is_refused(
    tmp_path: Path, service: tuple[Server, Path]
) -> None:
    server, pem = service
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    alone = feed(tmp_path, server.base_url, pem, "--device", str(fifo))
    assert alone.returncode == 4 and "cannot open" in one_line(alone)
    got: list[bytes] = []
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:

        def read() -> None:  # EOF until the writer comes: read until bytes do
            deadline = time.monotonic() + RUN_TIMEOUT
            while not got and time.monotonic() < deadline:
                with contextlib.suppress(BlockingIOError):
                    if data := os.read(fd, 1024):
                        got.append(data)
                time.sleep(0.02)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        done = feed(tmp_path, server.base_url, pem, "--device", str(fifo), "--bytes", "100")
        reader.join(10)
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    assert len(got) == 1 and len(got[0]) == 100


def test_usage_errors_exit_2(tmp_path: Path, service: tuple[Server, Path]) -> None:
    server, pem = service
    dev = str(device(tmp_path))
    no_key = qrng(tmp_path, "feed", "--url", server.base_url, "--device", dev)
    assert no_key.returncode == 2 and "--public-key" in one_line(no_key)
    both = feed(tmp_path, server.base_url, pem, "--device", dev, "--once", "--interval", "5")
    assert both.returncode == 2
    too_much = feed(tmp_path, server.base_url, pem, "--device", dev, "--credit", "513")
    assert too_much.returncode == 2 and "at most the 512 bits" in one_line(too_much)
    state = tmp_path / "state"
    state.write_text("garbage")
    bad_state = feed(tmp_path, server.base_url, pem, "--device", dev, "--state", str(state))
    assert bad_state.returncode == 2 and "remove it to start over" in one_line(bad_state)
    assert Path(dev).read_bytes() == b""


def test_credit_on_a_device_that_is_not_the_random_driver_exits_4(
    tmp_path: Path, service: tuple[Server, Path]
) -> None:
    dev = device(tmp_path, b"before")
    done = feed(tmp_path, service[0].base_url, service[1], "--device", str(dev), "--credit")
    assert done.returncode == 4
    assert "not one" in one_line(done)
    assert dev.read_bytes() == b"before"


def _may_credit() -> bool:
    try:
        fd = os.open("/dev/random", os.O_WRONLY)
    except OSError:
        return False
    try:
        fcntl.ioctl(fd, RNDADDENTROPY, struct.pack("=ii", 0, 0))
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


@pytest.mark.skipif(not _may_credit(), reason="RNDADDENTROPY on /dev/random is not permitted here")
def test_credit_on_the_real_random_device(tmp_path: Path, service: tuple[Server, Path]) -> None:
    server, pem = service
    done = feed(
        tmp_path, server.base_url, pem, "--device", "/dev/random", "--credit", "--bytes", "32"
    )
    assert done.returncode == 0, done.stderr
    assert one_line(done).endswith("into /dev/random, credited 64 bits")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    env["QRNG_DATA_DIR"] = str(tmp_path / "data")
    unprivileged = subprocess.run(
        [setpriv, "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--",
         sys.executable, "-m", "quantumrng", "feed", "--url", server.base_url,
         "--public-key", str(pem), "--device", "/dev/random", "--credit"],
        capture_output=True, env=env, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert unprivileged.returncode == 4, unprivileged.stderr
    assert "--credit needs CAP_SYS_ADMIN" in one_line(unprivileged)


def test_interval_feeds_every_round_keeps_going_and_stops_on_sigterm(
    tmp_path: Path, service: tuple[Server, Path], proxy: Proxy
) -> None:
    pem = service[1]
    dev, state = device(tmp_path), tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    env["QRNG_DATA_DIR"] = str(tmp_path / "data")
    args = [sys.executable, "-m", "quantumrng", "feed", "--url", proxy.url, "--public-key",
            str(pem), "--device", str(dev), "--state", str(state), "--interval", "1"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 30
        while len(dev.read_bytes()) < 128 and time.monotonic() < deadline:
            time.sleep(0.1)
        proxy.replaying = True  # the next rounds are refused as replays, and the feeder goes on
        time.sleep(2.5)
        proxy.replaying = False
        size = len(dev.read_bytes())
        deadline = time.monotonic() + 30
        while len(dev.read_bytes()) == size and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = err.decode().splitlines()
    assert proc.returncode == 0, lines
    assert lines[-1] == "qrng feed: stopped"
    assert any(
        "not above the last one fed" in line and "next round in 1 s" in line for line in lines
    )
    mixed = [line for line in lines if "mixed 64 bytes" in line]
    assert len(mixed) >= 3 and len(dev.read_bytes()) == 64 * len(mixed)
    assert out == b""
