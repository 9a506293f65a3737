"""drand's HTTP API v1 and v2 under /drand/ (issue 10; placeholder until its module lands)."""

from __future__ import annotations

from quantumrng.server.routing import Api
from quantumrng.server.service import Context

__all__ = ["PREFIX", "api"]

PREFIX = "/drand"


def api(ctx: Context) -> Api:
    """Return the family's routes over ``ctx``."""
    return Api(PREFIX, ())
