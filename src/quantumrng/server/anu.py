"""ANU QRNG's two APIs, answered as ANU answers them, so a client changes only its base URL.

- **Legacy** (QRNG@ANU, ``https://qrng.anu.edu.au/API/jsonI.php``), here at
  ``/API/jsonI.php``: no key; ``type`` uint8, uint16 or hex16; ``length`` and
  ``size`` 1-1024. A hex16 element is ``size`` bytes, 2*size hex digits (ANU's
  documentation: ``size=2`` gives blocks "between 0000-ffff"; clients such as
  the R package qrandom rely on it). The answer is PHP's compact JSON
  ``{"type", "length" (an integer), "data", "success": true}``; a hex16 answer
  names its type ``"string"`` and carries ``"size"``, as the service did.
- **Current** (ANU Quantum Numbers, ``https://api.quantumnumbers.anu.edu.au``
  behind AWS API Gateway), here at ``/anu/``: the key in ``x-api-key``;
  ``type`` uint8, uint16, hex8 or hex16; ``length`` 1-1024; ``size`` 1-10, needed
  by the hex types (hex8: blocks of ``size`` bytes; hex16: of ``size`` 16-bit
  words); the answer ``{"success": true, "type", "length" (a string), "data"}``.
  The gateway's refusals are kept: 403 ``{"message": "Forbidden"}`` for a missing,
  invalid or out-of-scope key (checked before the parameters, as the gateway
  does), 429 ``{"message": "Limit Exceeded"}`` over a rate limit or quota.

Both draw through :func:`~quantumrng.server.service.draw` (DRBG mode) and admit
through ``ctx.access``, so keys, scopes, rate limits and quotas count as on
our own routes, and answers are ``Cache-Control: no-store`` with the provenance
in ``X-QRNG-Mode``/``X-QRNG-Source``. They are not ``random_endpoint``s because
their errors are not ours: a bad parameter is a 200 ``{"success": false,
"message"}`` on the legacy API (its refusals were 200 answers) and a 400
``{"success": false, "message"}`` on the current one; other refusals of the
legacy API are its plain-text sentence with our status and ``Retry-After``.
The two APIs are one table, :data:`DIALECTS`; ``/openapi.json`` documents each
with its own refusals (``Endpoint.error_content``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from quantumrng import formats
from quantumrng.errors import (
    AuthenticationError,
    InvalidRequest,
    PayloadTooLarge,
    PermissionDenied,
    QuantumRNGError,
    RateLimited,
    ValidationError,
)
from quantumrng.server.errors import refusal_headers
from quantumrng.server.params import Param
from quantumrng.server.randomness import provenance_headers
from quantumrng.server.responses import json_response, random_response
from quantumrng.server.routing import Api, Endpoint, Handler
from quantumrng.server.service import Context, draw, within

__all__ = ["CURRENT_PATH", "DIALECTS", "LEGACY_PATH", "PREFIX", "DataType", "Dialect", "api"]

PREFIX = ""
LEGACY_PATH = "/API/jsonI.php"
CURRENT_PATH = "/anu/"
MAX_LENGTH = 1024  # elements per answer, both APIs
_MAX_DIGITS = 5  # a number longer than this is out of every range here
_KEY_HEADER = b"x-api-key"
_TAG = "anu"


@dataclass(frozen=True)
class DataType:
    """One ``type`` value: what an element is and how many bytes it reads.

    ``block`` 0: an integer in [0, ``high``], ``size`` unused; otherwise a
    lowercase hex string of ``block`` * ``size`` bytes.
    """

    answered: str  # the "type" the answer names
    block: int = 0
    high: int = 0

    @property
    def sized(self) -> bool:
        """True when ``size`` shapes the elements (the hex types)."""
        return self.block > 0

    def cost(self, length: int, size: int) -> int:
        """Bytes :meth:`produce` reads (``formats`` cost functions)."""
        if not self.sized:
            return formats.integers_cost(length, 0, self.high)
        return formats.bits_cost(8 * length * size * self.block)

    def produce(self, read: formats.RandomBytes, shape: tuple[int, int]) -> list[Any]:
        """Return ``length`` elements from ``read``."""
        length, size = shape
        if not self.sized:
            return formats.integers(read, length, 0, self.high)
        width = 2 * size * self.block
        digits = formats.bits(read, 8 * length * size * self.block).hex()
        return [digits[i : i + width] for i in range(0, len(digits), width)]


UINT8 = DataType("uint8", high=0xFF)
UINT16 = DataType("uint16", high=0xFFFF)


@dataclass(frozen=True)
class Dialect:
    """One of ANU's APIs: its types, limits, answer and refusals."""

    name: str
    paths: tuple[str, ...]
    summary: str
    types: Mapping[str, DataType]
    max_size: int
    size_required: bool  # a hex type without ``size``: refused (current) or size 1 (legacy)
    keyed: bool  # the key must come in x-api-key and is checked before the parameters
    body: Callable[[DataType, int, int, list[Any]], dict[str, Any]]
    refused: Callable[[QuantumRNGError], Response]
    errors: tuple[int, ...]
    error_content: Mapping[str, Mapping[str, Any]]


def _legacy_body(t: DataType, length: int, size: int, data: list[Any]) -> dict[str, Any]:
    if t.sized:
        return {"type": t.answered, "length": length, "size": size, "data": data, "success": True}
    return {"type": t.answered, "length": length, "data": data, "success": True}


def _current_body(t: DataType, length: int, size: int, data: list[Any]) -> dict[str, Any]:
    return {"success": True, "type": t.answered, "length": str(length), "data": data}


def _legacy_refused(exc: QuantumRNGError) -> Response:
    """A bad parameter: 200 ``{"success": false}``; anything else: a sentence, our status."""
    if isinstance(exc, (ValidationError, InvalidRequest)):
        return json_response({"success": False, "message": exc.message})
    return PlainTextResponse(exc.message, exc.status, refusal_headers(exc, authenticate=True))


def _current_refused(exc: QuantumRNGError) -> Response:
    """API Gateway's answers for keys and limits; the service's for bad parameters."""
    if isinstance(exc, (ValidationError, InvalidRequest)):
        return json_response({"success": False, "message": exc.message}, 400)
    if isinstance(exc, (AuthenticationError, PermissionDenied)):
        return json_response({"message": "Forbidden"}, 403)
    if isinstance(exc, (RateLimited, PayloadTooLarge)):
        return json_response({"message": "Limit Exceeded"}, 429, refusal_headers(exc))
    return json_response({"message": exc.message}, exc.status, refusal_headers(exc))


_REFUSAL = {
    "type": "object",
    "required": ["success", "message"],
    "properties": {"success": {"const": False}, "message": {"type": "string"}},
}
_GATEWAY = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string"}},
}

#: ANU's two APIs: everything that differs between them.
DIALECTS: tuple[Dialect, ...] = (
    Dialect(
        name="legacy",
        paths=(LEGACY_PATH,),
        summary="QRNG@ANU's legacy JSON API (qrng.anu.edu.au/API/jsonI.php).",
        types={"uint8": UINT8, "uint16": UINT16, "hex16": DataType("string", block=1)},
        max_size=1024,
        size_required=False,
        keyed=False,
        body=_legacy_body,
        refused=_legacy_refused,
        errors=(401, 403, 413, 429, 503),
        error_content={"text/plain; charset=utf-8": {"type": "string"}},
    ),
    Dialect(
        name="current",
        paths=(CURRENT_PATH, CURRENT_PATH.rstrip("/")),
        summary="ANU Quantum Numbers' API (api.quantumnumbers.anu.edu.au): key in x-api-key.",
        types={
            "uint8": UINT8,
            "uint16": UINT16,
            "hex8": DataType("hex8", block=1),
            "hex16": DataType("hex16", block=2),
        },
        max_size=10,
        size_required=True,
        keyed=True,
        body=_current_body,
        refused=_current_refused,
        errors=(400, 403, 429, 503),
        error_content={"application/json": {"anyOf": [_REFUSAL, _GATEWAY]}},
    ),
)


def _number(query: QueryParams, name: str) -> int | None:
    """The decimal integer ``name`` (the last one given, as PHP and API Gateway take it),
    or None when it is missing or not one."""
    text = query.get(name)
    if text is None or not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
        return None
    return int(text)


def parse(dialect: Dialect, query: QueryParams) -> tuple[DataType, int, int]:
    """Return the type, length and size a query asks for, or raise ``ValidationError``
    with the original's rule as the message."""
    names = ", ".join(f"'{name}'" for name in dialect.types)
    dtype = dialect.types.get(query.get("type") or "")
    if dtype is None:
        raise ValidationError(f"the data type must be one of {names}")
    length = _number(query, "length")
    if length is None or not 1 <= length <= MAX_LENGTH:
        raise ValidationError(f"the array length must be between 1 and {MAX_LENGTH}")
    if not dtype.sized:
        return dtype, length, 1
    size = _number(query, "size")
    if size is None and "size" not in query and not dialect.size_required:
        size = 1
    if size is None or not 1 <= size <= dialect.max_size:
        raise ValidationError(f"the block size must be between 1 and {dialect.max_size}")
    return dtype, length, size


def _has_api_key_header(request: Request) -> bool:
    return any(name == _KEY_HEADER for name, _ in request.scope.get("headers", ()))


def _handler(ctx: Context, dialect: Dialect) -> Handler:
    access, max_json = ctx.access, ctx.settings.max_json_bytes

    async def answer(request: Request) -> Response:
        if dialect.keyed:
            if not _has_api_key_header(request):
                raise AuthenticationError("no x-api-key header")
            access.authorize(request, "drbg")  # cached for the admission below
        dtype, length, size = parse(dialect, request.query_params)
        nbytes = within(dtype.cost(length, size), max_json)
        async with access.admitted(request, scope="drbg", nbytes=nbytes) as admission:
            data, source = await draw(ctx, "drbg", nbytes, dtype.produce, (length, size))
        body = dialect.body(dtype, length, size, data)
        return random_response(body, admission.headers, provenance_headers("drbg", source["kind"]))

    async def endpoint(request: Request) -> Response:
        try:
            return await answer(request)
        except QuantumRNGError as exc:
            return dialect.refused(exc)

    return endpoint


def _params(dialect: Dialect) -> tuple[Param, ...]:
    needed = "needed by" if dialect.size_required else "used by"
    hex_types = ", ".join(name for name, t in dialect.types.items() if t.sized)
    return (
        Param("length", "int", "Number of elements.", required=True, minimum=1, maximum=MAX_LENGTH),
        Param("type", "enum", "Element type.", required=True, choices=tuple(dialect.types)),
        Param(
            "size",
            "int",
            f"Block size, {needed} {hex_types}: bytes per element"
            + (" (hex16: 16-bit words)." if dialect.keyed else "."),
            minimum=1,
            maximum=dialect.max_size,
        ),
    )


def _answer_schema(dialect: Dialect) -> dict[str, Any]:
    """A 200 answer; the legacy API's bad-parameter refusals are 200s too."""
    return {"anyOf": [_schema(), _REFUSAL]} if not dialect.keyed else _schema()


def _schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "length", "data", "success"],
        "properties": {
            "type": {"type": "string"},
            "length": {"type": ["integer", "string"]},
            "size": {"type": "integer"},
            "data": {"type": "array", "items": {"type": ["integer", "string"]}},
            "success": {"type": "boolean"},
        },
    }


def api(ctx: Context) -> Api:
    """Return ANU's two APIs over ``ctx``."""
    endpoints = []
    for dialect in DIALECTS:
        handler = _handler(ctx, dialect)
        for i, path in enumerate(dialect.paths):
            endpoints.append(
                Endpoint(
                    path,
                    handler,
                    f"{_TAG}_{dialect.name}" + ("" if i == 0 else f"_{i}"),
                    dialect.summary,
                    _TAG,
                    params=_params(dialect),
                    content={"application/json": _answer_schema(dialect)},
                    errors=dialect.errors,
                    error_content=dialect.error_content,
                    secured=True,
                    key_required=dialect.keyed or ctx.access.auth_required,
                    head=False,
                )
            )
    return Api(PREFIX, tuple(endpoints))
