"""Output read ahead and handed out once: bytes are zeroed as they leave the buffer.

The engine's per-thread DRBG buffer, the raw-mode reader of the server and
the client's ``RemoteRandom`` all hold random bytes before anyone asked for
them. Each byte is served once, front to back, and overwritten with zero as
it is served, so no copy of output already given away stays in the buffer;
``clear`` zeroes the rest (stale output, a closed reader, a forked child).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ZeroingBuffer"]

_ZEROS: Final = memoryview(bytes(1 << 20))


def _zero(view: memoryview) -> None:
    """Overwrite ``view`` with zeros, without allocating for the common sizes."""
    n = len(view)
    if n <= len(_ZEROS):
        view[:] = _ZEROS[:n]
    else:
        view[:] = bytes(n)


class ZeroingBuffer:
    """Random bytes served once, front to back, each zeroed as it is handed out.

    ``view`` and ``pos`` are public for hot paths that inline :meth:`take`
    (the engine's small reads): bytes before ``pos`` are spent (zero), bytes
    from ``pos`` on are unread. Not thread-safe: one per thread or a lock.
    """

    __slots__ = ("__weakref__", "pos", "view")

    def __init__(self, size: int = 0) -> None:
        self.view = memoryview(bytearray(size))
        self.pos = size  # empty until filled

    @property
    def left(self) -> int:
        """Bytes not yet handed out."""
        return len(self.view) - self.pos

    def take(self, n: int) -> bytes:
        """Return the next ``min(n, left)`` bytes and zero them in the buffer."""
        start = self.pos
        end = min(len(self.view), start + max(n, 0))
        out = self.view[start:end].tobytes()
        _zero(self.view[start:end])
        self.pos = end
        return out

    def load(self, data: bytes | bytearray) -> None:
        """Replace the contents with ``data`` (what was left is zeroed first)."""
        self.clear()
        self.view = memoryview(bytearray(data))
        self.pos = 0

    def clear(self) -> None:
        """Zero whatever is left and mark the buffer empty."""
        _zero(self.view[self.pos :])
        self.pos = len(self.view)

    def __del__(self) -> None:  # the owner is gone: leave no output behind
        self.clear()

    def __repr__(self) -> str:  # never show the bytes
        return f"{type(self).__name__}(size={len(self.view)}, left={self.left})"
