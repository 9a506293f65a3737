"""API v2: formats, bulk byte streams, provenance, raw quantum mode, usage and status.

Every randomness route is a :class:`~quantumrng.server.randomness.Format` in
the table below, answered in v2's shape ``{"data", "mode", "source"}`` and
offering both modes (``drbg``, ``raw``). Costs come from ``quantumrng.formats``;
the checks here are only what the API adds (its limits, its messages).
Integers whose range leaves JavaScript's safe range (±(2^53-1)) are strings.
"""

from __future__ import annotations

import os
from base64 import b64encode
from dataclasses import replace
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from quantumrng import __version__, formats
from quantumrng.errors import PayloadTooLarge, ValidationError
from quantumrng.formats import RandomBytes
from quantumrng.server import verifiable
from quantumrng.server.openapi import envelope
from quantumrng.server.params import MAX_INT_DIGITS, Param, parse_query
from quantumrng.server.randomness import Args, Format, Shape, random_endpoint
from quantumrng.server.responses import NO_STORE, json_response
from quantumrng.server.routing import Api, Endpoint
from quantumrng.server.service import MODES, POOL_ANSWER_SECONDS, BoundedRead, Context

__all__ = ["PREFIX", "SHAPE", "api"]

PREFIX = "/api/v2"
MAX_SAFE_INTEGER = 2**53 - 1  # largest integer a JavaScript number holds exactly
MAX_ALPHABET = 1024  # characters of a custom alphabet
BAD_ALPHABET = (
    f"alphabet must name one of {', '.join(formats.ALPHABETS)} "
    "or list its characters, at least one, each once"
)


def _body(value: Any, mode: str, source: dict[str, Any]) -> dict[str, Any]:
    return {"data": value, "mode": mode, "source": source}


#: v2's shape: the value under ``data``, with the mode and the provenance of its entropy;
#: :func:`api` adds the signer of ``signed=true`` (:mod:`quantumrng.server.verifiable`).
SHAPE = Shape(tag="v2", modes=MODES, body=_body, schema=envelope)


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


def _encode(data: bytes, encoding: str) -> str:
    return data.hex() if encoding == "hex" else b64encode(data).decode("ascii")


def _formats(ctx: Context) -> list[Format]:
    s = ctx.settings
    count = _count(ctx)
    max_items = s.max_items
    int_or_str = {"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^-?[0-9]+$"}]}

    def integers_cost(a: Args) -> int:
        _span(a)
        return formats.integers_cost(a["n"], a["min"], a["max"])

    def shuffle_cost(a: Args) -> int:
        if _span(a) >= max_items:
            raise PayloadTooLarge(f"a shuffle holds at most {max_items} integers")
        return formats.permutation_cost(a["min"], a["max"])

    def strings_cost(a: Args) -> int:
        try:
            alphabet: str = formats.resolve_alphabet(a["alphabet"])
        except ValidationError:  # its message quotes the repeated characters
            raise ValidationError(BAD_ALPHABET) from None
        a["alphabet"] = alphabet
        chars: int = a["n"] * a["length"]
        if chars > s.max_json_bytes:
            raise PayloadTooLarge(f"n * length must be at most {s.max_json_bytes} characters")
        return formats.strings_cost(a["n"], a["length"], alphabet)

    def bits_produce(read: RandomBytes, a: Args) -> str:
        if a["format"] == "string":
            return formats.bits_string(read, a["n"])
        return _encode(formats.bits(read, a["n"]), a["format"])

    def bytes_produce(read: RandomBytes, a: Args) -> str | bytes:
        data = read(a["n"])
        return data if a["format"] == "raw" else _encode(data, a["format"])

    return [
        Format(
            "bytes",
            "n random bytes: base64, hex or a raw stream.",
            (
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
            ),
            lambda a: int(a["n"]),
            bytes_produce,
            {"type": "string"},
            description="Raw answers carry the mode and source kind in `X-QRNG-Mode` and "
            "`X-QRNG-Source`.",
            octets=lambda a: bool(a["format"] == "raw"),
        ),
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
            lambda a: formats.bits_cost(a["n"]),
            bits_produce,
            {"type": "string"},
        ),
        Format(
            "integers",
            "n uniform integers in [min, max], unbiased; all strings when a bound is beyond "
            "±(2^53-1), so JavaScript loses no digit.",
            (count, _bound("min", "Smallest value."), _bound("max", "Largest value.")),
            integers_cost,
            lambda read, a: _safe(
                formats.integers(read, a["n"], a["min"], a["max"]), a["min"], a["max"]
            ),
            {"type": "array", "items": int_or_str},
        ),
        Format(
            "floats",
            "n uniform floats k/2^53 in [0, 1).",
            (count,),
            lambda a: formats.floats_cost(a["n"]),
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
            lambda a: formats.gaussians_cost(a["n"]),
            lambda read, a: formats.gaussians(read, a["n"], a["mean"], a["stddev"]),
            {"type": "array", "items": {"type": "number"}},
        ),
        Format(
            "uuids",
            "n random version 4 UUIDs (RFC 9562).",
            (count,),
            lambda a: formats.uuid4s_cost(a["n"]),
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
            strings_cost,
            lambda read, a: formats.strings(read, a["n"], a["length"], a["alphabet"]),
            {"type": "array", "items": {"type": "string"}},
        ),
        Format(
            "shuffle",
            "Every integer of [min, max] once, in random order (Fisher-Yates); strings "
            "beyond ±(2^53-1).",
            (_bound("min", "Smallest value."), _bound("max", "Largest value.")),
            shuffle_cost,
            lambda read, a: _safe(
                formats.permutation(read, a["min"], a["max"]), a["min"], a["max"]
            ),
            {"type": "array", "items": int_or_str},
        ),
    ]


def _usage(ctx: Context) -> Endpoint:
    """``/usage``: the caller's limits and what is left today."""

    async def usage(request: Request) -> Response:
        parse_query(request.query_params, ())
        return json_response(await ctx.access.usage(request), headers=NO_STORE)

    return Endpoint(
        "/usage",
        usage,
        "v2_usage",
        "Your rate limit and daily byte quota, and what is left.",
        "v2",
        content={"application/json": {"type": "object", "required": ["principal"]}},
        errors=(400, 401),
        secured=True,
        key_required=ctx.access.auth_required,
        head=False,
    )


def _status(ctx: Context) -> Endpoint:
    """``/status``: pool levels, harvests, health and reseeds; never a secret.

    Under required auth it needs an ``admin`` key unless ``public_status``
    is set: it shows the server's load, pid and sources to whoever asks.
    """
    tls = ctx.settings.tls_cert is not None
    access = ctx.access
    private = access.private_status

    node_status = BoundedRead(ctx.node.status, "status", POOL_ANSWER_SECONDS)

    async def status(request: Request) -> Response:
        access.authorize_status(request)
        # one read answers every caller waiting on it: add to a copy, not to the shared dict
        data = dict(await to_thread.run_sync(node_status))
        data["server"] = {
            "version": __version__,
            "pid": os.getpid(),
            "workers": ctx.settings.workers,
            "tls": tls,
            "auth_required": ctx.access.auth_required,
        }
        return json_response(data)

    return Endpoint(
        "/status",
        status,
        "v2_status",
        "Pool levels, harvest rate, health-test failures, per-qubit bias, reseeds.",
        "ops",
        content={"application/json": {"type": "object", "required": ["source", "pool"]}},
        errors=(401, 403, 503) if private else (503,),
        secured=private,
        key_required=private,
    )


def api(ctx: Context) -> Api:
    """Return the v2 family over ``ctx``."""
    shape = replace(SHAPE, signer=verifiable.signer(ctx), signed_schema=verifiable.signed_envelope)
    randomness = [random_endpoint(ctx, f, shape) for f in _formats(ctx)]
    return Api(PREFIX, (*randomness, _usage(ctx), _status(ctx)))
