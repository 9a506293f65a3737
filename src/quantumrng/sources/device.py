"""The ``file`` source: bytes read from a hardware RNG device such as ``/dev/hwrng``.

Each byte is one row of 8 columns (bit positions). The device's min-entropy
per bit is what the operator assessed (``file_entropy``); the health tests
derive their cutoffs from it.

Only a character device is read. A regular file, a FIFO or a directory is
refused: a file read again from its start yields the same bytes, and a pipe
hands out whatever its writer chooses, neither of which is a noise source.
For the same reason a harvest that repeats an earlier one (same SHA-256)
is refused. A read that blocks longer than ``file_timeout`` seconds is a
:class:`~quantumrng.errors.SourceTimeout`, never a hang.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import select
import stat
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from quantumrng.config import Settings
from quantumrng.errors import ConfigError, RepeatedHarvest, SourceError, SourceTimeout
from quantumrng.sources._common import stamp
from quantumrng.sources.base import Harvest

__all__ = ["RECENT_DIGESTS", "FileSource", "read_exactly"]

#: Digests of this many recent harvests are kept per source to refuse a repeat.
RECENT_DIGESTS = 4096

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def _what(mode: int) -> str:
    """Name the kind of file ``mode`` describes, as an error message says it."""
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "of an unknown kind")


def _not_a_device(path: Path, mode: int) -> str:
    return f"entropy device {path} is {_what(mode)}, not a character device"


def _os_error(path: Path, exc: OSError) -> SourceError:
    if isinstance(exc, FileNotFoundError):
        return SourceError(f"entropy device {path} does not exist")
    if isinstance(exc, PermissionError):
        return SourceError(f"permission denied reading entropy device {path}")
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "I/O error")
    return SourceError(f"cannot read entropy device {path}: {reason}")


#: The longest single poll, in milliseconds (poll(2) takes a C int); longer waits loop.
_POLL_MAX_MS = 1 << 30

#: Pause after a read found nothing although poll said readable, doubling up to the
#: most: devices without a poll method (``/dev/hwrng``) always look readable, and
#: without a pause a slow one would be spun on until the deadline.
_EMPTY_PAUSE, _EMPTY_PAUSE_MAX = 0.001, 0.05


def _wait_readable(poller: select.poll, seconds: float) -> bool:
    """Wait at most ``seconds`` for the polled device to be readable (or to hang up)."""
    return bool(poller.poll(min(_POLL_MAX_MS, max(1, math.ceil(seconds * 1000)))))


def read_exactly(path: Path, n: int, *, timeout: float) -> bytes:
    """Return exactly ``n`` bytes read from the character device ``path``.

    Devices hand out short chunks, so reads repeat until ``n`` bytes
    arrived; end of file before that is a short read. Raises
    :class:`SourceError` when ``path`` is missing, unreadable or not a
    character device, or the read comes up short, and
    :class:`SourceTimeout` when the ``n`` bytes have not arrived within
    ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _os_error(path, exc) from None
    chunks: list[bytes] = []
    got = 0
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISCHR(mode):
            raise SourceError(_not_a_device(path, mode))
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        pause = _EMPTY_PAUSE
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceTimeout(
                    f"entropy device {path} did not deliver {n} bytes within "
                    f"file_timeout = {timeout:g} s (got {got})"
                )
            if not _wait_readable(poller, remaining):
                continue  # the deadline is checked again above
            try:
                chunk = os.read(fd, n - got)
            except (BlockingIOError, InterruptedError):
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(2 * pause, _EMPTY_PAUSE_MAX)
                continue
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
            pause = _EMPTY_PAUSE
    except OSError as exc:
        raise _os_error(path, exc) from None
    finally:
        os.close(fd)
    if got < n:
        raise SourceError(f"short read from entropy device {path}: {got} of {n} bytes")
    return b"".join(chunks)


class FileSource:
    """Read ``file_read_bytes`` bytes from the character device ``file_path`` per harvest."""

    kind = "file"

    def __init__(self, settings: Settings) -> None:
        if settings.file_read_bytes < 1:
            raise ConfigError("file_read_bytes must be positive")
        self.path = settings.file_path
        self.read_bytes = settings.file_read_bytes
        self.entropy = settings.file_entropy
        self.timeout = settings.file_timeout
        try:
            mode = self.path.stat().st_mode
        except OSError:
            mode = None  # absent or unreadable now: the harvest says why
        if mode is not None and not stat.S_ISCHR(mode):
            raise ConfigError(f"file_path: {_not_a_device(self.path, mode)}")
        # Digests of recent harvests, oldest first; never logged or shown.
        self._recent: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FileSource(path={str(self.path)!r}, read_bytes={self.read_bytes})"

    def info(self) -> dict[str, Any]:
        """Return what status pages show about this source."""
        return {
            "kind": self.kind,
            "backend": str(self.path),
            "read_bytes": self.read_bytes,
            "assessed_entropy": self.entropy,
            "creditable": True,
        }

    def harvest(self) -> Harvest:
        """Return ``read_bytes`` bytes of the device as 8-bit rows.

        Raises :class:`SourceError` when the bytes repeat an earlier harvest
        of this source (one of the last :data:`RECENT_DIGESTS`).
        """
        data = read_exactly(self.path, self.read_bytes, timeout=self.timeout)
        self._refuse_repeat(hashlib.sha256(data).digest())
        return Harvest(
            data=data,
            width=8,
            samples=len(data),
            provenance=stamp(self.kind, backend=str(self.path)),
            assessed_entropy=self.entropy,
            creditable=True,
        )

    def _refuse_repeat(self, digest: bytes) -> None:
        with self._lock:
            if digest in self._recent:
                self._recent.move_to_end(digest)
                raise RepeatedHarvest(
                    f"entropy device {self.path} repeated an earlier harvest: "
                    "its output is not fresh entropy"
                )
            self._recent[digest] = None
            if len(self._recent) > RECENT_DIGESTS:
                self._recent.popitem(last=False)
