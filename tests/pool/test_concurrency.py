"""Exactly once under concurrency and crashes: threads, processes, fork and kill -9.

Every block's bytes are unique, so "disjoint" and "union equals what was put"
are checked on the bytes themselves (as hex digests in the child processes).
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from quantumrng.block import Block
from quantumrng.errors import EntropyUnavailable
from quantumrng.pool import MemoryPool, Pool, RedisPool, SqlitePool
from tests.blocks import make_blocks
from tests.pool.support import delete_prefix, new_prefix, redis_url

_OPEN = """
import os, sys
from quantumrng.errors import EntropyUnavailable
from quantumrng.pool import RedisPool, SqlitePool
engine, where, prefix = sys.argv[1:4]
pool = SqlitePool(where) if engine == "sqlite" else RedisPool(where, prefix=prefix)
"""

# argv: engine where prefix out threads go — takes random amounts until the pool is empty
TAKERS = (
    _OPEN
    + """
import random, threading, time
out, threads, go = sys.argv[4], int(sys.argv[5]), sys.argv[6]
pool.level()
open(out + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
taken, lock = [], threading.Lock()

def run(seed):
    rng = random.Random(seed)
    mine = []
    while True:
        try:
            source = rng.choice([None, None, "os", "simulator"])
            blocks = pool.take(rng.randint(1, 4), source=source)
        except EntropyUnavailable:
            try:
                blocks = pool.take(1)
            except EntropyUnavailable:
                break
        mine.extend(b.data.hex() for b in blocks)
    with lock:
        taken.extend(mine)

workers = [threading.Thread(target=run, args=(f"{out}/{i}",)) for i in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
with open(out, "w") as fh:
    fh.write("\\n".join(taken))
"""
)

# argv: engine where prefix record k — takes k blocks at a time, records each after commit
TAKE_LOOP = (
    _OPEN
    + """
k = int(sys.argv[5])
fd = os.open(sys.argv[4], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
while True:
    try:
        blocks = pool.take(k)
    except EntropyUnavailable:
        break
    os.write(fd, (" ".join(b.data.hex() for b in blocks) + "\\n").encode())
"""
)

# argv: engine where prefix record — puts harvest h<i> of 4 blocks, records it after commit
PUT_LOOP = (
    _OPEN
    + """
import hashlib
from quantumrng.block import Block
from quantumrng.provenance import Provenance
fd = os.open(sys.argv[4], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
for i in range(100_000):
    prov = Provenance("os", f"h{i}", 1.0)
    data = [hashlib.sha512(f"h{i}/{j}".encode()).digest() for j in range(4)]
    pool.put([Block(d, 512, prov) for d in data])
    os.write(fd, f"h{i}\\n".encode())
"""
)


@dataclass
class Target:
    """Where an engine's pool lives, so a child process can open the same one."""

    engine: str
    where: str
    prefix: str

    def open(self) -> Pool:
        if self.engine == "sqlite":
            return SqlitePool(self.where)
        return RedisPool(self.where, prefix=self.prefix)

    def argv(self, script: str, *args: object) -> list[str]:
        return [sys.executable, "-c", script, self.engine, self.where, self.prefix, *map(str, args)]


@pytest.fixture(params=["sqlite", "redis"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        yield Target("sqlite", str(tmp_path / "pool.sqlite3"), "")
        return
    target = Target("redis", redis_url(), new_prefix())
    yield target
    delete_prefix(target.prefix)


def hexes(blocks: list[Block]) -> list[str]:
    return [b.data.hex() for b in blocks]


def fill(pool: Pool, harvests: int, size: int) -> list[str]:
    """Put ``harvests`` harvests of ``size`` blocks, kinds alternating; return put order."""
    order: list[str] = []
    for i in range(harvests):
        kind, bits = ("os", 512) if i % 2 == 0 else ("simulator", 0)
        blocks = make_blocks(size, kind, bits)
        pool.put(blocks)
        order += hexes(blocks)
    return order


def drain(pool: Pool) -> list[str]:
    """Take everything left, oldest first."""
    left = pool.level().blocks
    return hexes(pool.take(left)) if left else []


def wait_for(
    check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + 60
    while not check():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"child exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


# --- threads (every engine) -------------------------------------------------------


@pytest.mark.parametrize("engine", ["memory", "sqlite", "redis"])
def test_threads_take_disjoint_sets_whose_union_is_what_was_put(
    engine: str, tmp_path: Path
) -> None:
    prefix = new_prefix()
    pool: Pool
    if engine == "memory":
        pool = MemoryPool()
    elif engine == "sqlite":
        pool = SqlitePool(tmp_path / "pool.sqlite3")
    else:
        pool = RedisPool(redis_url(), prefix=prefix)
    try:
        put = fill(pool, 10, 30)

        def run(seed: int) -> list[str]:
            mine: list[str] = []
            for n in [1 + (seed + i) % 4 for i in range(1000)]:
                try:
                    mine += hexes(pool.take(n, source=("os", None, "simulator")[n % 3]))
                except EntropyUnavailable:
                    try:
                        mine += hexes(pool.take(1))
                    except EntropyUnavailable:
                        break
            return mine

        with ThreadPoolExecutor(6) as executor:
            results = list(executor.map(run, range(6)))
        taken = [h for r in results for h in r]
        assert len(taken) == len(set(taken))
        assert set(taken) == set(put)
        assert pool.level().blocks == 0
    finally:
        pool.close()
        if engine == "redis":
            delete_prefix(prefix)


# --- processes ---------------------------------------------------------------------


@pytest.mark.slow
def test_processes_and_threads_take_disjoint_sets_whose_union_is_what_was_put(
    target: Target, tmp_path: Path
) -> None:
    pool = target.open()
    put = fill(pool, 40, 30)
    go = tmp_path / "go"
    outs = [tmp_path / f"taken-{i}" for i in range(3)]
    procs = [subprocess.Popen(target.argv(TAKERS, out, 2, go)) for out in outs]
    try:
        for out, proc in zip(outs, procs, strict=True):
            ready = Path(f"{out}.ready")
            wait_for(ready.exists, "it opened the pool", proc)
        go.touch()
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = [out.read_text().split() for out in outs]
    taken = [h for r in results for h in r]
    # concurrency happened (on a loaded machine one process may start too late to win any)
    assert sum(1 for r in results if r) >= 2, "at least two processes took blocks"
    assert len(taken) == len(set(taken)), "a block was taken twice"
    assert set(taken) == set(put), "a block was lost"
    assert pool.level().blocks == 0
    pool.close()


@pytest.mark.slow
def test_forked_child_gets_its_own_connection(target: Target) -> None:
    pool = target.open()
    put = fill(pool, 1, 20)
    first = hexes(pool.take(2))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, " ".join(hexes(pool.take(5))).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode().split()
    assert os.waitpid(pid, 0)[1] == 0
    rest = hexes(pool.take(13))
    assert first + child + rest == put
    with pytest.raises(EntropyUnavailable):
        pool.take(1)
    pool.close()


# --- kill -9 -------------------------------------------------------------------------


def kill_after(proc: subprocess.Popen[bytes], record: Path, lines: int) -> list[list[str]]:
    """SIGKILL ``proc`` once ``record`` has ``lines`` lines; return its complete lines."""
    try:
        wait_for(
            lambda: record.exists() and record.read_bytes().count(b"\n") >= lines,
            f"{lines} records",
            proc,
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    text = record.read_text()
    return [line.split() for line in text[: text.rfind("\n") + 1].splitlines()]


def check_integrity(target: Target) -> None:
    if target.engine == "sqlite":
        with sqlite3.connect(target.where) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()


@pytest.mark.slow
def test_kill_9_during_takes_loses_at_most_the_in_flight_take(
    target: Target, tmp_path: Path
) -> None:
    k = 3
    pool = target.open()
    order = fill(pool, 60 if target.engine == "sqlite" else 180, 50)
    pool.close()
    record = tmp_path / "taken"
    proc = subprocess.Popen(target.argv(TAKE_LOOP, record, k))
    recorded = [h for line in kill_after(proc, record, 40) for h in line]

    check_integrity(target)
    pool = target.open()
    remaining = drain(pool)
    pool.close()
    done = len(recorded)
    in_flight = len(order) - done - len(remaining)
    assert recorded == order[:done], "recorded takes are the oldest blocks, once each"
    assert in_flight in (0, k), "only the single in-flight take may be lost"
    assert remaining == order[done + in_flight :], "nothing taken comes back, nothing else lost"
    assert remaining, "the child was killed mid-way"


@pytest.mark.slow
def test_kill_9_during_puts_keeps_every_committed_put_whole(target: Target, tmp_path: Path) -> None:
    target.open().close()  # the parent creates the file, as a service would
    record = tmp_path / "put"
    proc = subprocess.Popen(target.argv(PUT_LOOP, record))
    recorded = [line[0] for line in kill_after(proc, record, 30)]

    check_integrity(target)
    pool = target.open()
    remaining = drain(pool)
    pool.close()
    done = len(recorded)
    assert recorded == [f"h{i}" for i in range(done)]
    expected = [
        hashlib.sha512(f"h{i}/{j}".encode()).hexdigest() for i in range(done + 1) for j in range(4)
    ]
    assert remaining in (expected[: 4 * done], expected), "a put lands whole or not at all"
