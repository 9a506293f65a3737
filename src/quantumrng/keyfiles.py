"""Secret files: the node key, signing keys, the beacon key; and state files replaced whole.

One way to make and read a file only its owner may read. A new file is
written to a private temporary file (mode 0600), synced, then hard-linked to
its name: linking fails when the name exists, so two processes starting
together agree on one file and nobody reads a half-written one. A file
others can read, or that is not a regular file, is refused with a
``ConfigError`` naming the file, never its contents.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from quantumrng.errors import ConfigError

__all__ = [
    "KEY_DIR_MODE",
    "KEY_FILE_MODE",
    "create_secret_file",
    "read_secret_file",
    "replace_file",
]

KEY_FILE_MODE = 0o600
KEY_DIR_MODE = 0o700


def _sync_directory(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def create_secret_file(path: Path, data: bytes, what: str) -> bool:
    """Write ``data`` to ``path`` (mode 0600) unless a file is there; True when this call
    made it. Its directory is made (mode 0700) if missing."""
    try:
        path.parent.mkdir(mode=KEY_DIR_MODE, parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, KEY_FILE_MODE)
        try:
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
        finally:
            temp.unlink(missing_ok=True)
        _sync_directory(path.parent)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise ConfigError(f"cannot create the {what} file {path}: {exc.strerror}") from None
    return True


def read_secret_file(path: Path, what: str, limit: int = 1 << 16) -> bytes:
    """Return the contents of the owner-only file ``path`` (at most ``limit`` bytes)."""
    try:
        with path.open("rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(f"the {what} file {path} is not a regular file")
            if mode & 0o077:
                raise ConfigError(
                    f"the {what} file {path} is open to other users (mode "
                    f"{stat.S_IMODE(mode):04o}); make it owner-only: chmod 600 {path}"
                )
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise ConfigError(f"the {what} file {path} is larger than {limit} bytes")
    return data


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600), whole: written to a temporary file
    beside it, synced, then renamed over it, so a crash leaves the old or the new
    content, never a mix (the last serial fed, the last log head seen).

    Raises ``OSError``; the caller says which file failed, and how that ends.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, KEY_FILE_MODE)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    _sync_directory(path.parent)
