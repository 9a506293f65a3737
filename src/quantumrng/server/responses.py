"""JSON responses: one fast renderer (orjson) and the headers randomness needs.

Every response that carries randomness is ``Cache-Control: no-store`` so no
proxy or browser cache ever hands the same bytes to a second reader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.responses import Response

__all__ = [
    "NO_STORE",
    "JSONResponse",
    "RandomJSONResponse",
    "go_http_error",
    "json_response",
    "random_response",
]

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


def go_http_error(text: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
    """An error as Go's ``net/http`` ``http.Error`` writes it (the servers drand and
    pollen run on): the text and a newline, ``text/plain; charset=utf-8``, nosniff."""
    out = {"x-content-type-options": "nosniff", **(headers or {})}
    return Response(text + "\n", status, out, media_type="text/plain; charset=utf-8")


class RandomJSONResponse(JSONResponse):
    """A 200 JSON answer carrying randomness, its headers encoded without Starlette's
    general-purpose header merging (this is every randomness route's hot path)."""

    def __init__(
        self,
        content: Any,
        headers: Mapping[str, str] | None = None,
        raw_headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.status_code = 200
        self.background = None
        self.body = orjson.dumps(content)
        raw = [
            (b"content-length", str(len(self.body)).encode("latin-1")),
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
        ]
        if headers:
            raw.extend(
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in headers.items()
                if k.lower() != "cache-control"
            )
        raw.extend(raw_headers)
        self.raw_headers = raw


def random_response(
    content: Any,
    headers: Mapping[str, str] | None = None,
    raw_headers: Sequence[tuple[bytes, bytes]] = (),
) -> Response:
    """Return JSON that carries randomness: never cached. ``raw_headers`` are
    already encoded (lower-case names), for headers that repeat on every answer."""
    return RandomJSONResponse(content, headers, raw_headers)
