"""Ubuntu pollinate's pollen protocol at ``/pollen``, so ``pollinate -s https://host/pollen``
seeds a host from this service unchanged.

The protocol is pollen's (github.com/dustinkirkland/pollen, ``pollen.go``):
the client sends ``challenge`` (pollinate POSTs ``challenge=<hex>`` form-encoded;
a query string works too, the form body's value first, as Go's ``FormValue``)
and the server answers 200 ``text/plain; charset=utf-8`` with two lines of
lowercase hex: SHA-512(challenge), which proves the answer is for this
request, and SHA-512(challenge ‖ 64 fresh random bytes), the seed. No challenge
(or an empty one) is pollen's 400 with its sentence asking for the pollinate
client. Errors are Go's ``http.Error``: the message and a newline as
``text/plain; charset=utf-8`` with ``X-Content-Type-Options: nosniff``.

The 64 bytes (pollen's default ``-bytes``) come from the DRBG through
:func:`~quantumrng.server.service.draw`, after ``ctx.access`` admitted the
request like any randomness route (a key, when required, goes in a curl
option: ``pollinate -c "-H X-API-Key:<key>"``); nothing else is ever used.
Answers are ``Cache-Control: no-store`` and name their entropy in
``X-QRNG-Mode``/``X-QRNG-Source``.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from quantumrng.errors import QuantumRNGError
from quantumrng.formats import RandomBytes
from quantumrng.server.errors import refusal_headers
from quantumrng.server.randomness import provenance_headers
from quantumrng.server.responses import go_http_error
from quantumrng.server.routing import Api, Endpoint
from quantumrng.server.service import Context, draw

__all__ = ["PATH", "PREFIX", "SEED_BYTES", "USE_POLLINATE", "answer_lines", "api"]

PREFIX = ""
PATH = "/pollen"
SEED_BYTES = 64  # random bytes hashed into a seed: pollen's default -bytes
MAX_FORM_BYTES = 1 << 16  # a longer form body is not read (pollinate sends about 140 bytes)
USE_POLLINATE = (
    "Please use the pollinate client.  'sudo apt-get install pollinate' or download from: "
    "https://bazaar.launchpad.net/~pollinate/pollinate/trunk/view/head:/pollinate"
)
_FORM = "application/x-www-form-urlencoded"
_TEXT = "text/plain; charset=utf-8"


def answer_lines(challenge: bytes, random: bytes) -> bytes:
    """Return pollen's body: hex SHA-512(challenge), then hex SHA-512(challenge ‖ random)."""
    checksum = hashlib.sha512(challenge)
    proof = checksum.hexdigest()
    checksum.update(random)
    return f"{proof}\n{checksum.hexdigest()}\n".encode("ascii")


def _first(encoded: bytes, name: str = "challenge") -> bytes | None:
    """The first value of ``name`` in a form-encoded string, as the bytes it encodes."""
    pairs = parse_qsl(encoded.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    for key, value in pairs:
        if key == name:
            return value.encode("latin-1")
    return None


async def _form_body(request: Request) -> bytes:
    """The request body if it is a form of at most ``MAX_FORM_BYTES``, else nothing."""
    if request.method != "POST":
        return b""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != _FORM:
        return b""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return b""
    return bytes(body)


async def challenge_of(request: Request) -> bytes:
    """The challenge: the form body's first value, else the query's; b"" if none."""
    found = _first(await _form_body(request))
    if found is None:
        found = _first(request.scope.get("query_string", b""))
    return found or b""


def _refused(exc: QuantumRNGError) -> Response:
    return go_http_error(exc.message, exc.status, refusal_headers(exc, authenticate=True))


def _read_seed(read: RandomBytes, n: int) -> bytes:
    return read(n)


def api(ctx: Context) -> Api:
    """Return the pollen route over ``ctx``."""
    access = ctx.access

    async def endpoint(request: Request) -> Response:
        challenge = await challenge_of(request)
        if not challenge:
            return go_http_error(USE_POLLINATE, 400)
        try:
            async with access.admitted(request, scope="drbg", nbytes=SEED_BYTES) as admission:
                random, source = await draw(ctx, "drbg", SEED_BYTES, _read_seed, SEED_BYTES)
        except QuantumRNGError as exc:
            return _refused(exc)
        headers = {**admission.headers, "cache-control": "no-store"}
        response = Response(answer_lines(challenge, random), 200, headers, media_type=_TEXT)
        response.raw_headers.extend(provenance_headers("drbg", source["kind"]))
        return response

    return Api(
        PREFIX,
        (
            Endpoint(
                PATH,
                endpoint,
                "pollen",
                "A pollen answer: SHA-512(challenge) and SHA-512(challenge ‖ 64 random bytes).",
                "pollen",
                content={_TEXT: {"type": "string"}},
                errors=(400, 401, 403, 429, 503),
                error_content={_TEXT: {"type": "string"}},
                description="Ubuntu pollinate's server protocol: POST `challenge=<hex>` "
                "(form-encoded) or GET `?challenge=`; two lines of hex answer.",
                secured=True,
                key_required=access.auth_required,
                methods=("GET", "POST"),
                head=False,
            ),
        ),
    )
