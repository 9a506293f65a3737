"""The operator's dashboard at ``/`` (being built for issue 13)."""

from __future__ import annotations

from quantumrng.server.routing import Api
from quantumrng.server.service import Context

__all__ = ["api"]


def api(ctx: Context) -> Api:
    """Return the dashboard's routes over ``ctx``."""
    return Api("", ())
