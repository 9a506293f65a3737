"""The drand chain's key file: made once, owner-only, with the genesis time of its first
start; every later load and every racing worker gets the same key and genesis."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from quantumrng.drand.chain import UNCHAINED_G1, public_key
from quantumrng.drand.key import KEY_FILE, load_chain_secret
from quantumrng.errors import ConfigError


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
