"""keyfiles: secret files made once and owner-only; state files replaced whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quantumrng.errors import ConfigError
from quantumrng.keyfiles import create_secret_file, read_secret_file, replace_file


def test_a_secret_file_is_made_once_owner_only_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.key"
    assert create_secret_file(path, b"first", "node key")
    assert not create_secret_file(path, b"second", "node key")
    assert read_secret_file(path, "node key") == b"first"
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_secret_file_others_can_read_is_refused_without_its_contents(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"s3cret-bytes")
    path.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        read_secret_file(path, "node key")
    assert str(path) in caught.value.message and "s3cret" not in caught.value.message


def test_replace_file_writes_the_whole_new_content_owner_only_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "feed.state"
    replace_file(path, b'{"serial": 1}\n')
    replace_file(path, b'{"serial": 2}\n')
    assert path.read_bytes() == b'{"serial": 2}\n'
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["feed.state"]


def test_replace_file_that_cannot_rename_raises_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "head.json"
    path.mkdir()
    (path / "kept").write_bytes(b"old")
    with pytest.raises(OSError):
        replace_file(path, b"new")
    assert (path / "kept").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["head.json"]
