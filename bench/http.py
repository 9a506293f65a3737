"""HTTP throughput of ``qrng serve`` against bare baselines run beside it (issue 3, "Benchmark").

Run: ``python bench/http.py [SECONDS] [--rounds R] [--connections C] [--fastapi]``.

1. Requests/s of ``GET /api/v1/qrng/get_bits`` with ``wrk`` (64 connections)
   on ``qrng serve`` (one worker) as a ratio to a bare Starlette endpoint that
   returns 64 ``os.urandom`` bytes in the same JSON, both on uvicorn with
   uvloop and httptools, one worker, measured alternately (a/b/a/b) so a noisy
   shared machine slows both alike. Goal: >= 0.8. With ``--fastapi`` the same
   bare endpoint written the usual FastAPI way (a path operation returning a
   dict) runs as a third contender in the same rounds, as a ratio to bare
   Starlette: the figure for choosing the framework (issue 3).
2. Bulk ``raw`` streaming: MB/s of ``GET /api/v2/bytes?n=256MiB&format=raw``
   read with a plain socket, as a ratio to ``os.urandom`` in one process
   (1 MiB calls), alternately. Goal: >= 2.

``wrk`` is installed from Debian's packages when missing, and with
``--fastapi`` FastAPI with pip into this interpreter, keeping its Starlette.
Every server the script starts runs in its own process group and is stopped
on exit.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

GET_BITS = "/api/v1/qrng/get_bits"
BULK_BYTES = 256 << 20
URANDOM_CALL = 1 << 20  # bytes per os.urandom call of the baseline
RECV_BYTES = 1 << 20
START_TIMEOUT = 300.0  # seconds; the simulator's first harvest imports Qiskit
UVICORN_FLAGS = (
    "--workers", "1", "--loop", "uvloop", "--http", "httptools",
    "--no-access-log", "--log-level", "warning",
)  # fmt: skip

BARE_APP = '''\
"""The baseline: the cheapest Starlette endpoint with get_bits' answer."""
import base64
import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def get_bits(request):
    return JSONResponse({"512_qrng_bits": base64.b64encode(os.urandom(64)).decode("ascii")})


app = Starlette(routes=[Route("/api/v1/qrng/get_bits", get_bits)])
'''

FASTAPI_APP = '''\
"""The same endpoint as an ordinary FastAPI path operation."""
import base64
import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/api/v1/qrng/get_bits")
async def get_bits() -> dict[str, str]:
    return {"512_qrng_bits": base64.b64encode(os.urandom(64)).decode("ascii")}
'''


def ensure_wrk() -> str:
    """Return the path of ``wrk``, installing Debian's package if needed."""
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get install -y wrk) ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*argv: str) -> int:
        return subprocess.run(
            ["apt-get", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=False,
        ).returncode  # fmt: skip

    if apt("install", "-y", "wrk"):
        apt("update")
        apt("install", "-y", "wrk")
    found = shutil.which("wrk")
    if not found:
        sys.exit("bench/http.py: wrk is missing and apt-get could not install it")
    return found


def ensure_fastapi() -> None:
    """Make ``fastapi`` importable here, pip-installing it without moving Starlette."""
    if importlib.util.find_spec("fastapi") is not None:
        return
    pin = f"starlette=={importlib.metadata.version('starlette')}"
    print(f"installing fastapi (python -m pip install fastapi {pin}) ...", file=sys.stderr)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "fastapi", pin], check=False
    )
    importlib.invalidate_caches()
    if done.returncode or importlib.util.find_spec("fastapi") is None:
        sys.exit("bench/http.py: fastapi is missing and pip could not install it")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` from 127.0.0.1 with a plain socket; (0, b"") if nothing answers.

    A socket, not ``urllib``: this file's name hides the standard ``http``
    package from a script run beside it.
    """
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(request.encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if m is None:
        return 0, b""
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        body = _unchunk(body)
    return int(m.group(1)), body


def _unchunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


@contextmanager
def server(
    name: str,
    cmd: list[str],
    port: int,
    probe: str,
    log: Path,
    settings: dict[str, str] | None = None,
) -> Iterator[None]:
    """Run ``cmd`` in its own process group until ``probe`` answers 200; stop it after.

    ``settings`` become ``QRNG_<NAME>`` variables of the process (no other ``QRNG_*`` leaks in).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    env.update({f"QRNG_{k.upper()}": v for k, v in (settings or {}).items()})
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while http_get(port, probe)[0] != 200:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} was not ready after {START_TIMEOUT:.0f} s; see {log}")
            time.sleep(0.2)
        yield
    finally:
        _stop(proc)


@contextmanager
def app_server(name: str, source: str, tmpdir: Path) -> Iterator[str]:
    """Serve ``app`` of ``source`` (written to ``tmpdir``) on uvicorn; yield its base URL."""
    module = re.sub(r"\W", "_", name.lower())
    (tmpdir / f"{module}_app.py").write_text(source)
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", f"{module}_app:app", "--app-dir", str(tmpdir),
        "--port", str(port), *UVICORN_FLAGS,
    ]  # fmt: skip
    with server(name, cmd, port, GET_BITS, tmpdir / f"{module}.log"):
        yield f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group led by ``proc`` (ours: started with a new session)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def settle(port: int, timeout: float = 120.0) -> None:
    """Wait until the harvester has filled the pool, so it idles while we measure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = http_get(port, "/api/v2/status")
        try:
            pool = json.loads(body)["pool"]
            if status != 200 or pool["blocks"] >= pool["high_water"]:
                return
        except (ValueError, KeyError, TypeError):
            return
        time.sleep(1.0)
    print("  note: the pool was still filling when measuring began", file=sys.stderr)


def run_wrk(wrk: str, url: str, seconds: float, connections: int, threads: int) -> float:
    """Return requests/s of one wrk run; fail on socket errors or non-2xx answers."""
    out = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise SystemExit(f"{url}: {bad.group(1)} error answers under load:\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        print(f"  note: wrk socket errors on {url}: {errors.group(1)}", file=sys.stderr)
    return float(rps.group(1))


def read_stream(port: int, path: str) -> tuple[int, float]:
    """GET ``path`` over a plain socket; return (body bytes, seconds to the last byte)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    buf = bytearray(RECV_BYTES)
    view = memoryview(buf)
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        t0 = time.perf_counter()
        s.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit("the server closed the connection before its headers")
            head += chunk
        head, _, body = head.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise SystemExit(f"bulk request failed: {status.decode(errors='replace')}")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        expected = int(m.group(1)) if m else None
        got = len(body)
        while expected is None or got < expected:
            k = s.recv_into(view)
            if k == 0:
                break
            got += k
        seconds = time.perf_counter() - t0
    if expected is not None and got != expected:
        raise SystemExit(f"bulk stream cut short: {got} of {expected} bytes")
    return got, seconds


def urandom_rate(n: int) -> float:
    """MB/s of ``os.urandom`` in this process, ``URANDOM_CALL`` bytes a call."""
    t0 = time.perf_counter()
    left = n
    while left > 0:
        os.urandom(min(URANDOM_CALL, left))
        left -= URANDOM_CALL
    return n / (time.perf_counter() - t0) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("seconds", nargs="?", type=float, default=10.0, help="per wrk run")
    ap.add_argument("--rounds", type=int, default=2, help="a/b pairs of wrk runs")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument(
        "--threads", type=int, default=1, help="wrk threads (leave a core to the server)"
    )
    ap.add_argument("--bulk-mib", type=int, default=BULK_BYTES >> 20)
    ap.add_argument("--source", default="os", help="entropy source of qrng serve")
    ap.add_argument(
        "--fastapi", action="store_true", help="also measure the bare endpoint in FastAPI"
    )
    args = ap.parse_args()
    wrk = ensure_wrk()
    if args.fastapi:
        ensure_fastapi()
    bulk = args.bulk_mib << 20

    with tempfile.TemporaryDirectory(prefix="qrng-bench-") as tmp, ExitStack() as stack:
        tmpdir = Path(tmp)
        qport = free_port()
        qrng_cmd = [
            sys.executable, "-m", "quantumrng", "serve", "--port", str(qport), "--workers", "1",
            "--data-dir", str(tmpdir / "data"), "--source", args.source, "--log-level", "warning",
        ]  # fmt: skip
        # wrk opens all its connections from one address: allow them past the per-client cap
        limits = {"max_client_connections": str(max(64, args.connections + 8))}
        stack.enter_context(
            server("qrng serve", qrng_cmd, qport, "/ready", tmpdir / "qrng.log", limits)
        )
        urls = {
            "qrng": f"http://127.0.0.1:{qport}",
            "bare": stack.enter_context(app_server("bare starlette", BARE_APP, tmpdir)),
        }
        if args.fastapi:
            urls["fastapi"] = stack.enter_context(app_server("fastapi", FASTAPI_APP, tmpdir))
        settle(qport)
        print(f"get_bits, wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s")
        for url in urls.values():  # warm-up, not counted
            run_wrk(wrk, url + GET_BITS, 2, args.connections, args.threads)
        rates: dict[str, list[float]] = {label: [] for label in urls}
        width = max(5, *map(len, urls))
        for r in range(args.rounds):
            for label, url in urls.items():
                rps = run_wrk(wrk, url + GET_BITS, args.seconds, args.connections, args.threads)
                rates[label].append(rps)
                print(f"  round {r + 1} {label:{width}s} {rps:10,.0f} req/s")
        mean = {label: statistics.mean(rps) for label, rps in rates.items()}
        q, b = mean["qrng"], mean["bare"]
        print(f"  qrng serve     {q:10,.0f} req/s")
        print(f"  bare Starlette {b:10,.0f} req/s")
        print(f"  ratio          {q / b:10.2f}   (goal >= 0.8)")
        if "fastapi" in mean:
            f = mean["fastapi"]
            print(f"  FastAPI        {f:10,.0f} req/s")
            print(f"  FastAPI ratio  {f / b:10.2f}   (FastAPI / bare Starlette)")

        print(f"bulk raw stream, {bulk >> 20} MiB, one connection")
        path = f"/api/v2/bytes?n={bulk}&format=raw"
        streams: list[float] = []
        urandoms: list[float] = []
        for r in range(args.rounds):
            got, seconds = read_stream(qport, path)
            streams.append(got / seconds / 1e6)
            urandoms.append(urandom_rate(bulk))
            print(f"  round {r + 1} stream {streams[-1]:8,.0f} MB/s   "
                  f"os.urandom {urandoms[-1]:8,.0f} MB/s")  # fmt: skip
        s, u = statistics.mean(streams), statistics.mean(urandoms)
        print(f"  qrng stream    {s:10,.0f} MB/s")
        print(f"  os.urandom     {u:10,.0f} MB/s")
        print(f"  ratio          {s / u:10.2f}   (goal >= 2)")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    main()
