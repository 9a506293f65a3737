"""The Redis engine's own promises: optional import, key layout, counters, fail closed."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from quantumrng.errors import ConfigError, Unavailable
from quantumrng.pool import RedisPool
from quantumrng.pool.redis import INSTALL_HINT
from tests.blocks import make_blocks
from tests.pool.support import delete_prefix, new_prefix, redis_keys, redis_url


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = new_prefix()
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
def pool(prefix: str) -> Iterator[RedisPool]:
    pool = RedisPool(redis_url(), prefix=prefix)
    yield pool
    pool.close()


def test_missing_redis_package_is_a_config_error_with_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigError) as info:
        RedisPool("redis://127.0.0.1:6379/0")
    assert str(info.value) == INSTALL_HINT
    assert "pip install" in INSTALL_HINT and "quantumrng[redis]" in INSTALL_HINT


def test_repr_hides_credentials() -> None:
    pool = RedisPool("redis://alice:s3cr3t@db.example:6380/2", prefix="p")
    assert "s3cr3t" not in repr(pool) and "alice" not in repr(pool)
    assert "db.example:6380" in repr(pool)
    pool.close()


def test_bad_url_is_a_config_error_without_the_url() -> None:
    with pytest.raises(ConfigError) as info:
        RedisPool("http://user:s3cr3t@host/")
    assert "s3cr3t" not in str(info.value)


def test_unreachable_server_fails_closed() -> None:
    pool = RedisPool("redis://:s3cr3t@127.0.0.1:1/0", prefix="p")
    for call in (pool.level, lambda: pool.take(1), lambda: pool.put(make_blocks(1))):
        with pytest.raises(Unavailable) as info:
            call()
        assert "s3cr3t" not in str(info.value)
    pool.close()


def test_client_never_retries() -> None:
    """A retried put after a lost reply would store (and later serve) blocks twice."""
    pool = RedisPool("redis://127.0.0.1:6379/0", prefix="p")
    retry = pool._client.get_connection_kwargs()["retry"]
    assert retry.get_retries() == 0
    pool.close()


def test_keys_stay_under_the_prefix_and_harvests_go_with_their_blocks(
    pool: RedisPool, prefix: str
) -> None:
    a, b = make_blocks(2, "os"), make_blocks(3, "simulator", 0)
    pool.put(a + b)
    hid_a, hid_b = a[0].provenance.harvest_id, b[0].provenance.harvest_id
    assert redis_keys(prefix) == {
        ":b:os", ":b:simulator", ":kinds", f":h:{hid_a}", f":h:{hid_b}",
        ":recent", ":level", ":seq",
    }  # fmt: skip
    pool.take(3)
    assert redis_keys(prefix) == {
        ":b:simulator",
        ":kinds",
        f":h:{hid_b}",
        ":recent",
        ":level",
        ":seq",
    }
    pool.take(2)
    assert redis_keys(prefix) == {":level", ":seq"}


def test_counters_match_the_lists(pool: RedisPool, prefix: str) -> None:
    import redis

    pool.put(make_blocks(4, "os") + make_blocks(3, "ibm"))
    pool.take(2, source="ibm")
    pool.take(3)
    client = redis.Redis.from_url(redis_url())
    try:
        lengths = {k: client.llen(f"{pool.prefix}:b:{k}") for k in ("os", "ibm")}
    finally:
        client.close()
    assert {k: v for k, v in lengths.items() if v} == pool.level().by_source == {"os": 1, "ibm": 1}
    assert pool.level().credited_bits == 2 * 512


def test_separate_prefixes_are_separate_pools(pool: RedisPool) -> None:
    other_prefix = new_prefix()
    other = RedisPool(redis_url(), prefix=other_prefix)
    try:
        pool.put(make_blocks(2))
        assert other.level().blocks == 0
    finally:
        other.close()
        delete_prefix(other_prefix)


def test_empty_prefix_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        RedisPool("redis://127.0.0.1:6379/0", prefix="")
