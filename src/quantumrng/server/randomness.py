"""The one randomness endpoint: every route that serves random values is an instance.

A request travels parse → cost → admit (key, scope, rate limit, quota) →
draw → respond, the same for every API family (docs/ARCHITECTURE.md, "How a
request travels"). What differs is data, not code:

- a :class:`Format`: the route's parameters, the bytes a request reads
  (its cost, from the ``*_cost`` function beside the format function in
  ``quantumrng.formats``) and the value it produces from a byte source;
- a :class:`Shape`: how the family answers (its JSON body around the value,
  the modes it offers, its OpenAPI schema).

A new API family is a table of formats plus a shape. Answers that are the
bytes themselves (``application/octet-stream``) carry their provenance in
``X-QRNG-Mode`` and ``X-QRNG-Source``, built once by :func:`provenance_headers`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyio import CancelScope, to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from quantumrng.errors import ValidationError
from quantumrng.formats import RandomBytes
from quantumrng.server.params import Param, parse_path, parse_query, require_utf8
from quantumrng.server.responses import random_response
from quantumrng.server.routing import RANDOM_ERRORS, Endpoint
from quantumrng.server.service import Context, draw, raw_limit, within

if TYPE_CHECKING:
    from quantumrng.server.access import Admission

__all__ = [
    "SIGNED_PARAM",
    "STREAM_CHUNK",
    "Args",
    "Format",
    "Shape",
    "Signer",
    "octet_response",
    "provenance_headers",
    "random_endpoint",
]

STREAM_CHUNK = 1 << 20  # bytes per DRBG call and per body message of a streamed answer
SIGNED_OCTETS = "signed answers are JSON: use format=base64 or hex with signed=true"

Args = dict[str, Any]
RawHeaders = tuple[tuple[bytes, bytes], ...]
#: ``signer(request, admission, method, parameters, body)``: the signed answer's body.
Signer = Callable[[Request, "Admission", str, Args, Any], Awaitable[Any]]

SIGNED_PARAM = Param(
    "signed",
    "bool",
    "`true`: the answer also carries `signed` (the result, its serials and an Ed25519 "
    "signature over its RFC 8785 bytes, appended to the transparency log) and `log_index`. "
    "JSON answers only.",
    default=False,
)


def _never(args: Args) -> bool:
    return False


@dataclass(frozen=True)
class Format:
    """One randomness route of a family: parameters, cost and the value they produce.

    ``cost`` validates the arguments together and returns the bytes
    ``produce`` reads when no draw is rejected: what limits and quotas
    count and what the raw pool's first take is sized by. With ``octets``
    true for the arguments, the answer is the produced bytes themselves
    (``application/octet-stream``); in DRBG mode those are streamed in
    constant memory and ``produce`` is not called.
    """

    name: str
    summary: str
    params: tuple[Param, ...]
    cost: Callable[[Args], int]
    produce: Callable[[RandomBytes, Args], Any]
    data: Mapping[str, Any]  # JSON Schema of the value
    description: str = ""
    octets: Callable[[Args], bool] = _never

    @property
    def path(self) -> str:
        """The path below the family's prefix: the name, then the path parameters."""
        return f"/{self.name}" + "".join(f"/{{{p.name}}}" for p in self.path_params)

    @property
    def path_params(self) -> tuple[Param, ...]:
        """Parameters carried in the path."""
        return tuple(p for p in self.params if p.location == "path")


@dataclass(frozen=True)
class Shape:
    """How an API family answers: its JSON body around the value, and the modes it offers.

    ``modes`` lists the byte sources the family serves, the default first;
    more than one adds the ``mode`` parameter. ``body(value, mode, source)``
    is the JSON answer and ``schema(data)`` its JSON Schema. With
    ``source_headers`` JSON answers carry ``X-QRNG-Mode``/``X-QRNG-Source``
    too. ``strict_query`` refuses unknown query parameters (the prototype's
    v1 ignored them). A ``signer`` adds the ``signed`` parameter: with
    ``signed=true`` a JSON answer's body goes through the signer after the
    draw (``signed_schema(data)`` documents it); octet answers are never signed.
    """

    tag: str
    modes: tuple[str, ...]
    body: Callable[[Any, str, dict[str, Any]], Any]
    schema: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    source_headers: bool = False
    strict_query: bool = True
    description: str = ""
    signer: Signer | None = None
    signed_schema: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None


@functools.cache
def provenance_headers(mode: str, kind: str) -> RawHeaders:
    """``X-QRNG-Mode`` and ``X-QRNG-Source``, encoded once per mode and source kind."""
    return ((b"x-qrng-mode", mode.encode("latin-1")), (b"x-qrng-source", kind.encode("latin-1")))


def _random_octets(response: Response, mode: str, kind: str) -> Response:
    """Mark an answer of random bytes: never cached, provenance in headers."""
    response.raw_headers.append((b"cache-control", b"no-store"))
    response.raw_headers.extend(provenance_headers(mode, kind))
    return response


def octet_response(body: bytes, mode: str, kind: str, headers: Mapping[str, str]) -> Response:
    """Return random bytes as ``application/octet-stream``: never cached, provenance
    in headers."""
    response = Response(body, media_type="application/octet-stream", headers=headers)
    return _random_octets(response, mode, kind)


def mode_param(ctx: Context, modes: Sequence[str]) -> Param:
    """The ``mode`` parameter, documenting this server's raw limit."""
    return Param(
        "mode",
        "enum",
        "`drbg`: the CTR_DRBG seeded from the pool (unlimited). "
        "`raw`: full-entropy conditioned pool bytes XOR a DRBG instantiated for the "
        "request (SP 800-90C RBG3(XOR)); rationed: 503 when the pool is dry or the "
        "source is stopped by a health-test failure, 409 when the source earns no "
        "entropy credit (unless the operator allows it), "
        f"413 beyond the pool's high-water mark of {raw_limit(ctx.settings)} bytes.",
        default=modes[0],
        choices=tuple(modes),
    )


class _ChargedStream(StreamingResponse):
    """A streamed answer that gives back to the quota the bytes it did not send.

    ``sent`` counts the bytes of each chunk once the server's ``send`` has
    taken it (the body iterator resumes only then); when the stream ends
    early (the client hung up, a draw failed), ``refund(n - sent)`` runs,
    shielded from the cancellation that ended the stream.
    """

    def __init__(
        self,
        body: AsyncIterator[memoryview],
        total: int,
        refund: Callable[[int], Awaitable[object]],
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(body, media_type="application/octet-stream", headers=headers)
        self.total = total
        self.sent = 0
        self._refund = refund

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            unsent = self.total - self.sent
            if unsent > 0:
                with CancelScope(shield=True):
                    await self._refund(unsent)


async def _stream(ctx: Context, n: int, admission: Admission) -> Response:
    """Stream ``n`` DRBG bytes; the first chunk is drawn before the headers go out.

    A client that hangs up is charged for the bytes sent, not those asked.
    """
    engine = ctx.engine

    def chunk(size: int) -> memoryview:
        buf = bytearray(size)
        engine.random_into(buf)
        return memoryview(buf)

    first = await to_thread.run_sync(chunk, min(STREAM_CHUNK, n))
    kind = ctx.drbg_source()["kind"]

    async def body() -> AsyncIterator[memoryview]:
        yield first
        response.sent += len(first)
        left = n - len(first)
        while left > 0:
            size = min(STREAM_CHUNK, left)
            yield await to_thread.run_sync(chunk, size)
            response.sent += size
            ctx.metrics.served("drbg", size)
            left -= size

    async def refund(unsent: int) -> int:
        return await ctx.access.refund(admission, unsent)

    ctx.metrics.served("drbg", len(first))
    headers = {**admission.headers, "content-length": str(n)}
    response = _ChargedStream(body(), n, refund, headers)
    return _random_octets(response, "drbg", kind)


def random_endpoint(ctx: Context, fmt: Format, shape: Shape) -> Endpoint:
    """Return the route serving ``fmt`` in the family answering as ``shape``."""
    s, access = ctx.settings, ctx.access
    modes = shape.modes
    params = fmt.params if len(modes) == 1 else (*fmt.params, mode_param(ctx, modes))
    signer = shape.signer
    if signer is not None:
        params = (*params, SIGNED_PARAM)
    query = tuple(p for p in params if p.location == "query")
    in_path = fmt.path_params
    default_mode = modes[0]
    defaults = {p.name: p.default for p in query}
    required = [p for p in query if p.required]
    octets_possible = fmt.octets is not _never
    json_limit = s.max_json_bytes

    cost, produce, wants_octets, name = fmt.cost, fmt.produce, fmt.octets, fmt.name
    strict, max_bytes = shape.strict_query, s.max_bytes

    async def endpoint(request: Request) -> Response:
        scope = request.scope
        raw: bytes = scope["query_string"]
        if raw or required:
            require_utf8(raw, "query")
            args = parse_query(request.query_params, query, strict=strict)
        else:  # nothing to parse: every parameter takes its default
            args = dict(defaults)
        if in_path:
            require_utf8(scope.get("raw_path") or b"", "path")
            args.update(parse_path(request.path_params, in_path))
        mode: str = args.get("mode", default_mode)
        signed = signer is not None and args.pop("signed")
        asked = dict(args) if signed else args
        nbytes = cost(args)
        octets = octets_possible and wants_octets(args)
        if signed and octets:
            raise ValidationError(SIGNED_OCTETS)
        streamed = octets and mode == "drbg"
        if nbytes > json_limit:
            within(nbytes, max_bytes if streamed else json_limit)
        async with access.admitted(request, scope=mode, nbytes=nbytes) as admission:
            if streamed:
                return await _stream(ctx, nbytes, admission)
            value, source = await draw(ctx, mode, nbytes, produce, args)
            body = shape.body(value, mode, source) if not octets else None
            if signed and signer is not None:  # inside: a failed signature refunds the bytes
                body = await signer(request, admission, name, asked, body)
        if octets:
            return octet_response(value, mode, source["kind"], admission.headers)
        extra = provenance_headers(mode, source["kind"]) if shape.source_headers else ()
        return random_response(body, admission.headers, extra)

    schema = shape.schema(fmt.data)
    if shape.signed_schema is not None:
        schema = shape.signed_schema(schema)
    content: dict[str, Mapping[str, Any]] = {"application/json": schema}
    if octets_possible:
        content["application/octet-stream"] = {}
    return Endpoint(
        fmt.path,
        endpoint,
        f"{shape.tag}_{fmt.name}",
        fmt.summary,
        shape.tag,
        params=params,
        content=content,
        errors=(*RANDOM_ERRORS, 404) if in_path else RANDOM_ERRORS,
        secured=True,
        key_required=access.auth_required,
        head=False,
        description=fmt.description or shape.description,
    )
