"""The one error shape: status from the error class, Retry-After, no traceback or secret."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request

from quantumrng import errors
from quantumrng.server.errors import handle_error
from tests.server.support import assert_error, serve_memory

ERROR_CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.QuantumRNGError)
]


def _request() -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""}
    )


def _render(exc: Exception) -> tuple[int, dict[str, str], bytes]:
    response = asyncio.run(handle_error(_request(), exc))
    return response.status_code, dict(response.headers), bytes(response.body)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_class_renders_its_status_and_code(cls: type[errors.QuantumRNGError]) -> None:
    status, headers, body = _render(cls("what went wrong"))
    assert status == cls.status
    assert body == b'{"error":{"code":"' + cls.code.encode() + b'","message":"what went wrong"}}'
    assert ("retry-after" in headers) == (cls.status in (429, 503))


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    _, headers, _ = _render(errors.RateLimited("slow down", retry_after=2.1))
    assert headers["retry-after"] == "3"
    _, headers, _ = _render(errors.EntropyUnavailable("dry", retry_after=0.01))
    assert headers["retry-after"] == "1"


def test_error_headers_pass_through() -> None:
    exc = errors.AuthenticationError("key please", headers={"WWW-Authenticate": "Bearer"})
    _, headers, _ = _render(exc)
    assert headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("status", "code"),
    [(404, "not_found"), (405, "method_not_allowed"), (400, "invalid_request"), (418, "http_418")],
)
def test_starlette_http_errors_get_the_same_shape(status: int, code: str) -> None:
    got, _, body = _render(HTTPException(status))
    assert got == status
    assert code.encode() in body


def test_unexpected_exception_is_a_bare_500(tmp_path: Path) -> None:
    served = serve_memory(tmp_path)

    async def boom(request: Request) -> None:
        raise RuntimeError("token=hunter2 in a bug")

    served.app.add_route("/boom", boom)
    r = served.client.get("/boom")
    err = assert_error(r, 500, "internal_error")
    assert err["message"] == "internal server error"
    assert "hunter2" not in r.text and "Traceback" not in r.text


def test_routing_errors_are_json(tmp_path: Path) -> None:
    c = serve_memory(tmp_path).client
    assert_error(c.get("/api/v3/bytes"), 404, "not_found")
    r = c.post("/api/v1/qrng/get_bits")
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"]
    assert_error(c.delete("/api/v2/integers?min=1&max=2"), 405)


def test_an_unseeded_engine_answers_503_not_output(tmp_path: Path) -> None:
    served = serve_memory(tmp_path, blocks=0)
    r = served.client.get("/api/v2/uuids")
    assert_error(r, 503, "not_seeded")
    assert "cache-control" not in r.headers
