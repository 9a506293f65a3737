"""ANU QRNG's API: the legacy /API/jsonI.php and the current API under /anu/."""

from __future__ import annotations

from quantumrng.server.routing import Api
from quantumrng.server.service import Context

__all__ = ["PREFIX", "api"]

PREFIX = ""


def api(ctx: Context) -> Api:
    """Return the family's routes over ``ctx``."""
    return Api(PREFIX, ())
