"""JSON responses: one fast renderer (orjson) and the headers randomness needs.

Every response that carries randomness is ``Cache-Control: no-store`` so no
proxy or browser cache ever hands the same bytes to a second reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["NO_STORE", "JSONResponse", "json_response", "random_response"]

NO_STORE: Mapping[str, str] = {"cache-control": "no-store"}


class JSONResponse(Response):
    """A JSON response rendered by orjson (no spaces, UTF-8)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(
    content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """Return ``content`` as JSON."""
    return JSONResponse(content, status_code, headers)


def random_response(content: Any, headers: Mapping[str, str] | None = None) -> Response:
    """Return JSON that carries randomness: never cached."""
    return JSONResponse(content, 200, {**headers, **NO_STORE} if headers else NO_STORE)
