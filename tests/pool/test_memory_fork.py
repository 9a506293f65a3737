"""MemoryPool in a forked child: empty (every block is the parent's to hand out once), with a
lock of its own."""

from __future__ import annotations

import os
import threading

import pytest

from quantumrng.errors import EntropyUnavailable
from quantumrng.pool import MemoryPool
from tests.blocks import make_blocks

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

CHILD_TIMEOUT = 30.0  # seconds before a child counts as hung (a lock copied in the held state)


def in_child(body: object) -> bytes:
    """Run ``body()`` (returning bytes) in a forked child; return what it wrote, or raise."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_fd)
            os.write(write_fd, body())  # type: ignore[operator]
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    status: list[int] = []
    waiter = threading.Thread(target=lambda: status.append(os.waitpid(pid, 0)[1]), daemon=True)
    waiter.start()
    waiter.join(CHILD_TIMEOUT)
    if not status:
        os.kill(pid, 9)
        waiter.join()
    with os.fdopen(read_fd, "rb") as pipe:
        out = pipe.read()
    assert status and os.waitstatus_to_exitcode(status[0]) == 0, "the child failed or hung"
    return out


def test_a_forked_child_starts_empty_and_the_parent_keeps_its_blocks() -> None:
    pool = MemoryPool()
    blocks = make_blocks(5)
    pool.put(blocks)
    pool.write_record("state", b"kept")

    def child() -> bytes:
        try:
            pool.take(1)
        except EntropyUnavailable:
            taken = b"none"
        else:
            taken = b"taken"
        level = pool.level()
        record = pool.read_record("state") or b""
        pool.put(make_blocks(1))  # a child may fill its own pool
        took = str(len(pool.take(1))).encode()
        return b"|".join((taken, str(level.blocks).encode(), record, took))

    assert in_child(child) == b"none|0|kept|1"
    assert [b.data for b in pool.take(5)] == [b.data for b in blocks]


def test_a_forked_child_is_not_stuck_on_a_lock_a_parent_thread_held() -> None:
    pool = MemoryPool()
    pool.put(make_blocks(1))
    with pool._lock:  # as if another thread were inside take at fork time
        out = in_child(lambda: str(pool.level().blocks).encode())
    assert out == b"0"
    assert pool.level().blocks == 1
