"""RANDOM.ORG's JSON-RPC 2.0 API, Release 4, at /json-rpc/4/invoke."""

from __future__ import annotations

from quantumrng.server.routing import Api
from quantumrng.server.service import Context

__all__ = ["PREFIX", "api"]

PREFIX = ""


def api(ctx: Context) -> Api:
    """Return the family's routes over ``ctx``."""
    return Api(PREFIX, ())
