"""Block integrity tags: a store writer cannot choose what is served, raise credit or relabel."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from quantumrng.block import BLOCK_BYTES, Block
from quantumrng.errors import ConfigError, EntropyUnavailable, NotSeeded, Unavailable
from quantumrng.node import Node
from quantumrng.pool import MemoryPool, Pool, RedisPool, SqlitePool, TaggedPool
from quantumrng.pool._common import dump_provenance
from quantumrng.pool.integrity import (
    KEY_BYTES,
    MAX_DROPPED_PER_TAKE,
    TAG_BYTES,
    load_or_create_key,
    seal,
    verify,
)
from quantumrng.pool.sqlite import SCHEMA_VERSION
from tests.blocks import make_blocks
from tests.conftest import make_settings
from tests.pool.support import delete_prefix, new_prefix, redis_url

KEY = bytes(range(KEY_BYTES))
OTHER_KEY = bytes(range(1, KEY_BYTES + 1))
ZEROS = bytes(BLOCK_BYTES)


def sealed(block: Block, key: bytes = KEY) -> Block:
    return replace(block, tag=seal(key, block))


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def zero_in_file(path: Path, data: bytes) -> None:
    """Overwrite ``data`` with zeros in the SQLite file, behind SQLite's back.

    Close the pool first: an open connection may keep the page in its cache.
    """
    conn = raw(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    content = path.read_bytes()
    at = content.find(data)
    assert at >= 0 and content.find(data, at + 1) < 0
    with path.open("r+b") as fh:
        fh.seek(at)
        fh.write(ZEROS)


@pytest.fixture
def sqlite_pool(tmp_path: Path) -> Iterator[TaggedPool]:
    pool = TaggedPool(SqlitePool(tmp_path / "pool.sqlite3"), KEY)
    yield pool
    pool.close()


def reopened(pool: TaggedPool) -> TaggedPool:
    """The same file and key in a new pool, after closing ``pool``."""
    assert isinstance(pool.engine, SqlitePool)
    pool.close()
    return TaggedPool(SqlitePool(pool.engine.path), KEY)


@pytest.fixture
def redis_pool() -> Iterator[TaggedPool]:
    prefix = new_prefix()
    pool = TaggedPool(RedisPool(redis_url(), prefix=prefix), KEY)
    yield pool
    pool.close()
    delete_prefix(prefix)


def redis_client() -> Any:
    import redis

    return redis.Redis.from_url(redis_url())


# -- the tag ----------------------------------------------------------------------------------


def test_a_sealed_block_verifies_under_its_key_only() -> None:
    block = sealed(make_blocks(1)[0])
    assert len(block.tag) == TAG_BYTES
    assert verify(KEY, block) is None
    assert verify(OTHER_KEY, block) == "bad tag"


def test_two_seals_of_one_block_differ_by_their_nonce() -> None:
    block = make_blocks(1)[0]
    assert seal(KEY, block) != seal(KEY, block)


@pytest.mark.parametrize(
    "change",
    [
        {"data": ZEROS},
        {"credited_bits": 511},
        {"tag": b""},
        {"tag": b"\x00" * TAG_BYTES},
    ],
    ids=["zeroed data", "other credit", "no tag", "zero tag"],
)
def test_any_change_to_a_sealed_block_fails(change: dict[str, object]) -> None:
    block = sealed(make_blocks(1, credited_bits=512)[0])
    assert verify(KEY, replace(block, **change)) is not None  # type: ignore[arg-type]


def test_a_raised_credit_or_relabelled_provenance_fails() -> None:
    block = sealed(make_blocks(1, source="simulator", credited_bits=0)[0])
    assert verify(KEY, replace(block, credited_bits=512)) == "bad tag"
    relabelled = replace(block.provenance, source="ibm", backend="ibm_fez")
    assert verify(KEY, replace(block, provenance=relabelled)) == "bad tag"


def test_block_repr_shows_neither_bytes_nor_tag() -> None:
    block = sealed(make_blocks(1)[0])
    assert block.data.hex() not in repr(block) and block.tag.hex() not in repr(block)
    assert repr(block.data) not in repr(block) and repr(block.tag) not in repr(block)


# -- the wrapper ------------------------------------------------------------------------------


def test_tagged_pool_is_a_pool_returning_the_blocks_put_without_tags() -> None:
    pool = TaggedPool(MemoryPool(), KEY)
    blocks = make_blocks(3)
    pool.put(blocks)
    assert isinstance(pool, Pool)
    assert all(len(b.tag) == TAG_BYTES for b in pool.engine.take(1))
    assert pool.take(2) == blocks[1:]
    assert pool.integrity_failures == 0


def test_repr_hides_the_key() -> None:
    pool = TaggedPool(MemoryPool(), KEY)
    assert KEY.hex() not in repr(pool) and repr(KEY) not in repr(pool)


def test_a_different_key_fails_every_block() -> None:
    engine = MemoryPool()
    TaggedPool(engine, KEY).put(make_blocks(5))
    other = TaggedPool(engine, OTHER_KEY)
    with pytest.raises(EntropyUnavailable):
        other.take(1)
    assert other.integrity_failures == 5
    assert engine.level().blocks == 0  # dropped: removed by the take, never served


def test_bad_blocks_are_replaced_by_good_ones_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = MemoryPool()
    bad, good = make_blocks(3), make_blocks(2)
    engine.put([replace(b, tag=b"") for b in bad[:1]] + [sealed(b, OTHER_KEY) for b in bad[1:]])
    TaggedPool(engine, KEY).put(good)
    pool = TaggedPool(engine, KEY)
    with caplog.at_level(logging.WARNING, "quantumrng.pool.integrity"):
        assert pool.take(2) == good
    assert pool.integrity_failures == 3
    assert pool.failures_by_reason() == {"missing tag": 1, "bad tag": 2}
    (record,) = caplog.records
    message = record.getMessage()
    assert "3 block(s)" in message
    assert not any(b.data.hex() in message or repr(b.data) in message for b in bad + good)


def test_a_take_gives_up_after_a_bounded_number_of_drops() -> None:
    engine = MemoryPool()
    engine.put(make_blocks(MAX_DROPPED_PER_TAKE + 10))  # untagged
    pool = TaggedPool(engine, KEY)
    with pytest.raises(EntropyUnavailable):
        pool.take(1)
    assert pool.integrity_failures == MAX_DROPPED_PER_TAKE
    assert engine.level().blocks == 10


def test_a_copied_block_is_served_once_by_this_process() -> None:
    engine = MemoryPool()
    block = sealed(make_blocks(1)[0])
    engine.put([block, block])  # a store writer's copy of a valid row
    pool = TaggedPool(engine, KEY)
    assert pool.take(1) == [replace(block, tag=b"")]
    with pytest.raises(EntropyUnavailable):
        pool.take(1)
    assert pool.failures_by_reason() == {"replayed": 1}


def test_a_block_relabelled_in_another_kind_is_dropped() -> None:
    engine = MemoryPool()
    TaggedPool(engine, KEY).put(make_blocks(1, source="simulator", credited_bits=0))
    pool = TaggedPool(engine, KEY)
    moved = engine.take(1)[0]
    engine.put([replace(moved, provenance=replace(moved.provenance, source="ibm"))])
    with pytest.raises(EntropyUnavailable):
        pool.take(1, source="ibm")
    assert pool.failures_by_reason() == {"bad tag": 1}


# -- the SQLite file --------------------------------------------------------------------------


def test_a_block_zeroed_in_the_sqlite_file_is_never_served(
    tmp_path: Path, sqlite_pool: TaggedPool
) -> None:
    blocks = make_blocks(3)
    sqlite_pool.put(blocks)
    path = tmp_path / "pool.sqlite3"
    sqlite_pool.close()
    zero_in_file(path, blocks[0].data)
    with raw(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    pool = reopened(sqlite_pool)
    try:
        assert pool.take(1) == blocks[1:2]
        assert pool.integrity_failures == 1
    finally:
        pool.close()


def test_a_raised_credit_in_the_sqlite_file_is_never_served(
    tmp_path: Path, sqlite_pool: TaggedPool
) -> None:
    sqlite_pool.put(make_blocks(2, source="simulator", credited_bits=0))
    with raw(tmp_path / "pool.sqlite3") as conn:
        conn.execute("UPDATE blocks SET credited_bits = 512")
    with pytest.raises(EntropyUnavailable):
        sqlite_pool.take(1)
    assert sqlite_pool.failures_by_reason() == {"bad tag": 2}


def test_simulator_blocks_relabelled_ibm_in_the_sqlite_file_are_never_served(
    tmp_path: Path, sqlite_pool: TaggedPool
) -> None:
    sqlite_pool.put(make_blocks(2, source="simulator", credited_bits=0))
    with raw(tmp_path / "pool.sqlite3") as conn:
        conn.execute("UPDATE blocks SET source = 'ibm'")
        conn.execute(
            "UPDATE harvests SET source = 'ibm',"
            " provenance = replace(provenance, '\"simulator\"', '\"ibm\"')"
        )
    assert sqlite_pool.level().by_source == {"ibm": 2}
    with pytest.raises(EntropyUnavailable):
        sqlite_pool.take(1, source="ibm")
    assert sqlite_pool.failures_by_reason() == {"bad tag": 2}


def test_a_row_rewritten_with_other_types_is_dropped(
    tmp_path: Path, sqlite_pool: TaggedPool
) -> None:
    blocks = make_blocks(3)
    sqlite_pool.put(blocks)
    with raw(tmp_path / "pool.sqlite3") as conn:
        conn.execute("UPDATE blocks SET data = 64 WHERE id = 1")  # bytes(64) would be zeros
        conn.execute("UPDATE blocks SET credited_bits = 'all' WHERE id = 2")
    assert sqlite_pool.take(1) == blocks[2:]
    assert sqlite_pool.integrity_failures == 2


def test_a_version_1_file_gains_tags_and_its_old_blocks_are_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pool.sqlite3"
    with raw(path) as conn:
        conn.executescript(
            """
            CREATE TABLE harvests (harvest_id TEXT PRIMARY KEY, source TEXT NOT NULL,
                                   provenance TEXT NOT NULL);
            CREATE TABLE blocks (id INTEGER PRIMARY KEY AUTOINCREMENT,
                                 harvest_id TEXT NOT NULL REFERENCES harvests(harvest_id),
                                 source TEXT NOT NULL, data BLOB NOT NULL,
                                 credited_bits INTEGER NOT NULL);
            PRAGMA user_version = 1;
            """
        )
        old = make_blocks(1)[0]
        hid = old.provenance.harvest_id
        conn.execute(
            "INSERT INTO harvests VALUES (?, 'os', ?)", (hid, dump_provenance(old.provenance))
        )
        conn.execute(
            "INSERT INTO blocks (harvest_id, source, data, credited_bits) VALUES (?, 'os', ?, 512)",
            (hid, old.data),
        )
    conn.close()
    with caplog.at_level(logging.WARNING, "quantumrng.pool.sqlite"):
        pool = TaggedPool(SqlitePool(path), KEY)
    try:
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 1 and "1 blocks from before integrity tags" in messages[0]
        with raw(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        new = make_blocks(1)
        pool.put(new)
        assert pool.take(1) == new
        assert pool.failures_by_reason() == {"missing tag": 1}
    finally:
        pool.close()


# -- Redis ------------------------------------------------------------------------------------


def prefix_of(pool: TaggedPool) -> str:
    assert isinstance(pool.engine, RedisPool)
    return pool.engine.prefix


def test_a_rewritten_redis_entry_is_never_served(redis_pool: TaggedPool) -> None:
    blocks = make_blocks(3)
    redis_pool.put(blocks)
    key = f"{prefix_of(redis_pool)}:b:os"
    client = redis_client()
    entry: bytes = client.lindex(key, 0)
    at = entry.index(blocks[0].data)
    client.lset(key, 0, entry[:at] + ZEROS + entry[at + BLOCK_BYTES :])
    client.lset(key, 1, entry[:at] + ZEROS)  # and no tag
    client.close()
    assert redis_pool.take(1) == blocks[2:]
    assert redis_pool.failures_by_reason() == {"bad tag": 1, "missing tag": 1}


def test_a_copied_redis_entry_is_dropped_by_the_process_that_served_it(
    redis_pool: TaggedPool,
) -> None:
    blocks = make_blocks(1)
    redis_pool.put(blocks)
    prefix = prefix_of(redis_pool)
    client = redis_client()
    client.rpush(f"{prefix}:b:os", client.lindex(f"{prefix}:b:os", 0))
    client.hincrby(f"{prefix}:h:{blocks[0].provenance.harvest_id}", "left", 1)
    client.close()
    assert redis_pool.take(1) == blocks
    with pytest.raises(EntropyUnavailable):
        redis_pool.take(1)
    assert redis_pool.failures_by_reason() == {"replayed": 1}


def test_a_valid_entry_moved_to_another_kind_is_dropped(redis_pool: TaggedPool) -> None:
    redis_pool.put(make_blocks(1, source="simulator", credited_bits=0))
    prefix = prefix_of(redis_pool)
    client = redis_client()
    client.rpush(f"{prefix}:b:ibm", client.lpop(f"{prefix}:b:simulator"))
    client.sadd(f"{prefix}:kinds", "ibm")
    client.close()
    with pytest.raises(EntropyUnavailable):
        redis_pool.take(1, source="ibm")
    assert redis_pool.failures_by_reason() == {"wrong source": 1}


# -- the node key file ------------------------------------------------------------------------


def test_the_key_file_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "pool.key"
    old = os.umask(0o000)
    try:
        key = load_or_create_key(path)
    finally:
        os.umask(old)
    assert len(key) == KEY_BYTES and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_key(path) == key
    assert sorted(p.name for p in path.parent.iterdir()) == ["pool.key"]


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "pool.key"
    keys: list[bytes] = []
    start = threading.Barrier(8)

    def load() -> None:
        start.wait(timeout=5)
        keys.append(load_or_create_key(path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert keys[0] == path.read_bytes()


@pytest.mark.parametrize("content", [b"", b"short", b"s3cr3t" * 10], ids=["empty", "short", "long"])
def test_a_malformed_key_file_is_refused_naming_the_file_not_its_contents(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "pool.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        load_or_create_key(path)
    assert str(path) in err.value.message and "\n" not in err.value.message
    assert not content or content.decode() not in err.value.message


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_open_to_other_users_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "pool.key"
    path.write_bytes(bytes(range(32)))
    path.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600") as err:
        load_or_create_key(path)
    assert str(path) in err.value.message and f"{mode:04o}" in err.value.message
    path.chmod(0o600)
    assert load_or_create_key(path) == bytes(range(32))


def test_verifying_needs_the_key_file_a_copy_elsewhere_works(tmp_path: Path) -> None:
    first = make_settings(tmp_path / "a", pool="sqlite", source="os")
    node = Node(first, harvest_on_demand=False)
    blocks = make_blocks(4)
    node.pool.put(blocks)
    node.close()
    copy = tmp_path / "elsewhere.key"
    copy.write_bytes(first.pool_key_path.read_bytes())
    copy.chmod(0o600)
    shared = first.replace(pool_key_file=copy)
    node = Node(shared, harvest_on_demand=False)
    try:
        assert node.pool.take(1) == blocks[:1]
    finally:
        node.close()
    first.pool_key_path.unlink()  # a new key is made: every old block fails
    node = Node(first, harvest_on_demand=False)
    try:
        with pytest.raises(EntropyUnavailable):
            node.pool.take(1)
        assert node.integrity_failures == 3
        assert node.status()["pool"]["integrity_failures"] == 3
    finally:
        node.close()


# -- nothing tampered is served, raw or as a seed -----------------------------------------------


def tampered_node(tmp_path: Path, good: int) -> tuple[Node, list[Block]]:
    """A node over an SQLite pool whose first 4 blocks were zeroed in the file, then ``good``."""
    settings = make_settings(tmp_path, pool="sqlite", source="file")
    node = Node(settings, harvest_on_demand=False)
    bad, kept = make_blocks(4, "file"), make_blocks(good, "file")
    node.pool.put(bad + kept)
    node.close()
    for block in bad:
        zero_in_file(settings.pool_path, block.data)
    return Node(settings, harvest_on_demand=False), kept


def test_raw_output_never_serves_a_tampered_block(tmp_path: Path) -> None:
    node, kept = tampered_node(tmp_path, 1)
    try:
        assert node.engine.raw_bytes(BLOCK_BYTES)[0] == kept[0].data
        assert node.integrity_failures == 4
    finally:
        node.close()


def test_the_drbg_never_seeds_from_a_tampered_block(tmp_path: Path) -> None:
    node, _ = tampered_node(tmp_path, 0)
    try:
        with pytest.raises(NotSeeded):
            node.engine.reseed()
        assert not node.engine.seeded and node.integrity_failures == 4
    finally:
        node.close()


def test_the_drbg_seeds_from_the_good_block_behind_tampered_ones(tmp_path: Path) -> None:
    node, kept = tampered_node(tmp_path, 1)
    try:
        node.engine.reseed()
        stats: dict[str, Any] = node.engine.stats()
        assert stats["seed"]["provenance"] == kept[0].provenance.to_dict()
        assert node.integrity_failures == 4
    finally:
        node.close()


@pytest.mark.parametrize(
    "path", ["/api/v2/integers?n=16&min=0&max=255&mode=raw", "/api/v2/uuids?n=4&mode=raw"]
)
def test_raw_answers_are_503_rather_than_tampered_blocks(tmp_path: Path, path: str) -> None:
    from quantumrng.server import create_app

    node, _ = tampered_node(tmp_path, 0)
    try:
        client = TestClient(create_app(node.settings, node), raise_server_exceptions=False)
        r = client.get(path)
        assert r.status_code == 503, r.text
        assert "00000000-0000-4000-8000" not in r.text
        assert node.integrity_failures == 4
        status = client.get("/api/v2/status").json()
        assert status["pool"]["integrity_failures"] == 4
        assert "qrng_pool_integrity_failures_total 4.0" in client.get("/metrics").text
    finally:
        node.close()


def test_every_block_put_by_a_node_gets_a_unique_nonce(tmp_path: Path) -> None:
    engine = MemoryPool()
    TaggedPool(engine, KEY).put(make_blocks(50, harvest_id=uuid.uuid4().hex))
    nonces = {b.tag[:16] for b in engine.take(50)}
    assert len(nonces) == 50


def test_a_record_altered_in_the_store_fails_closed_and_is_counted() -> None:
    engine = MemoryPool()
    pool = TaggedPool(engine, bytes(range(32)))
    pool.write_record("assessment:ibm", b'{"h": 0.5}')
    assert pool.read_record("assessment:ibm") == b'{"h": 0.5}'
    stored = engine.read_record("assessment:ibm")
    assert stored is not None and stored.startswith(b'{"h": 0.5}')
    engine.write_record("assessment:ibm", b'{"h": 1.0}' + stored[-32:])
    with pytest.raises(Unavailable, match="assessment record failed the integrity check"):
        pool.read_record("assessment:ibm")
    engine.write_record("assessment:ibm", b"short")
    with pytest.raises(Unavailable):
        pool.read_record("assessment:ibm")
    assert pool.failures_by_reason() == {"bad record tag": 2}


def test_a_record_sealed_under_one_name_does_not_verify_under_another() -> None:
    engine = MemoryPool()
    pool = TaggedPool(engine, bytes(range(32)))
    pool.write_record("state:ibm", b"ok")
    stored = engine.read_record("state:ibm")
    assert stored is not None
    engine.write_record("state:file", stored)
    with pytest.raises(Unavailable):
        pool.read_record("state:file")
