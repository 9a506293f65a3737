"""The public beacon in the NIST Randomness Beacon 2.0 format, over HTTP.

BEING BUILT: the routes of this family are added by the beacon work.
"""

from __future__ import annotations

from quantumrng.server.routing import Api
from quantumrng.server.service import Context

__all__ = ["api"]


def api(ctx: Context) -> Api:
    """The family's routes, below ``/beacon/2.0``."""
    return Api("/beacon/2.0", ())
