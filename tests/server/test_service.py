"""BoundedRead: a pool read that never holds its callers past a bound, one at a time."""

from __future__ import annotations

import threading
import time

import pytest

from quantumrng.errors import EntropyUnavailable, Unavailable
from quantumrng.server.service import BoundedRead


def test_a_hanging_read_is_a_503_in_time_and_runs_once_for_every_caller() -> None:
    release = threading.Event()
    reads: list[int] = []

    def hanging() -> dict[str, int]:
        reads.append(1)
        release.wait(timeout=10)
        return {"blocks": 1}

    read = BoundedRead(hanging, "status", timeout=0.05)
    for _ in range(5):
        started = time.monotonic()
        with pytest.raises(Unavailable, match="did not answer in time; status is unavailable"):
            read()
        assert time.monotonic() - started < 1.0
    assert len(reads) == 1  # later callers waited on the same read, no thread piled up
    release.set()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert read() == {"blocks": 1}
            break
        except Unavailable:
            assert time.monotonic() < deadline


def test_a_failing_read_raises_its_own_error() -> None:
    def empty() -> int:
        raise EntropyUnavailable("the pool holds no os blocks")

    with pytest.raises(EntropyUnavailable, match="no os blocks"):
        BoundedRead(empty, "readiness", timeout=1.0)()
