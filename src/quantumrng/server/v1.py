"""API v1: the prototype's two endpoints, same URLs and JSON keys.

Two formats in the prototype's response shape: the body is the value itself
(``{"512_qrng_bits": ...}``, ``{"qrng_bits": ...}``), always DRBG output, and
unknown query parameters are ignored as the prototype did. ``get_num_bits``
answers exactly ``ceil(n/8)`` bytes with the unused top bits of the first
byte zero (the prototype dropped leading zero bytes). Where the bytes came
from travels in ``X-QRNG-Mode`` and ``X-QRNG-Source``.
"""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Mapping
from typing import Any

from quantumrng import formats
from quantumrng.server.params import Param
from quantumrng.server.randomness import Args, Format, Shape, random_endpoint
from quantumrng.server.routing import Api
from quantumrng.server.service import Context

__all__ = ["PREFIX", "SHAPE", "api"]

PREFIX = "/api/v1/qrng"
GET_BITS_BYTES = 64  # the prototype's 512 bits

_B64 = {"type": "string", "contentEncoding": "base64"}


def _body(value: Any, mode: str, source: dict[str, Any]) -> Any:
    return value


def _schema(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return data


#: The prototype's shape: the value is the whole body; provenance in headers only.
SHAPE = Shape(
    tag="v1",
    modes=("drbg",),
    body=_body,
    schema=_schema,
    source_headers=True,
    strict_query=False,
    description="The mode and source kind travel in `X-QRNG-Mode` and `X-QRNG-Source`.",
)


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def _field(name: str) -> dict[str, Any]:
    return {"type": "object", "required": [name], "properties": {name: _B64}}


def _formats(ctx: Context) -> list[Format]:
    n_bits = Param(
        "n",
        "int",
        "Number of bits.",
        minimum=1,
        maximum=8 * ctx.settings.max_json_bytes,
        too_large=True,
        location="path",
    )

    def num_bits(read: formats.RandomBytes, a: Args) -> dict[str, str]:
        return {"qrng_bits": _b64(formats.bits(read, a["n"]))}

    return [
        Format(
            "get_bits",
            "512 random bits, base64.",
            (),
            lambda a: GET_BITS_BYTES,
            lambda read, a: {"512_qrng_bits": _b64(read(GET_BITS_BYTES))},
            _field("512_qrng_bits"),
        ),
        Format(
            "get_num_bits",
            "n random bits as ceil(n/8) bytes, base64, unused top bits zero.",
            (n_bits,),
            lambda a: formats.bits_cost(a["n"]),
            num_bits,
            _field("qrng_bits"),
        ),
    ]


def api(ctx: Context) -> Api:
    """Return the v1 family over ``ctx``."""
    return Api(PREFIX, tuple(random_endpoint(ctx, f, SHAPE) for f in _formats(ctx)))
