"""Helpers of the pool tests: a local Redis server and keys under a prefix of their own."""

from __future__ import annotations

import functools
import socket
import subprocess
import time
import uuid

import pytest

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1",
    "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
    "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def _redis_up() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@functools.cache
def _start_redis() -> bool:
    if _redis_up():
        return True
    try:
        subprocess.run(REDIS_START, check=False, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if _redis_up():
            return True
        time.sleep(0.05)
    return False


def redis_url() -> str:
    """Return the URL of a running local Redis, starting one if needed, else skip."""
    if not _start_redis():
        pytest.skip("no Redis server on 127.0.0.1:6379 and redis-server would not start")
    return REDIS_URL


def tagged(prefix: str) -> str:
    """The key prefix a pool with ``redis_key=prefix`` writes under (a Cluster hash tag)."""
    return "{" + prefix + "}"


def new_prefix() -> str:
    """A key prefix no other test uses."""
    return f"qrng-test-{uuid.uuid4().hex}"


def delete_prefix(prefix: str) -> None:
    """Delete every key under ``prefix``."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{tagged(prefix)}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def redis_keys(prefix: str) -> set[str]:
    """The keys under ``prefix``, without it."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        tag = tagged(prefix)
        return {k.decode()[len(tag) :] for k in client.scan_iter(match=f"{tag}:*")}
    finally:
        client.close()
