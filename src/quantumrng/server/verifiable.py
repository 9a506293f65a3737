"""Signed results, public keys, verification and the transparency log over HTTP (API v2).

BEING BUILT: the routes of this family are added by the signed-answers work.
"""

from __future__ import annotations

from quantumrng.server.routing import Api
from quantumrng.server.service import Context

__all__ = ["api"]


def api(ctx: Context) -> Api:
    """The family's routes, below ``/api/v2``."""
    return Api("/api/v2", ())
