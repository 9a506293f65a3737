"""One at-fork hook for every object a forked child must reset.

A child process inherits its parent's memory: DRBG states (it would repeat
the parent's output), buffered output, locks that a parent thread held, and
open SQLite connections (SQLite forbids using one across ``fork``). Objects
that hold such state call :func:`register` and implement
``after_fork_in_child``; one ``os.register_at_fork`` hook calls them all in
the child, where only the forking thread survives.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "register"]


class ForkAware(Protocol):
    """An object that resets itself in a forked child."""

    def after_fork_in_child(self) -> None:
        """Drop or replace state the child must not share with the parent."""
        ...


_LIVE: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(obj: ForkAware) -> None:
    """Call ``obj.after_fork_in_child()`` in every child forked while ``obj`` lives."""
    _LIVE.add(obj)


def _in_child() -> None:
    for obj in list(_LIVE):
        obj.after_fork_in_child()


os.register_at_fork(after_in_child=_in_child)
