"""Daily byte counters per principal: what makes a daily quota hold across workers.

The counters live in the key store's SQLite file (``settings.keys_path``),
in the ``usage`` table that :class:`~quantumrng.server.keys.KeyStore` kept
before them, with the same schema, so existing deployments keep today's
counts. Keys and counters are separate stores all the same: each can move
(to Redis, for scale-out) without the other.

A count is one atomic ``INSERT ... ON CONFLICT DO UPDATE ... WHERE bytes + n
<= limit``, so a quota holds across ``--workers N`` processes. Rows of past
days are deleted on the first count of a new day. The file is mode 0600 and
in WAL mode; each thread of each process has its own connection. A damaged
or unreadable file raises ``Unavailable`` (503) naming the file, as "the
usage counters in the key store <path>": the file operators know.
"""

from __future__ import annotations

from pathlib import Path

from quantumrng.storage.errors import translate_errors
from quantumrng.storage.sqlite import open_private

__all__ = ["UsageStore"]

BUSY_TIMEOUT = 10.0  # seconds to wait for another process's write lock
#: A power loss may lose the last counts (a few bytes served uncounted), never the file.
_PRAGMAS = ("synchronous=NORMAL",)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    principal TEXT NOT NULL,
    day TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (principal, day)
) WITHOUT ROWID;
"""


class UsageStore:
    """Bytes served per principal and UTC day (``YYYY-MM-DD``), in a SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        what = "the usage counters in the key store"
        self._connections = open_private(
            self.path, _SCHEMA, what=what, pragmas=_PRAGMAS, timeout=BUSY_TIMEOUT
        )
        self._store = f"{what} {self.path}"
        self._cleaned_day: str | None = None

    def __repr__(self) -> str:
        return f"UsageStore({str(self.path)!r})"

    def consume(self, principal: str, day: str, nbytes: int, limit: int) -> int | None:
        """Count ``nbytes`` for ``principal`` on ``day`` if the total stays <= ``limit``.

        Returns the new total, or None (and counts nothing) when it would
        exceed ``limit``. One SQL statement: atomic across processes.
        """
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        if nbytes > limit:
            return None
        with translate_errors(self._store):
            conn = self._connections.get()
            if self._cleaned_day != day:
                conn.execute("DELETE FROM usage WHERE day < ?", (day,))
                self._cleaned_day = day
            rows = conn.execute(
                "INSERT INTO usage (principal, day, bytes) VALUES (?, ?, ?) "
                "ON CONFLICT (principal, day) DO UPDATE SET bytes = bytes + excluded.bytes "
                "WHERE usage.bytes + excluded.bytes <= ? RETURNING bytes",
                (principal, day, nbytes, limit),
            ).fetchall()
        return int(rows[0][0]) if rows else None

    def refund(self, principal: str, day: str, nbytes: int) -> None:
        """Give back ``nbytes`` counted by :meth:`consume` for a request that served nothing."""
        if nbytes < 0:
            raise ValueError("nbytes must be non-negative")
        with translate_errors(self._store):
            self._connections.get().execute(
                "UPDATE usage SET bytes = MAX(0, bytes - ?) WHERE principal = ? AND day = ?",
                (nbytes, principal, day),
            )

    def used(self, principal: str, day: str) -> int:
        """Return the bytes counted for ``principal`` on ``day``."""
        with translate_errors(self._store):
            row = (
                self._connections.get()
                .execute(
                    "SELECT bytes FROM usage WHERE principal = ? AND day = ?", (principal, day)
                )
                .fetchone()
            )
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        """Close this process's connections; the file stays."""
        self._connections.close()
