"""Two real `qrng serve` nodes on one Redis pool: exactly one harvests, after a kill -9
of the leader the other takes over within the lease, and every node's dashboard names
the leader."""

from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.pool.support import delete_prefix, new_prefix, redis_url
from tests.server.process import Server, run_server

LEASE = 2.0  # harvest_lease_seconds: polls and renewals every 2/3 s
SLACK = 3.0  # seconds a busy machine may add to a takeover


def status(server: Server) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(server.base_url + "/api/v2/status", timeout=5).json()
    return body


def dashboard_leader(server: Server) -> dict[str, Any]:
    body = httpx.get(server.base_url + "/api/v2/dashboard", timeout=5).json()
    leader: dict[str, Any] = body["leader"]
    return leader


def wait_for(server: Server, predicate: Any, timeout: float) -> dict[str, Any]:
    """Poll ``server``'s status until ``predicate(status)`` holds; return that status."""
    deadline = time.monotonic() + timeout
    while True:
        body = status(server)
        if predicate(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


@pytest.mark.slow
def test_one_node_harvests_and_another_takes_over_after_kill_9(tmp_path: Path) -> None:
    url, prefix = redis_url(), new_prefix()
    shared = {
        "pool": "redis",
        "redis_url": url,
        "redis_key": prefix,
        "pool_key_file": str(tmp_path / "pool.key"),  # every node of a deployment shares it
        "harvest_lease_seconds": str(LEASE),
        "pool_low_water": "16",
        "pool_high_water": "64",
    }
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    try:
        with ExitStack() as stack:
            a = stack.enter_context(
                run_server(tmp_path / "a", settings={**shared, "node_name": "node-a"})
            )
            b = stack.enter_context(
                run_server(tmp_path / "b", settings={**shared, "node_name": "node-b"})
            )
            first = wait_for(a, lambda s: s["harvester"]["harvests"] > 0, 30.0)
            assert first["leader"]["node"] == "node-a" and first["harvester"]["active"]
            time.sleep(LEASE)  # node b polls for the lease three times meanwhile
            follower = status(b)
            assert follower["leader"]["holder"] == first["harvester"]["holder"]
            assert not follower["harvester"]["active"]
            assert follower["harvester"]["harvests"] == 0  # exactly one node harvests
            token = follower["leader"]["token"]
            for node in (a, b):  # the operator sees the same leader whichever node answers
                shown = dashboard_leader(node)
                assert shown["node"] == "node-a" and shown["token"] == token, shown

            for pid in a.processes():
                os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            a.proc.wait(10)
            took = wait_for(b, lambda s: s["harvester"]["active"], LEASE + LEASE / 3 + SLACK)
            waited = time.monotonic() - killed
            assert took["leader"]["node"] == "node-b" and took["leader"]["token"] > token
            shown = dashboard_leader(b)
            assert shown["node"] == "node-b" and shown["token"] == took["leader"]["token"]
            assert waited <= LEASE + LEASE / 3 + SLACK
            assert b.proc.poll() is None
    finally:
        delete_prefix(prefix)
