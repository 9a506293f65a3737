"""The file source: a hardware RNG device read in full or not at all."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from quantumrng.config import Settings
from quantumrng.errors import ConfigError, SourceError
from quantumrng.sources import FileSource


def _source(path: Path, n: int, entropy: float = 0.5) -> FileSource:
    return FileSource(
        Settings(source="file", file_path=path, file_read_bytes=n, file_entropy=entropy)
    )


def test_reads_the_first_n_bytes(tmp_path: Path) -> None:
    path = tmp_path / "hwrng"
    payload = bytes(range(256)) * 3
    path.write_bytes(payload)
    harvest = _source(path, 500, entropy=0.8).harvest()
    assert harvest.data == payload[:500]
    assert (harvest.width, harvest.samples) == (8, 500)
    assert harvest.assessed_entropy == 0.8
    assert harvest.creditable is True
    assert (harvest.provenance.source, harvest.provenance.backend) == ("file", str(path))


def test_short_file_is_a_short_read(tmp_path: Path) -> None:
    path = tmp_path / "hwrng"
    path.write_bytes(b"\x01" * 10)
    with pytest.raises(SourceError, match=r"short read .*10 of 11 bytes"):
        _source(path, 11).harvest()


def test_missing_device(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        _source(tmp_path / "absent", 8).harvest()


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read entropy device"):
        _source(tmp_path, 8).harvest()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of mode")
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "hwrng"
    path.write_bytes(b"\x00" * 8)
    path.chmod(0)
    with pytest.raises(SourceError, match="permission denied"):
        _source(path, 8).harvest()


def test_permission_error_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(*_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(SourceError, match="permission denied reading entropy device"):
        _source(tmp_path / "hwrng", 8).harvest()


def _feed_fifo(path: Path, chunks: list[bytes]) -> threading.Thread:
    def write() -> None:
        with path.open("wb", buffering=0) as fh:
            for chunk in chunks:
                fh.write(chunk)
                time.sleep(0.01)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_fifo_delivering_short_chunks_is_read_in_full(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    thread = _feed_fifo(path, [b"a" * 7, b"b" * 5, b"c" * 20])
    harvest = _source(path, 30).harvest()
    thread.join(5)
    assert harvest.data == b"a" * 7 + b"b" * 5 + b"c" * 18


def test_fifo_closed_early_is_a_short_read(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    thread = _feed_fifo(path, [b"x" * 4, b"y" * 3])
    with pytest.raises(SourceError, match="7 of 64 bytes"):
        _source(path, 64).harvest()
    thread.join(5)


def test_rejects_nonpositive_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        _source(tmp_path / "x", 0)


def test_info_names_the_device_and_its_claim(tmp_path: Path) -> None:
    info = _source(tmp_path / "hwrng", 16, entropy=0.25).info()
    assert info == {
        "kind": "file",
        "backend": str(tmp_path / "hwrng"),
        "read_bytes": 16,
        "assessed_entropy": 0.25,
        "creditable": True,
    }
