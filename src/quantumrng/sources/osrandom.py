"""The ``os`` source: bytes from the kernel's CSPRNG (``getrandom(2)``).

Each byte is one row of 8 columns (bit positions). The kernel's output is
that of a deterministic generator, not of a noise source (SP 800-90B §2.2.1):
its harvests are health-tested (at ``NOMINAL_ENTROPY`` for the cutoffs) but
not creditable, so they earn zero entropy credit. The kernel's entropy
already reaches every seed as the engine's OS-entropy input; counting it
again here would count it twice.
"""

from __future__ import annotations

import os
from typing import Any

from quantumrng.config import Settings
from quantumrng.errors import ConfigError, SourceError
from quantumrng.sources._common import NOMINAL_ENTROPY, stamp
from quantumrng.sources.base import Harvest

__all__ = ["OSSource"]

BACKEND = "getrandom"


class OSSource:
    """Read ``os_read_bytes`` bytes from ``os.urandom`` per harvest."""

    kind = "os"

    def __init__(self, settings: Settings) -> None:
        if settings.os_read_bytes < 1:
            raise ConfigError("os_read_bytes must be positive")
        self.read_bytes = settings.os_read_bytes

    def __repr__(self) -> str:
        return f"OSSource(read_bytes={self.read_bytes})"

    def info(self) -> dict[str, Any]:
        """Return what status pages show about this source."""
        return {
            "kind": self.kind,
            "backend": BACKEND,
            "read_bytes": self.read_bytes,
            "assessed_entropy": NOMINAL_ENTROPY,
            "creditable": False,
        }

    def harvest(self) -> Harvest:
        """Return ``read_bytes`` kernel random bytes as 8-bit rows, earning no credit."""
        try:
            data = os.urandom(self.read_bytes)
        except OSError as exc:
            raise SourceError(f"the kernel RNG failed: {exc.strerror or 'error'}") from None
        return Harvest(
            data=data,
            width=8,
            samples=len(data),
            provenance=stamp(self.kind, backend=BACKEND),
            assessed_entropy=NOMINAL_ENTROPY,
            creditable=False,
        )
