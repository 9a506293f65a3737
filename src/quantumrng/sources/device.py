"""The ``file`` source: bytes read from a hardware RNG device such as ``/dev/hwrng``.

Each byte is one row of 8 columns (bit positions). The device's min-entropy
per bit is what the operator assessed (``file_entropy``); the health tests
derive their cutoffs from it.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from quantumrng.config import Settings
from quantumrng.errors import ConfigError, SourceError
from quantumrng.sources._common import stamp
from quantumrng.sources.base import Harvest

__all__ = ["FileSource", "read_exactly"]


def read_exactly(path: Path, n: int) -> bytes:
    """Return exactly ``n`` bytes read from ``path``, or raise :class:`SourceError`.

    Devices and pipes hand out short chunks, so reads repeat until ``n``
    bytes arrived; end of file before that is a short read.
    """
    chunks: list[bytes] = []
    got = 0
    try:
        with path.open("rb", buffering=0) as fh:
            while got < n:
                chunk = fh.read(n - got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
    except FileNotFoundError:
        raise SourceError(f"entropy device {path} does not exist") from None
    except PermissionError:
        raise SourceError(f"permission denied reading entropy device {path}") from None
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "I/O error")
        raise SourceError(f"cannot read entropy device {path}: {reason}") from None
    if got < n:
        raise SourceError(f"short read from entropy device {path}: {got} of {n} bytes")
    return b"".join(chunks)


class FileSource:
    """Read ``file_read_bytes`` bytes from ``file_path`` per harvest."""

    kind = "file"

    def __init__(self, settings: Settings) -> None:
        if settings.file_read_bytes < 1:
            raise ConfigError("file_read_bytes must be positive")
        self.path = settings.file_path
        self.read_bytes = settings.file_read_bytes
        self.entropy = settings.file_entropy

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
        """Return ``read_bytes`` bytes of the device as 8-bit rows."""
        data = read_exactly(self.path, self.read_bytes)
        return Harvest(
            data=data,
            width=8,
            samples=len(data),
            provenance=stamp(self.kind, backend=str(self.path)),
            assessed_entropy=self.entropy,
            creditable=True,
        )
