"""API v2: formats, bulk byte streams, provenance and raw quantum mode.

Every format route is made by one factory from a :class:`Format`: its
parameters, a ``check`` that validates them together and returns the bytes
of randomness they need (for limits and quotas), and a pure ``produce`` from
``quantumrng.formats``. The answer is ``{"data", "mode", "source"}``.
Integers whose range leaves JavaScript's safe range (±(2^53-1)) are strings.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from quantumrng import formats
from quantumrng.errors import PayloadTooLarge, ValidationError
from quantumrng.formats import RandomBytes
from quantumrng.server.openapi import RANDOM_ERRORS, Endpoint, envelope
from quantumrng.server.params import MAX_INT_DIGITS, Param, parse_query
from quantumrng.server.responses import NO_STORE, json_response, random_response
from quantumrng.server.service import MODES, Context, draw, raw_limit, within

__all__ = ["STREAM_CHUNK", "Format", "endpoints"]

STREAM_CHUNK = 1 << 20  # bytes per DRBG call and per body message of a raw stream
MAX_SAFE_INTEGER = 2**53 - 1  # largest integer a JavaScript number holds exactly
MAX_ALPHABET = 1024  # characters of a custom alphabet

Args = dict[str, Any]


def _mode(ctx: Context) -> Param:
    """The ``mode`` parameter, documenting this server's raw limit."""
    return Param(
        "mode",
        "enum",
        "`drbg`: the CTR_DRBG seeded from the pool (unlimited). "
        "`raw`: conditioned pool entropy itself (rationed; 503 when the pool is dry, "
        f"413 beyond the pool's high-water mark of {raw_limit(ctx.settings)} bytes).",
        default="drbg",
        choices=MODES,
    )


@dataclass(frozen=True)
class Format:
    """A v2 format route: parameters, their joint check, and the value they produce."""

    name: str
    summary: str
    params: tuple[Param, ...]
    check: Callable[[Args], int]  # validates; returns bytes of randomness needed
    produce: Callable[[RandomBytes, Args], Any]
    data: Mapping[str, Any]  # JSON Schema of ``data``


def _bits_for(span: int) -> int:
    """Bits one uniform draw on [0, span] reads (at least whole bytes beyond 64 bits)."""
    k = span.bit_length()
    return k if k <= 64 else 8 * ((k + 7) // 8)


def _safe(values: list[int], lo: int, hi: int) -> list[int] | list[str]:
    if lo >= -MAX_SAFE_INTEGER and hi <= MAX_SAFE_INTEGER:
        return values
    return [str(v) for v in values]


def _span(args: Args) -> int:
    lo: int = args["min"]
    hi: int = args["max"]
    if lo > hi:
        raise ValidationError("min must not exceed max")
    return hi - lo


def _count(ctx: Context) -> Param:
    return Param(
        "n",
        "int",
        "How many values.",
        default=1,
        minimum=1,
        maximum=ctx.settings.max_items,
        too_large=True,
    )


def _bound(name: str, description: str) -> Param:
    return Param(
        name, "bigint", description + f" Any size up to {MAX_INT_DIGITS} digits.", required=True
    )


def _formats(ctx: Context) -> list[Format]:
    s = ctx.settings
    count = _count(ctx)
    max_items = s.max_items
    int_or_str = {"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^-?[0-9]+$"}]}

    def integers_check(a: Args) -> int:
        n: int = a["n"]
        return -(-n * _bits_for(_span(a)) // 8)

    def shuffle_check(a: Args) -> int:
        span = _span(a)
        if span >= max_items:
            raise PayloadTooLarge(f"a shuffle holds at most {max_items} integers")
        return -(-span * _bits_for(span) // 8)

    def strings_check(a: Args) -> int:
        alphabet: str = formats.resolve_alphabet(a["alphabet"])
        a["alphabet"] = alphabet
        chars: int = a["n"] * a["length"]
        if chars > s.max_json_bytes:
            raise PayloadTooLarge(f"n * length must be at most {s.max_json_bytes} characters")
        return -(-chars * _bits_for(len(alphabet) - 1) // 8)

    def bits_produce(read: RandomBytes, a: Args) -> str:
        if a["format"] == "string":
            return formats.bits_string(read, a["n"])
        data = formats.bits(read, a["n"])
        return data.hex() if a["format"] == "hex" else b64encode(data).decode("ascii")

    return [
        Format(
            "bits",
            "Exactly n random bits, as a 0/1 string, hex or base64 (top bits zero).",
            (
                Param(
                    "n",
                    "int",
                    "Number of bits.",
                    default=512,
                    minimum=1,
                    maximum=8 * s.max_json_bytes,
                    too_large=True,
                ),
                Param(
                    "format",
                    "enum",
                    "Encoding of the bits.",
                    default="string",
                    choices=("string", "hex", "base64"),
                ),
            ),
            lambda a: (a["n"] + 7) // 8,
            bits_produce,
            {"type": "string"},
        ),
        Format(
            "integers",
            "n uniform integers in [min, max], unbiased; all strings when a bound is beyond "
            "±(2^53-1), so JavaScript loses no digit.",
            (count, _bound("min", "Smallest value."), _bound("max", "Largest value.")),
            integers_check,
            lambda read, a: _safe(
                formats.integers(read, a["n"], a["min"], a["max"]), a["min"], a["max"]
            ),
            {"type": "array", "items": int_or_str},
        ),
        Format(
            "floats",
            "n uniform floats k/2^53 in [0, 1).",
            (count,),
            lambda a: -(-a["n"] * 53 // 8),
            lambda read, a: formats.floats(read, a["n"]),
            {"type": "array", "items": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}},
        ),
        Format(
            "gaussians",
            "n normally distributed floats (Box-Muller).",
            (
                count,
                Param("mean", "float", "Mean.", default=0.0),
                Param("stddev", "float", "Standard deviation.", default=1.0, minimum=0),
            ),
            lambda a: -(-(a["n"] + 1) // 2 * 2 * 53 // 8),
            lambda read, a: formats.gaussians(read, a["n"], a["mean"], a["stddev"]),
            {"type": "array", "items": {"type": "number"}},
        ),
        Format(
            "uuids",
            "n random version 4 UUIDs (RFC 9562).",
            (count,),
            lambda a: 16 * a["n"],
            lambda read, a: formats.uuid4s(read, a["n"]),
            {"type": "array", "items": {"type": "string", "format": "uuid"}},
        ),
        Format(
            "strings",
            "n random strings of `length` characters over an alphabet.",
            (
                count,
                Param(
                    "length",
                    "int",
                    "Characters per string.",
                    default=16,
                    minimum=1,
                    maximum=s.max_json_bytes,
                    too_large=True,
                ),
                Param(
                    "alphabet",
                    "str",
                    "A named alphabet (" + ", ".join(formats.ALPHABETS) + ") or the "
                    "characters themselves, each once.",
                    default="alnum",
                    max_length=MAX_ALPHABET,
                ),
            ),
            strings_check,
            lambda read, a: formats.strings(read, a["n"], a["length"], a["alphabet"]),
            {"type": "array", "items": {"type": "string"}},
        ),
        Format(
            "shuffle",
            "Every integer of [min, max] once, in random order (Fisher-Yates); strings "
            "beyond ±(2^53-1).",
            (_bound("min", "Smallest value."), _bound("max", "Largest value.")),
            shuffle_check,
            lambda read, a: _safe(
                formats.permutation(read, a["min"], a["max"]), a["min"], a["max"]
            ),
            {"type": "array", "items": int_or_str},
        ),
    ]


def format_endpoint(ctx: Context, fmt: Format) -> Endpoint:
    """Return the route ``/api/v2/<name>`` serving ``fmt``."""
    params = (*fmt.params, _mode(ctx))
    access, limit = ctx.access, ctx.settings.max_json_bytes

    async def endpoint(request: Request) -> Response:
        args = parse_query(request.query_params, params)
        nbytes = within(fmt.check(args), limit)
        async with access.admitted(request, scope=args["mode"], nbytes=nbytes) as admission:
            data, source = await draw(
                ctx, args["mode"], nbytes, lambda read: fmt.produce(read, args)
            )
        return random_response(
            {"data": data, "mode": args["mode"], "source": source}, admission.headers
        )

    return Endpoint(
        f"/api/v2/{fmt.name}",
        endpoint,
        f"v2_{fmt.name}",
        fmt.summary,
        "v2",
        params=params,
        content={"application/json": envelope(fmt.data)},
        errors=RANDOM_ERRORS,
        secured=True,
    )


def _encode(data: bytes, fmt: str) -> str:
    return data.hex() if fmt == "hex" else b64encode(data).decode("ascii")


def bytes_endpoint(ctx: Context) -> Endpoint:
    """Return ``/api/v2/bytes``: JSON for small answers, a constant-memory stream for raw."""
    s = ctx.settings
    params = (
        Param(
            "n",
            "int",
            "Number of bytes.",
            default=32,
            minimum=1,
            maximum=s.max_bytes,
            too_large=True,
        ),
        Param(
            "format",
            "enum",
            "`base64` or `hex` inside JSON (up to max_json_bytes), or `raw`: the bytes "
            "themselves as application/octet-stream, streamed in DRBG mode.",
            default="base64",
            choices=("base64", "hex", "raw"),
        ),
        _mode(ctx),
    )

    async def endpoint(request: Request) -> Response:
        a = parse_query(request.query_params, params)
        n, fmt, mode = a["n"], a["format"], a["mode"]
        streamed = fmt == "raw" and mode == "drbg"
        within(n, s.max_bytes if streamed else s.max_json_bytes)
        async with ctx.access.admitted(request, scope=mode, nbytes=n) as admission:
            if streamed:
                return await _stream(ctx, n, admission.headers)
            data, source = await draw(ctx, mode, n, lambda read: read(n))
        if fmt == "raw":
            return _octets(data, mode, source["kind"], admission.headers)
        return random_response(
            {"data": _encode(data, fmt), "mode": mode, "source": source}, admission.headers
        )

    b = {"type": "string"}
    return Endpoint(
        "/api/v2/bytes",
        endpoint,
        "v2_bytes",
        "n random bytes: base64, hex or a raw stream.",
        "v2",
        params=params,
        content={"application/json": envelope(b), "application/octet-stream": {}},
        errors=RANDOM_ERRORS,
        secured=True,
        description="Raw answers carry the mode and source kind in `X-QRNG-Mode` and "
        "`X-QRNG-Source`.",
    )


def _octets(data: bytes, mode: str, kind: str, headers: Mapping[str, str]) -> Response:
    return Response(
        data,
        media_type="application/octet-stream",
        headers={**headers, **NO_STORE, "x-qrng-mode": mode, "x-qrng-source": kind},
    )


async def _stream(ctx: Context, n: int, headers: Mapping[str, str]) -> Response:
    """Stream ``n`` DRBG bytes; the first chunk is drawn before the headers go out."""
    engine = ctx.engine

    def chunk(size: int) -> memoryview:
        buf = bytearray(size)
        engine.random_into(buf)
        return memoryview(buf)

    first = await to_thread.run_sync(chunk, min(STREAM_CHUNK, n))
    kind = ctx.drbg_source()["kind"]

    async def body() -> AsyncIterator[memoryview]:
        yield first
        left = n - len(first)
        while left > 0:
            size = min(STREAM_CHUNK, left)
            yield await to_thread.run_sync(chunk, size)
            ctx.metrics.served("drbg", size)
            left -= size

    ctx.metrics.served("drbg", len(first))
    return StreamingResponse(
        body(),
        media_type="application/octet-stream",
        headers={
            **headers,
            **NO_STORE,
            "content-length": str(n),
            "x-qrng-mode": "drbg",
            "x-qrng-source": kind,
        },
    )


def usage_endpoint(ctx: Context) -> Endpoint:
    """Return ``/api/v2/usage``: the caller's limits and what is left today."""

    async def usage(request: Request) -> Response:
        parse_query(request.query_params, ())
        return json_response(await ctx.access.usage(request), headers=NO_STORE)

    return Endpoint(
        "/api/v2/usage",
        usage,
        "v2_usage",
        "Your rate limit and daily byte quota, and what is left.",
        "v2",
        content={"application/json": {"type": "object", "required": ["principal"]}},
        errors=(400, 401),
        secured=True,
    )


def endpoints(ctx: Context) -> list[Endpoint]:
    """Return the v2 routes over ``ctx``."""
    return [
        bytes_endpoint(ctx),
        *(format_endpoint(ctx, fmt) for fmt in _formats(ctx)),
        usage_endpoint(ctx),
    ]
