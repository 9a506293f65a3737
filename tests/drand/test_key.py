"""The drand chain's key file: made once, owner-only, with the genesis time of its first
start; every later load and every racing worker gets the same key and genesis."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from quantumrng.drand.chain import UNCHAINED_G1, public_key
from quantumrng.drand.key import KEY_FILE, SHARED_RECORD, load_chain_secret, open_shared
from quantumrng.errors import ConfigError
from quantumrng.pool.memory import MemoryPool


def draw(n: int) -> bytes:
    return os.urandom(n)


def test_the_key_is_made_once_owner_only_with_genesis_now(tmp_path: Path) -> None:
    made = load_chain_secret(tmp_path, draw, now=lambda: 1_700_000_000.7)
    assert made.genesis_time == 1_700_000_000
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600

    def refuse(n: int) -> bytes:
        raise AssertionError("an existing key is not drawn again")

    again = load_chain_secret(tmp_path, refuse, now=lambda: 1_800_000_000.0)
    assert again.genesis_time == made.genesis_time
    assert public_key(UNCHAINED_G1, again.secret) == public_key(UNCHAINED_G1, made.secret)
    assert "secret" not in repr(again)


def test_workers_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def start(i: int) -> None:
        barrier.wait()
        secret = load_chain_secret(tmp_path, draw, now=lambda: 1_000.0 + i)
        keys.append(public_key(UNCHAINED_G1, secret.secret) + secret.genesis_time.to_bytes(8))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(keys) == 8 and len(set(keys)) == 1


def test_a_key_file_others_can_read_or_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    load_chain_secret(tmp_path, draw)
    path = tmp_path / KEY_FILE
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="other users"):
        load_chain_secret(tmp_path, draw)
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="not 72 bytes"):
        load_chain_secret(tmp_path, draw)


# --- one chain per deployment: the key shared through the pool's store -------------------


def _pk(secret: object) -> bytes:
    return public_key(UNCHAINED_G1, secret.secret)  # type: ignore[attr-defined]


def test_nodes_sharing_a_pool_serve_one_chain(tmp_path: Path) -> None:
    pool, node_key = MemoryPool(), os.urandom(32)
    first = load_chain_secret(tmp_path / "a", draw, pool=pool, pool_key=node_key, holder="a")

    def refuse(n: int) -> bytes:
        raise AssertionError("a second node does not make a key of its own")

    second = load_chain_secret(tmp_path / "b", refuse, pool=pool, pool_key=node_key, holder="b")
    assert _pk(second) == _pk(first) and second.genesis_time == first.genesis_time
    assert (tmp_path / "b" / KEY_FILE).read_bytes() == (tmp_path / "a" / KEY_FILE).read_bytes()


def test_the_shared_record_reveals_nothing_and_opens_only_under_the_node_key(
    tmp_path: Path,
) -> None:
    pool, node_key = MemoryPool(), os.urandom(32)
    load_chain_secret(tmp_path / "a", draw, pool=pool, pool_key=node_key, holder="a")
    sealed = pool.read_record(SHARED_RECORD)
    assert sealed is not None
    assert (tmp_path / "a" / KEY_FILE).read_bytes()[:16] not in sealed
    assert open_shared(node_key, sealed) == (tmp_path / "a" / KEY_FILE).read_bytes()
    with pytest.raises(ConfigError, match="pool_key_file"):
        load_chain_secret(tmp_path / "b", draw, pool=pool, pool_key=os.urandom(32), holder="b")
    assert not (tmp_path / "b" / KEY_FILE).exists()


def test_a_node_with_a_key_file_publishes_it_and_keeps_its_chain(tmp_path: Path) -> None:
    alone = load_chain_secret(tmp_path / "a", draw, now=lambda: 1_000.0)
    pool, node_key = MemoryPool(), os.urandom(32)
    shared = load_chain_secret(tmp_path / "a", draw, pool=pool, pool_key=node_key, holder="a")
    assert _pk(shared) == _pk(alone) and shared.genesis_time == 1_000
    joined = load_chain_secret(tmp_path / "b", draw, pool=pool, pool_key=node_key, holder="b")
    assert _pk(joined) == _pk(alone)


def test_nodes_racing_for_the_first_key_agree(tmp_path: Path) -> None:
    pool, node_key = MemoryPool(), os.urandom(32)
    keys: list[bytes] = []

    def start(i: int) -> None:
        secret = load_chain_secret(
            tmp_path / str(i), draw, pool=pool, pool_key=node_key, holder=str(i)
        )
        keys.append(_pk(secret))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(keys) == 6 and len(set(keys)) == 1
