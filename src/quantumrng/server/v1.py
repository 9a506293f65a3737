"""API v1: the prototype's two endpoints, same URLs and JSON keys.

``get_num_bits`` always answers exactly ``ceil(n/8)`` bytes with the unused
top bits of the first byte zero (the prototype dropped leading zero bytes).
The bodies keep the prototype's shape; where the bytes came from travels in
``X-QRNG-Mode`` (always ``drbg``) and ``X-QRNG-Source`` (the seed's source
kind), the headers of v2's raw octet answers.
"""

from __future__ import annotations

import functools
from base64 import b64encode
from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from quantumrng import formats
from quantumrng.formats import RandomBytes
from quantumrng.server.openapi import RANDOM_ERRORS, Endpoint
from quantumrng.server.params import Param, parse_path
from quantumrng.server.responses import random_response
from quantumrng.server.service import Context, draw

__all__ = ["endpoints"]

GET_BITS_BYTES = 64  # the prototype's 512 bits
_DESCRIPTION = "The mode and source kind travel in `X-QRNG-Mode` and `X-QRNG-Source`."


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def _read64(read: RandomBytes) -> bytes:
    return read(GET_BITS_BYTES)


@functools.cache
def _source_headers(kind: str) -> tuple[tuple[bytes, bytes], ...]:
    """``X-QRNG-Mode`` and ``X-QRNG-Source``, encoded once per source kind."""
    return ((b"x-qrng-mode", b"drbg"), (b"x-qrng-source", kind.encode("latin-1")))


def endpoints(ctx: Context) -> list[Endpoint]:
    """Return the v1 routes over ``ctx``."""
    access = ctx.access
    max_bits = 8 * ctx.settings.max_json_bytes
    n_param = Param(
        "n",
        "int",
        "Number of bits.",
        minimum=1,
        maximum=max_bits,
        too_large=True,
        location="path",
    )

    async def get_bits(request: Request) -> Response:
        async with access.admitted(request, scope="drbg", nbytes=GET_BITS_BYTES) as admission:
            data, source = await draw(ctx, "drbg", GET_BITS_BYTES, _read64)
        return random_response(
            {"512_qrng_bits": _b64(data)}, admission.headers, _source_headers(source["kind"])
        )

    async def get_num_bits(request: Request) -> Response:
        n = parse_path(request.path_params, (n_param,))["n"]
        nbytes = (n + 7) // 8
        async with access.admitted(request, scope="drbg", nbytes=nbytes) as admission:
            data, source = await draw(ctx, "drbg", nbytes, partial(formats.bits, n=n))
        return random_response(
            {"qrng_bits": _b64(data)}, admission.headers, _source_headers(source["kind"])
        )

    b64 = {"type": "string", "contentEncoding": "base64"}
    return [
        Endpoint(
            "/api/v1/qrng/get_bits",
            get_bits,
            "v1_get_bits",
            "512 random bits, base64.",
            "v1",
            description=_DESCRIPTION,
            content={
                "application/json": {
                    "type": "object",
                    "required": ["512_qrng_bits"],
                    "properties": {"512_qrng_bits": b64},
                }
            },
            errors=RANDOM_ERRORS,
            secured=True,
        ),
        Endpoint(
            "/api/v1/qrng/get_num_bits/{n}",
            get_num_bits,
            "v1_get_num_bits",
            "n random bits as ceil(n/8) bytes, base64, unused top bits zero.",
            "v1",
            description=_DESCRIPTION,
            params=(n_param,),
            content={
                "application/json": {
                    "type": "object",
                    "required": ["qrng_bits"],
                    "properties": {"qrng_bits": b64},
                }
            },
            errors=(*RANDOM_ERRORS, 404),
            secured=True,
        ),
    ]
