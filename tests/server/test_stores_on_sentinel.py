"""Keys, usage counters and rate limits on a Sentinel-managed master: every write waits
for a replica (``storage.redis.run_script``), so a failover cannot bring back a revoked
key, an uncharged quota or a spent rate-limit token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from quantumrng.config import Settings
from quantumrng.errors import Unavailable
from quantumrng.server.keys import RedisKeyStore
from quantumrng.server.limits import RedisLimiter
from quantumrng.server.usage import RedisUsageStore
from quantumrng.storage.redis import open_redis
from tests.pool.support import new_prefix
from tests.redis_servers import SentinelGroup, sentinel_group

pytestmark = pytest.mark.slow  # a master, a replica and three sentinels


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    with sentinel_group("qrng-stores") as servers:
        yield servers


def _settings(group: SentinelGroup) -> Settings:
    return Settings(redis_url=group.url())


def test_keys_usage_and_limits_work_through_a_sentinel_master(group: SentinelGroup) -> None:
    settings, prefix = _settings(group), new_prefix()
    keys = RedisKeyStore(open_redis(settings), prefix=prefix)
    usage = RedisUsageStore(open_redis(settings), prefix=prefix)
    limiter = RedisLimiter(open_redis(settings), prefix=prefix)
    try:
        key, record = keys.create("ops", {"drbg"}, None, 1000)
        assert keys.verify(key) == record
        assert usage.consume(record.principal, "2026-12-02", 600, 1000) == 600
        assert usage.consume(record.principal, "2026-12-02", 600, 1000) is None
        assert limiter.take(record.principal, 1.0, 2).allowed
        keys.revoke(record.id)
        assert keys.verify(key) is None
        replica = group.replica.client()
        try:  # the replica holds what the master acknowledged
            assert replica.exists(f"{{{prefix}}}:key:{record.id}")
        finally:
            replica.close()
    finally:
        keys.close()
        usage.close()
        limiter.close()


def test_a_write_no_replica_received_is_unavailable(group: SentinelGroup) -> None:
    settings, prefix = _settings(group), new_prefix()
    usage = RedisUsageStore(open_redis(settings), prefix=prefix)
    group.replica.stop()
    try:
        with pytest.raises(Unavailable) as info:
            usage.consume("key:abc", "2026-12-02", 10, 1000)
        assert "replica" in info.value.message or "Redis" in info.value.message
    finally:
        group.replica.start()
        usage.close()
