"""The key store: create/verify/revoke, hash-only storage, threads, forks, a damaged file."""

from __future__ import annotations

import hashlib
import hmac
import multiprocessing
import multiprocessing.synchronize
import re
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quantumrng.errors import NotFound, Unavailable, ValidationError
from quantumrng.server.keys import (
    KeyRecord,
    Keys,
    KeyStore,
    RedisKeyStore,
    count_active,
    open_key_store,
    parse_scopes,
)
from quantumrng.server.usage import RedisUsageStore, Usage, UsageStore, open_usage_store
from quantumrng.storage.redis import open_url
from tests.conftest import make_settings
from tests.pool.support import delete_prefix, new_prefix, redis_keys, redis_url, tagged

KEY_RE = re.compile(r"qrng_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


def _flip(key: str) -> str:
    """The key with its last character changed."""
    return key[:-1] + ("A" if key[-1] != "A" else "B")


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """The same contract on both stores: SQLite (the embedded default) and Redis."""
    if request.param == "redis":
        redis_url()
    return str(request.param)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own, emptied after it."""
    prefix = new_prefix()
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
def store(backend: str, prefix: str, tmp_path: Path) -> Iterator[Keys]:
    keys: Keys = (
        KeyStore(tmp_path / "keys.sqlite3")
        if backend == "sqlite"
        else RedisKeyStore(open_url(redis_url()), prefix=prefix)
    )
    yield keys
    keys.close()


@pytest.fixture
def usage(backend: str, prefix: str, tmp_path: Path) -> Iterator[Usage]:
    counters: Usage = (
        UsageStore(tmp_path / "keys.sqlite3")
        if backend == "sqlite"
        else RedisUsageStore(open_url(redis_url()), prefix=prefix)
    )
    yield counters
    counters.close()


def test_create_returns_a_well_formed_key_and_its_record(store: Keys) -> None:
    key, record = store.create("alice", {"drbg", "raw"}, 2.5, 1000)
    m = KEY_RE.fullmatch(key)
    assert m is not None
    assert record.id == m.group(1)
    assert record.name == "alice"
    assert record.scopes == frozenset({"drbg", "raw"})
    assert (record.rate, record.daily_bytes, record.revoked_at) == (2.5, 1000, None)
    assert record.principal == f"key:{record.id}"


def test_keys_are_distinct(store: Keys) -> None:
    keys = {store.create(f"k{i}", {"drbg"}, None, None)[0] for i in range(20)}
    assert len(keys) == 20
    assert len({KEY_RE.fullmatch(k).group(2) for k in keys}) == 20  # type: ignore[union-attr]


def test_zero_limits_are_stored_as_unlimited(store: Keys) -> None:
    key, record = store.create("free", {"drbg"}, 0, 0, burst=5)
    assert (record.rate, record.burst, record.daily_bytes) == (None, None, None)
    assert store.verify(key) == record


def test_verify_returns_the_record_only_for_the_exact_key(store: Keys) -> None:
    key, record = store.create("alice", {"drbg"}, None, None)
    other, _ = store.create("bob", {"drbg"}, None, None)
    assert store.verify(key) == record
    flipped = _flip(key)
    spliced = key[: len("qrng_") + 13] + KEY_RE.fullmatch(other).group(2)  # type: ignore[union-attr]
    for bad in (flipped, spliced, key + "x", key[:-1], "", "qrng_", "Bearer " + key, "é" * 10):
        assert store.verify(bad) is None, bad
    assert store.verify("qrng_000000000000_" + "A" * 43) is None


def test_verify_compares_hashes_in_constant_time(
    store: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = store.create("alice", {"drbg"}, None, None)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert store.verify(key) is not None
    assert store.verify(_flip(key)) is None
    assert store.verify("qrng_0123456789ab_" + "x" * 43) is None  # unknown id: compared too
    assert len(calls) == 3
    assert calls[0] == (hashlib.sha256(key.encode()).digest(),) * 2


def test_revoke_by_id_and_by_name(store: Keys) -> None:
    k1, r1 = store.create("alice", {"drbg"}, None, None)
    k2, r2 = store.create("bob", {"drbg"}, None, None)
    revoked = store.revoke(r1.id)
    assert revoked.id == r1.id and revoked.revoked_at is not None and not revoked.active
    assert store.verify(k1) is None
    assert store.revoke("bob").id == r2.id
    assert store.verify(k2) is None
    assert store.revoke(r1.id) == revoked  # idempotent


def test_revoke_unknown_raises_not_found(store: Keys) -> None:
    with pytest.raises(NotFound, match="nobody"):
        store.revoke("nobody")
    with pytest.raises(NotFound):
        store.revoke("0123456789ab")


def test_active_names_are_unique_but_reusable_after_revoke(store: Keys) -> None:
    _, first = store.create("ci", {"drbg"}, None, None)
    with pytest.raises(ValidationError, match="exists"):
        store.create("ci", {"drbg"}, None, None)
    store.revoke("ci")
    _, second = store.create("ci", {"raw"}, None, None)
    assert second.id != first.id
    assert store.get("ci") == second
    assert [r.id for r in store.records()] == [first.id, second.id]


def test_list_shows_records_without_hashes(store: Keys) -> None:
    _, record = store.create("alice", {"drbg", "admin"}, 1.0, 10, burst=4)
    store.revoke("alice")
    [listed] = store.records()
    assert isinstance(listed, KeyRecord)
    assert listed.id == record.id and listed.burst == 4 and listed.revoked_at is not None
    assert "hash" not in listed.to_dict()
    assert set(listed.to_dict()) >= {"id", "name", "scopes", "rate", "daily_bytes", "created_at"}


@pytest.mark.parametrize(
    ("name", "scopes", "rate", "daily"),
    [
        ("", {"drbg"}, None, None),
        ("a\nb", {"drbg"}, None, None),
        ("0123456789ab", {"drbg"}, None, None),  # would shadow a key id
        ("x" * 65, {"drbg"}, None, None),
        ("ok", set(), None, None),
        ("ok", {"root"}, None, None),
        ("ok", {"drbg"}, -1.0, None),
        ("ok", {"drbg"}, float("nan"), None),
        ("ok", {"drbg"}, None, -5),
    ],
)
def test_create_rejects_bad_input(
    store: Keys, name: str, scopes: set[str], rate: float | None, daily: int | None
) -> None:
    with pytest.raises(ValidationError):
        store.create(name, scopes, rate, daily)
    assert store.records() == []


def test_parse_scopes() -> None:
    assert parse_scopes("drbg, RAW") == frozenset({"drbg", "raw"})
    with pytest.raises(ValidationError, match="unknown scope 'x'"):
        parse_scopes("drbg,x")
    with pytest.raises(ValidationError):
        parse_scopes(" , ")


def test_only_the_hash_reaches_the_disk(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite3")
    made = [store.create(f"k{i}", {"drbg"}, None, None) for i in range(5)]
    for key, record in made:
        assert store.verify(key) == record
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("keys.sqlite3*"))
    store.close()
    raw += (tmp_path / "keys.sqlite3").read_bytes()
    for key, _ in made:
        secret = KEY_RE.fullmatch(key).group(2)  # type: ignore[union-attr]
        assert key.encode() not in raw
        assert secret.encode()[:16] not in raw
        assert hashlib.sha256(key.encode()).digest() in raw  # the check can see stored bytes


def test_records_never_show_a_secret(store: Keys) -> None:
    key, record = store.create("alice", {"drbg"}, None, None)
    secret = KEY_RE.fullmatch(key).group(2)  # type: ignore[union-attr]
    for text in (repr(record), str(record), repr(store), str(record.to_dict())):
        assert secret not in text
        assert hashlib.sha256(key.encode()).hexdigest() not in text


def test_only_the_hash_reaches_redis(prefix: str) -> None:
    store = RedisKeyStore(open_url(redis_url()), prefix=prefix)
    made = [store.create(f"k{i}", {"drbg"}, 1.5, 10, burst=3) for i in range(3)]
    store.revoke("k0")
    client = open_url(redis_url())
    try:
        raw = b""
        for name in redis_keys(prefix):
            key = f"{tagged(prefix)}{name}"
            kind = client.type(key)
            if kind == b"hash":
                raw += b"".join(k + v for k, v in client.hgetall(key).items())
            elif kind == b"zset":
                raw += b"".join(client.zrange(key, 0, -1))
    finally:
        client.close()
    assert redis_keys(prefix) == {":keys", ":keys:active"} | {f":key:{r.id}" for _, r in made}
    for key, _ in made:
        secret = KEY_RE.fullmatch(key).group(2)  # type: ignore[union-attr]
        assert key.encode() not in raw and secret.encode()[:16] not in raw
        assert hashlib.sha256(key.encode()).digest() in raw
    assert [r.id for r in store.records()] == [r.id for _, r in made]
    assert store.count_active() == 2
    store.close()


def test_redis_failures_are_unavailable_without_the_password() -> None:
    url = "redis://:hunter2secret@127.0.0.1:1/0"
    store = RedisKeyStore(open_url(url), prefix=new_prefix())
    usage = RedisUsageStore(open_url(url), prefix=new_prefix())
    key = "qrng_0123456789ab_" + "A" * 43
    calls: list[Callable[[], object]] = [
        lambda: store.verify(key),
        lambda: store.get("0123456789ab"),
        store.records,
        lambda: store.create("bob", {"drbg"}, None, None),
        store.check,
        lambda: usage.consume("p", "2030-01-01", 1, 10),
        lambda: usage.refund("p", "2030-01-01", 1),
        lambda: usage.used("p", "2030-01-01"),
    ]
    for call in calls:
        with pytest.raises(Unavailable, match="in Redis failed") as err:
            call()
        assert "hunter2secret" not in err.value.message and key not in err.value.message
    assert "hunter2secret" not in repr(store) + repr(usage)


def test_the_stores_follow_the_pool(tmp_path: Path, prefix: str) -> None:
    sqlite = make_settings(tmp_path)
    assert count_active(sqlite) == 0 and not sqlite.keys_path.exists()  # counting creates nothing
    keys = open_key_store(sqlite)
    assert isinstance(keys, KeyStore) and keys.path == sqlite.keys_path
    assert isinstance(open_usage_store(sqlite), UsageStore)
    keys.create("local", {"drbg"}, None, None)
    assert count_active(sqlite) == 1
    redis_url()
    shared = make_settings(tmp_path, pool="redis", redis_key=prefix)
    remote = open_key_store(shared)
    assert isinstance(remote, RedisKeyStore)
    assert isinstance(open_usage_store(shared), RedisUsageStore)
    assert count_active(shared) == 0
    remote.create("shared", {"drbg"}, None, None)
    assert count_active(shared) == 1
    remote.close()


def test_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.sqlite3"
    path.parent.mkdir()
    path.touch(mode=0o644)
    path.chmod(0o644)
    KeyStore(path).create("a", {"drbg"}, None, None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = tmp_path / "new" / "keys.sqlite3"
    KeyStore(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.parent.stat().st_mode) & 0o077 == 0


def test_threads_share_the_store(store: Keys, usage: Usage) -> None:
    key, record = store.create("alice", {"drbg"}, None, None)
    results: list[KeyRecord | None] = []

    def work() -> None:
        for _ in range(20):
            results.append(store.verify(key))
            usage.consume("p", "2030-01-01", 1, 10**6)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [record] * 80
    assert usage.used("p", "2030-01-01") == 80


def _use_inherited(store: Keys, key: str, out: multiprocessing.Queue[str | None]) -> None:
    record = store.verify(key)
    out.put(None if record is None else record.id)


def test_store_survives_fork(store: Keys) -> None:
    key, record = store.create("alice", {"drbg"}, None, None)
    assert store.verify(key) == record  # the parent's connection is open
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[str | None] = ctx.Queue()
    p = ctx.Process(target=_use_inherited, args=(store, key, out))
    p.start()
    assert out.get(timeout=30) == record.id
    p.join(timeout=30)
    assert p.exitcode == 0
    assert store.verify(key) == record


# -- a damaged file -------------------------------------------------------------------------


def damage(path: Path) -> None:
    """Overwrite a closed store's file (and drop its WAL) with bytes SQLite rejects."""
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    path.write_bytes(b"this is not an SQLite database " * 256)


def test_opening_a_damaged_file_is_unavailable_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    damage(path)
    with pytest.raises(Unavailable, match="not a database") as err:
        KeyStore(path)
    assert str(path) in err.value.message and err.value.status == 503


def test_sqlite_errors_after_opening_are_unavailable(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite3")
    usage = UsageStore(store.path)
    key, record = store.create("alice", {"drbg"}, None, 10)
    store.check()
    usage.used(record.principal, "2030-01-01")
    store.close()
    usage.close()
    damage(store.path)
    calls = [
        lambda: store.verify(key),
        lambda: store.get(record.id),
        store.records,
        lambda: store.revoke(record.id),
        lambda: usage.consume(record.principal, "2030-01-01", 1, 10),
        lambda: usage.refund(record.principal, "2030-01-01", 1),
        lambda: usage.used(record.principal, "2030-01-01"),
        lambda: store.create("bob", {"drbg"}, None, None),
        store.check,
    ]
    for call in calls:
        with pytest.raises(Unavailable, match="key store") as err:
            call()
        assert key not in err.value.message
