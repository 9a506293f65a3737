"""The one error handler: every failure becomes ``{"error": {"code", "message"}}``.

Status and code come from the error class (``quantumrng.errors``); Starlette's
own 404/405 and any unexpected exception are rendered in the same shape. A
response never carries a traceback or a secret: unexpected exceptions answer
a fixed message and are logged by the server, not sent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from quantumrng.errors import BY_STATUS, QuantumRNGError
from quantumrng.server.responses import json_response

__all__ = [
    "EXCEPTION_HANDLERS",
    "error_body",
    "error_response",
    "handle_error",
    "refusal_headers",
    "retry_after",
]

log = logging.getLogger(__name__)

_KEPT_HEADERS = ("allow", "www-authenticate")  # from Starlette's HTTPException
DEFAULT_RETRY_AFTER = 5.0  # seconds, for a 429/503 whose error names no better time


def error_body(code: str, message: str) -> dict[str, Any]:
    """Return the JSON body of an error."""
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    retry_after: float | None = None,
) -> Response:
    """Render one error; ``retry_after`` becomes a whole-seconds ``Retry-After``."""
    out = dict(headers or {})
    if retry_after is not None:
        out["retry-after"] = str(max(1, math.ceil(retry_after)))
    return json_response(error_body(code, message), status, out)


def retry_after(exc: QuantumRNGError) -> float | None:
    """The seconds an error's answer names in ``Retry-After``: its own, else
    :data:`DEFAULT_RETRY_AFTER` for a 429 or 503, else none."""
    if exc.retry_after is None and exc.status in (429, 503):
        return DEFAULT_RETRY_AFTER
    return exc.retry_after


def refusal_headers(exc: QuantumRNGError, *, authenticate: bool = False) -> dict[str, str]:
    """The headers a family answering in another service's format (ANU, pollen) keeps
    from one of our errors: ``RateLimit-*``, ``WWW-Authenticate`` when ``authenticate``,
    and ``Retry-After`` as :func:`retry_after` gives it."""
    kept = {
        k: v
        for k, v in (exc.headers or {}).items()
        if k.lower().startswith("ratelimit-") or (authenticate and k.lower() == "www-authenticate")
    }
    seconds = retry_after(exc)
    if seconds is not None:
        kept["retry-after"] = str(max(1, math.ceil(seconds)))
    return kept


def _from_http(exc: HTTPException) -> Response:
    cls = BY_STATUS.get(exc.status_code)
    code = cls.code if cls is not None else f"http_{exc.status_code}"
    message = {404: "no such resource", 405: "method not allowed"}.get(exc.status_code)
    if message is None:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
    kept = {k: v for k, v in (exc.headers or {}).items() if k.lower() in _KEPT_HEADERS}
    return error_response(exc.status_code, code, message, headers=kept)


async def handle_error(request: Request, exc: Exception) -> Response:
    """Render any exception raised while answering ``request``."""
    if isinstance(exc, QuantumRNGError):
        if exc.status >= 500:
            log.warning("%s %s: %s (%s)", request.method, request.url.path, exc.code, exc.message)
        return error_response(
            exc.status, exc.code, exc.message, headers=exc.headers, retry_after=retry_after(exc)
        )
    if isinstance(exc, HTTPException):
        return _from_http(exc)
    return error_response(500, QuantumRNGError.code, "internal server error")


EXCEPTION_HANDLERS: Mapping[Any, Callable[[Request, Exception], Any]] = {
    QuantumRNGError: handle_error,
    HTTPException: handle_error,
    Exception: handle_error,
}
