"""``qrng stream``: through rngtest's FIPS 140-2 tests, into a FIFO for rngd, from a service.

rngd itself (rng-tools5) is not run: it sets the kernel's
``write_wakeup_threshold`` and credits its output device with
``RNDADDENTROPY`` (a regular file makes it exit), so it cannot run here
without touching the host's real kernel pool. rngtest runs its FIPS tests.
"""

from __future__ import annotations

import math
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.support import qrng
from tests.server.process import Server, free_port, run_server
from tests.tools import debian_program

BLOCKS = 200  # rngtest blocks of 20,000 bits
BLOCK_BYTES = 2500
FAILURE_RATE = 0.0008  # the chance a block of a good source fails one FIPS 140-2 test
FALSE_ALARM = 1e-4  # the chance a good stream fails this check


def binomial_bound(n: int, p: float, alpha: float) -> int:
    """The smallest k with P(X > k) < alpha for X ~ Binomial(n, p)."""
    tail, k = 1.0, -1
    while tail >= alpha:
        k += 1
        tail -= math.comb(n, k) * p**k * (1 - p) ** (n - k)
    return k


ALLOWED_FAILURES = binomial_bound(BLOCKS, FAILURE_RATE, FALSE_ALARM)


def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    out["QRNG_DATA_DIR"] = str(tmp_path / "data")
    out["QRNG_SOURCE"] = "os"
    return out


def stream(tmp_path: Path, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "quantumrng", *args],
        env=env(tmp_path),
        stderr=subprocess.PIPE,
        **kwargs,  # type: ignore[call-overload]
    )


def stopped(proc: subprocess.Popen[bytes]) -> tuple[int, list[str], bytes]:
    """SIGTERM (unless it ended); its exit status, stderr lines and what stdout still held."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode().splitlines(), out or b""


def rngtest(stdin: int | object, blocks: int = BLOCKS) -> int:
    """FIPS 140-2 failures rngtest finds in ``blocks`` blocks read from ``stdin``."""
    program = debian_program("rngtest", "rng-tools5")
    done = subprocess.run(
        [program, "-c", str(blocks)], stdin=stdin, capture_output=True, timeout=120, check=False
    )
    report = done.stderr.decode()
    found = re.search(r"FIPS 140-2 successes: (\d+)", report)
    failed = re.search(r"FIPS 140-2 failures: (\d+)", report)
    assert found and failed, report
    assert int(found[1]) + int(failed[1]) == blocks, report
    assert (done.returncode == 0) is (int(failed[1]) == 0)
    return int(failed[1])


def test_the_allowed_failures_come_from_the_binomial_tail() -> None:
    assert ALLOWED_FAILURES == 3
    assert binomial_bound(200, 0.5, 0.5) == 100


def test_the_drbg_stream_passes_rngtest_and_exits_0_when_the_reader_closes(
    tmp_path: Path,
) -> None:
    proc = stream(tmp_path, "stream", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        failures = rngtest(proc.stdout)
    finally:
        proc.stdout.close()
    assert failures <= ALLOWED_FAILURES
    assert proc.wait(20) == 0


@pytest.mark.parametrize("flaw", ["one byte in 16 stuck at zero", "bits biased to 0.47"])
def test_rngtest_fails_a_flawed_stream(flaw: str) -> None:
    """The control: the same check on a broken source fails nearly every block."""
    size = (BLOCKS + 1) * BLOCK_BYTES
    data = bytearray(os.urandom(size))
    if flaw.startswith("one byte"):
        data[::16] = bytes(len(data[::16]))
    else:
        threshold = round(0.47 * 2**16)
        words = memoryview(os.urandom(16 * size)).cast("H")
        bits = [w < threshold for w in words]
        data = bytearray(
            sum(bit << i for i, bit in enumerate(bits[j : j + 8])) for j in range(0, 8 * size, 8)
        )
    read, write = os.pipe()
    feeder = threading.Thread(target=lambda: (os.write(write, data), os.close(write)))
    feeder.start()
    try:
        failures = rngtest(read)
    finally:
        os.close(read)
        feeder.join(10)
    assert failures > ALLOWED_FAILURES
    assert failures > BLOCKS // 2


def test_the_fifo_serves_one_reader_after_another_and_stops_on_sigterm(tmp_path: Path) -> None:
    fifo = tmp_path / "rng"
    proc = stream(tmp_path, "stream", "--fifo", str(fifo), "--chunk", "4096")
    try:
        deadline = time.monotonic() + 30
        while not fifo.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = fifo.stat()
        assert stat.S_ISFIFO(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        reads: list[bytes] = []
        for _ in range(2):
            with fifo.open("rb") as reader:
                reads.append(reader.read(50_000))
            time.sleep(0.5)  # the stream's next write finds no reader
        first, second = reads
        assert len(first) == len(second) == 50_000 and first != second
        assert first[-4096:] not in second  # the rest of a chunk is dropped, never re-sent
        started = time.monotonic()
        status, lines, _ = stopped(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 0, lines
    assert time.monotonic() - started < 5
    assert lines[-1] == "qrng stream: stopped"
    assert sum("waiting for the next" in line for line in lines) >= 1


def test_sigterm_stops_a_stream_blocked_on_a_reader_that_does_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "rng"
    os.mkfifo(fifo, 0o600)
    proc = stream(tmp_path, "stream", "--fifo", str(fifo))
    fd = os.open(fifo, os.O_RDONLY)  # waits for the stream to open its end
    try:
        time.sleep(1.0)  # the pipe fills and the write blocks
        started = time.monotonic()
        status, lines, _ = stopped(proc)
    finally:
        os.close(fd)
    assert status == 0, lines
    assert time.monotonic() - started < 5
    assert lines[-1] == "qrng stream: stopped"


def test_a_path_that_is_not_a_fifo_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"keep")
    done = qrng(tmp_path, "stream", "--fifo", str(path))
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [f"qrng: error: {path} exists and is not a FIFO"]
    assert path.read_bytes() == b"keep"


def test_raw_output_of_an_uncredited_source_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    done = qrng(tmp_path, "stream", "--mode", "raw")
    assert done.returncode == 1 and done.stdout == b""
    assert "raw output needs a source credited" in done.stderr.decode()


def test_the_raw_stream_waits_for_the_pool_and_passes_rngtest(tmp_path: Path) -> None:
    proc = stream(
        tmp_path,
        "--allow-uncredited-raw",
        "stream",
        "--mode",
        "raw",
        "--chunk",
        "4096",
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        failures = rngtest(proc.stdout, 20)
    finally:
        proc.stdout.close()
    assert failures <= binomial_bound(20, FAILURE_RATE, FALSE_ALARM)
    assert proc.wait(20) == 0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("stream-service")) as server:
        yield server


def test_a_remote_service_streams_through_rngtest(tmp_path: Path, service: Server) -> None:
    proc = stream(tmp_path, "stream", "--url", service.base_url, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        failures = rngtest(proc.stdout, 50)
    finally:
        proc.stdout.close()
    assert failures <= binomial_bound(50, FAILURE_RATE, FALSE_ALARM)
    assert proc.wait(20) == 0


def test_an_unreachable_service_writes_nothing_and_retries(tmp_path: Path) -> None:
    proc = stream(
        tmp_path, "stream", "--url", f"http://127.0.0.1:{free_port()}", stdout=subprocess.PIPE
    )
    assert proc.stderr is not None
    retries: list[str] = []

    def follow() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            retries.append(line.decode())
            if len(retries) == 2:
                return

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    follower.join(20)
    status, lines, out = stopped(proc)
    assert out == b""
    assert status == 0, lines
    assert len(retries) == 2, retries
    assert all("cannot reach" in r and "nothing written, trying again in" in r for r in retries)
    assert "trying again in 1 s" in retries[0] and "trying again in 2 s" in retries[1]
    assert lines[-1] == "qrng stream: stopped"
