"""Per-thread SQLite connections that survive threads ending and processes forking.

SQLite forbids carrying a connection across ``fork``, and a connection must
not be used by two threads at once. :class:`ThreadConnections` gives each
thread of each process its own connection:

- **Threads.** One connection per thread (``threading.local``), opened on the
  thread's first :meth:`~ThreadConnections.get`. Opening one closes those of
  threads that ended, so a server's short-lived worker threads leave no
  connections behind.
- **Forks.** A connection inherited through ``fork`` is never used *or
  closed* in the child: closing one could checkpoint the WAL from a stale
  view, under the parent's feet. The at-fork hook (:mod:`quantumrng.forksafe`)
  parks every inherited connection in :data:`_INHERITED`, referenced for the
  child's life (a dropped reference would close it too); the child opens its
  own on first use. A connection is also re-opened when ``os.getpid()``
  changed, should a fork bypass the hook.

Connections are opened by :func:`connect` (autocommit, usable by the thread
that closes them) plus whatever PRAGMAs each store sets; :func:`open_private`
also creates the file owner-only and in WAL mode.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from quantumrng import forksafe
from quantumrng.errors import ConfigError, Unavailable

__all__ = ["ThreadConnections", "connect", "open_private"]

#: Connections inherited through fork: kept referenced, never closed (see module doc).
_INHERITED: list[sqlite3.Connection] = []


def connect(path: Path, *, timeout: float) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode, waiting up to ``timeout`` s for another writer.

    ``check_same_thread`` is off because :meth:`ThreadConnections.close` closes
    every thread's connection from one thread; nothing else crosses threads.
    """
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    except BaseException:
        conn.close()
        raise
    return conn


@dataclass(slots=True)
class _Opened:
    pid: int
    thread: weakref.ref[threading.Thread]
    conn: sqlite3.Connection


class ThreadConnections:
    """One SQLite connection per thread and process, made by ``connect`` on first use."""

    def __init__(self, path: Path, connect: Callable[[], sqlite3.Connection]) -> None:
        self.path = Path(path)
        self._connect = connect
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[_Opened] = []
        forksafe.register(self)

    def __repr__(self) -> str:
        return f"ThreadConnections({str(self.path)!r}, {len(self)} open)"

    def __len__(self) -> int:
        """The connections this process opened and has not closed yet."""
        return len(self._opened)

    def get(self) -> sqlite3.Connection:
        """Return this thread's connection, opening one in a new thread or process."""
        pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == pid:
            return conn
        conn = self._connect()
        with self._lock:
            self._prune(pid)
            self._opened.append(_Opened(pid, weakref.ref(threading.current_thread()), conn))
        self._local.conn, self._local.pid = conn, pid
        return conn

    def _prune(self, pid: int) -> None:
        """Park connections of another process; close those of threads that ended."""
        keep: list[_Opened] = []
        for entry in self._opened:
            thread = entry.thread()
            if entry.pid != pid:
                _INHERITED.append(entry.conn)
            elif thread is None or not thread.is_alive():
                entry.conn.close()
            else:
                keep.append(entry)
        self._opened = keep

    def close(self) -> None:
        """Close this process's connections; a later :meth:`get` opens a new one.

        Call it when no other thread is using a connection.
        """
        pid = os.getpid()
        with self._lock:
            for entry in self._opened:
                if entry.pid == pid:
                    entry.conn.close()
                else:
                    _INHERITED.append(entry.conn)
            self._opened = []
        self._local = threading.local()

    def after_fork_in_child(self) -> None:
        """Park every inherited connection; a parent thread may have held the lock."""
        self._lock = threading.Lock()
        _INHERITED.extend(entry.conn for entry in self._opened)
        self._opened = []
        self._local = threading.local()


def open_private(
    path: Path, schema: str, *, what: str, pragmas: Sequence[str], timeout: float
) -> ThreadConnections:
    """Create ``path`` (mode 0600, its directory 0700) in WAL mode with ``schema``.

    Every connection runs ``PRAGMA <p>`` for each of ``pragmas``. Raises
    ``ConfigError`` (the file cannot be made) or ``Unavailable`` (SQLite
    cannot read it), as "cannot open <what> <path>: ...".
    """
    path = Path(path)

    def opened() -> sqlite3.Connection:
        conn = connect(path, timeout=timeout)
        try:
            for pragma in pragmas:
                conn.execute(f"PRAGMA {pragma}")
        except BaseException:
            conn.close()
            raise
        return conn

    connections = ThreadConnections(path, opened)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        conn = connections.get()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(schema)
    except OSError as exc:
        connections.close()
        raise ConfigError(f"cannot open {what} {path}: {exc}") from None
    except sqlite3.Error as exc:
        connections.close()
        raise Unavailable(f"cannot open {what} {path}: {exc}") from None
    return connections
