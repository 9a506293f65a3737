"""The file source: a character device read in full, in time, never twice the same."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quantumrng.config import Settings, load_settings
from quantumrng.errors import ConfigError, SourceError, SourceTimeout
from quantumrng.sources import FileSource, device


def _source(path: Path, n: int, entropy: float = 0.5, timeout: float = 10.0) -> FileSource:
    return FileSource(
        Settings(
            source="file",
            file_path=path,
            file_read_bytes=n,
            file_entropy=entropy,
            file_timeout=timeout,
        )
    )


class Pty:
    """A pseudo-terminal: its slave end is a character device that blocks until the
    test writes to the master end."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)  # bytes pass as written, no line discipline
        self.path = Path(os.ttyname(slave))
        os.close(slave)
        self.closed = False

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.master)


@pytest.fixture
def pty() -> Iterator[Pty]:
    device_ = Pty()
    yield device_
    device_.close()


def _later(*steps: Callable[[], object] | float) -> threading.Thread:
    """Run ``steps`` (callables, or seconds to sleep) in a thread."""

    def run() -> None:
        for step in steps:
            if callable(step):
                step()
            else:
                time.sleep(step)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# --- what is read -----------------------------------------------------------


def test_dev_urandom_is_read_and_credited_as_assessed() -> None:
    source = _source(Path("/dev/urandom"), 500, entropy=0.8)
    harvest = source.harvest()
    assert len(harvest.data) == 500
    assert (harvest.width, harvest.samples) == (8, 500)
    assert harvest.assessed_entropy == 0.8
    assert harvest.creditable is True
    assert (harvest.provenance.source, harvest.provenance.backend) == ("file", "/dev/urandom")
    assert source.harvest().data != harvest.data


def test_reads_exactly_the_first_n_bytes_the_device_delivers(pty: Pty) -> None:
    payload = bytes(range(256)) * 3
    pty.write(payload)
    assert _source(pty.path, 500).harvest().data == payload[:500]


def test_a_device_delivering_short_chunks_is_read_in_full(pty: Pty) -> None:
    thread = _later(
        lambda: pty.write(b"a" * 7),
        0.02,
        lambda: pty.write(b"b" * 5),
        0.02,
        lambda: pty.write(b"c" * 20),
    )
    harvest = _source(pty.path, 30).harvest()
    thread.join(5)
    assert harvest.data == b"a" * 7 + b"b" * 5 + b"c" * 18


# --- what is refused --------------------------------------------------------


def test_a_regular_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hwrng"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match=f"{path} is a regular file, not a character device"):
        _source(path, 8)


def test_a_regular_file_put_in_the_device_s_place_is_refused_at_harvest(tmp_path: Path) -> None:
    path = tmp_path / "hwrng"
    source = _source(path, 8)
    path.write_bytes(bytes(range(256)))
    with pytest.raises(SourceError, match=f"{path} is a regular file, not a character device"):
        source.harvest()


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    with pytest.raises(ConfigError, match=f"{path} is a FIFO, not a character device"):
        _source(path, 8)


def test_a_fifo_put_in_the_device_s_place_is_refused_at_harvest_without_blocking(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fifo"
    source = _source(path, 8)
    os.mkfifo(path)  # no writer: a blocking open would hang
    with pytest.raises(SourceError, match=f"{path} is a FIFO, not a character device"):
        source.harvest()


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path} is a directory"):
        _source(tmp_path, 8)


def test_a_repeated_harvest_is_refused(pty: Pty) -> None:
    source = _source(pty.path, 32)
    pty.write(b"the same 32 bytes, twice over.. " * 2)
    first = source.harvest()
    with pytest.raises(SourceError, match=f"{pty.path} repeated an earlier harvest"):
        source.harvest()
    pty.write(first.data[::-1])
    assert source.harvest().data == first.data[::-1]


def test_dev_zero_is_a_character_device_but_repeats_and_is_refused() -> None:
    source = _source(Path("/dev/zero"), 64)
    assert source.harvest().data == bytes(64)
    with pytest.raises(SourceError, match="repeated an earlier harvest"):
        source.harvest()


def test_each_source_remembers_only_its_recent_harvests(
    pty: Pty, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(device, "RECENT_DIGESTS", 2)
    source = _source(pty.path, 4)
    for chunk in (b"aaaa", b"bbbb", b"cccc", b"aaaa"):  # a is forgotten once c arrives
        pty.write(chunk)
        assert source.harvest().data == chunk
    pty.write(b"cccc")
    with pytest.raises(SourceError, match="repeated an earlier harvest"):
        source.harvest()
    pty.write(b"aaaa")
    assert _source(pty.path, 4).harvest().data == b"aaaa"  # another source, its own memory


def test_the_bytes_and_their_digests_are_never_shown(pty: Pty) -> None:
    source = _source(pty.path, 16)
    data = b"0123456789abcdef"
    pty.write(data * 2)
    source.harvest()
    with pytest.raises(SourceError) as refused:
        source.harvest()
    digest = hashlib.sha256(data).digest()
    for shown in (str(refused.value), repr(source), repr(source.info())):
        assert digest.hex() not in shown
        assert data.decode() not in shown


# --- failures ---------------------------------------------------------------


def test_a_device_that_blocks_is_a_timeout_not_a_hang(pty: Pty) -> None:
    source = _source(pty.path, 16, timeout=0.25)
    started = time.monotonic()
    with pytest.raises(
        SourceTimeout, match=rf"{pty.path} did not deliver 16 bytes within .*0\.25 s"
    ):
        source.harvest()
    assert 0.25 <= time.monotonic() - started < 2.0


def test_the_timeout_bounds_the_whole_read_not_each_chunk(pty: Pty) -> None:
    source = _source(pty.path, 16, timeout=0.3)
    thread = _later(*[step for _ in range(10) for step in (lambda: pty.write(b"x"), 0.05)])
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match=r"got \d+\)"):
        source.harvest()
    assert time.monotonic() - started < 2.0
    thread.join(5)


def test_a_device_that_looks_readable_but_has_nothing_is_waited_on_not_spun(
    pty: Pty, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Devices without a poll method (/dev/hwrng) always poll readable; a non-blocking
    read then finds nothing (EAGAIN) until the hardware delivers."""
    reads: list[int] = []

    def empty(fd: int, n: int) -> bytes:
        reads.append(n)
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(device, "_wait_readable", lambda *_: True)
    source = _source(pty.path, 16, timeout=0.3)
    monkeypatch.setattr(os, "read", empty)
    with pytest.raises(SourceTimeout):
        source.harvest()
    monkeypatch.undo()
    assert 3 < len(reads) < 40


def test_a_device_at_end_of_file_is_a_short_read() -> None:
    with pytest.raises(
        SourceError, match=r"short read from entropy device /dev/null: 0 of 8 bytes"
    ):
        _source(Path("/dev/null"), 8).harvest()


def test_a_device_closed_early_is_a_short_read(pty: Pty) -> None:
    thread = _later(0.05, lambda: pty.write(b"x" * 4 + b"y" * 3), 0.1, pty.close)
    with pytest.raises(SourceError, match=f"short read from entropy device {pty.path}: 7 of 64"):
        _source(pty.path, 64).harvest()
    thread.join(5)


def test_missing_device(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=f"entropy device {tmp_path / 'absent'} does not exist"):
        _source(tmp_path / "absent", 8).harvest()


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(*_: object, **__: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(SourceError, match="permission denied reading entropy device"):
        _source(tmp_path / "hwrng", 8).harvest()


# --- settings ---------------------------------------------------------------


def test_rejects_nonpositive_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        _source(tmp_path / "x", 0)


def test_file_timeout_is_a_setting(tmp_path: Path) -> None:
    assert Settings().file_timeout == 10.0
    env = {"QRNG_FILE_TIMEOUT": "2.5", "QRNG_DATA_DIR": str(tmp_path)}
    assert load_settings(environ=env).file_timeout == 2.5


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_file_timeout_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ConfigError, match="file_timeout"):
        Settings(file_timeout=bad)


def test_info_names_the_device_and_its_claim(tmp_path: Path) -> None:
    info = _source(tmp_path / "hwrng", 16, entropy=0.25).info()
    assert info == {
        "kind": "file",
        "backend": str(tmp_path / "hwrng"),
        "read_bytes": 16,
        "assessed_entropy": 0.25,
        "creditable": True,
    }
