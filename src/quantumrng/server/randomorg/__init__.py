"""RANDOM.ORG's JSON-RPC 2.0 API, Release 4, at ``POST /json-rpc/4/invoke``.

A program written for ``https://api.random.org/json-rpc/4/invoke`` works here by
changing only the URL: the same methods, parameters, limits, result shapes and
error codes (:mod:`.errors`). One dispatcher reads the JSON-RPC request and
looks the method up in one table: the randomness methods of :mod:`.methods`
(Basic and signed), ``getUsage``, ``verifySignature``, ``getResult``.

Over HTTP as RANDOM.ORG since Release 2: POST only (405 otherwise), ``Content-Type:
application/json`` (415 otherwise, with an Invalid Request body), every JSON-RPC
answer with status 200, and 204 with no body for a notification (a request
without ``id``), which draws nothing.

The key comes in ``params.apiKey`` and is admitted as if it were sent as
``X-API-Key`` (``Access.admitted`` with scope ``drbg``): rate limits and daily
byte quotas are the key's. Results carry ``bitsUsed`` (bytes charged x 8),
``bitsLeft`` (the daily quota left x 8), ``requestsLeft`` (rate-limit tokens
left) and ``advisoryDelay`` (ms until the next token when none is left); an
unlimited key shows :data:`UNLIMITED` for what has no limit. Values come from the
DRBG (``service.draw``), or from a reproducible, public DRBG for
``pregeneratedRandomization`` (:func:`.methods.pregenerated_reader`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from quantumrng.errors import QuantumRNGError
from quantumrng.server.keys import KeyRecord
from quantumrng.server.randomorg.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
    from_error,
)
from quantumrng.server.randomorg.methods import METHODS, parse, pregenerated_reader
from quantumrng.server.randomorg.signing import (
    MAX_USER_DATA_CHARS,
    Signer,
    completion_time,
    hashed_api_key,
)
from quantumrng.server.randomorg.tickets import Tickets
from quantumrng.server.responses import json_response
from quantumrng.server.routing import Api, Endpoint
from quantumrng.server.service import Context, draw

__all__ = ["PATH", "PREFIX", "UNLIMITED", "api"]

PREFIX = ""
PATH = "/json-rpc/4/invoke"
UNLIMITED = 2**31 - 1  # bitsLeft / requestsLeft of a key without that limit
_PREGENERATED_SOURCE = {
    "kind": "pregenerated",
    "quantum": False,
    "credited_bits": 0,
    "harvests": [],
}

Call = Callable[[Request, dict[str, Any]], Awaitable[Any]]


def _keyed(request: Request, api_key: object) -> Request:
    """``request`` as if ``api_key`` came in ``X-API-Key``, so ``Access`` admits it."""
    if not isinstance(api_key, str):
        raise RpcError(INVALID_PARAMS)
    try:
        header = api_key.encode("latin-1")
    except UnicodeEncodeError:
        raise RpcError(400) from None
    return Request({**request.scope, "headers": [(b"x-api-key", header)]})


_UNLIMITED_USAGE = {"bitsLeft": UNLIMITED, "requestsLeft": UNLIMITED, "advisoryDelay": 0}


async def _usage(ctx: Context, keyed: Request, key: KeyRecord | None = None) -> dict[str, int]:
    """``bitsLeft``, ``requestsLeft``, ``advisoryDelay`` of the key ``keyed`` presents
    (``key``: its record when admitted already; a key without limits reads no store)."""
    if key is not None and not (key.rate or key.daily_bytes):
        return _UNLIMITED_USAGE
    usage = await ctx.access.usage(keyed)
    bytes_left = usage["bytes_left"]
    requests_left = usage["requests_left"]
    rate = usage["rate"]
    delay = 0
    if requests_left == 0 and isinstance(rate, int | float) and rate > 0:
        delay = math.ceil(1000 / rate)
    return {
        "bitsLeft": UNLIMITED if bytes_left is None else 8 * int(bytes_left),  # type: ignore[call-overload]
        "requestsLeft": UNLIMITED if requests_left is None else int(requests_left),  # type: ignore[call-overload]
        "advisoryDelay": delay,
    }


def api(ctx: Context) -> Api:
    """Return the family's routes over ``ctx``."""
    signer = Signer(ctx)
    tickets = Tickets(ctx.node.pool)
    body_limit = 2 * ctx.settings.max_json_bytes

    async def generate(request: Request, name: str, params: dict[str, Any]) -> dict[str, Any]:
        method, signed = METHODS[name]
        api_key = params.get("apiKey")
        keyed = _keyed(request, api_key)
        args, echo = parse(method, signed, params)
        extra: dict[str, Any] = {}
        ticket: dict[str, Any] | None = None
        if signed:
            extra = _signed_extra(params)
            if params.get("ticketId") is not None:
                ctx.access.authorize(keyed, "drbg")
                taken, lease = await to_thread.run_sync(
                    tickets.take, params["ticketId"], hashed_api_key(str(api_key))
                )
                extra["ticketData"] = {
                    "ticketId": taken["ticketId"],
                    "previousTicketId": taken["previousTicketId"],
                    "nextTicketId": taken["nextTicketId"],
                }
                ticket = taken
        nbytes = method.cost(args)
        try:
            async with ctx.access.admitted(keyed, scope="drbg", nbytes=nbytes) as admission:
                seed = args["pregeneratedRandomization"]
                if seed is not None:
                    read = pregenerated_reader(seed)
                    data = await to_thread.run_sync(method.produce, read, args)
                    source: dict[str, Any] = _PREGENERATED_SOURCE
                else:
                    data, source = await draw(ctx, "drbg", nbytes, method.produce, args)
                if signed:
                    random, signature = await signer.sign(
                        name, echo, data, source, str(api_key), extra
                    )
                else:
                    random = {"data": data, "completionTime": completion_time(time.time())}
        except BaseException:
            if ticket is not None:
                await to_thread.run_sync(tickets.release, lease)
            raise
        if ticket is not None:
            stored = {"random": random, "signature": signature}
            await to_thread.run_sync(tickets.used, ticket, random["serialNumber"], stored)
        result: dict[str, Any] = {"random": random}
        if signed:
            result["signature"] = signature
        return {**result, "bitsUsed": 8 * nbytes, **await _usage(ctx, keyed, admission.key)}

    async def get_usage(request: Request, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"apiKey"})
        keyed = _keyed(request, params.get("apiKey"))
        _, record = ctx.access.authorize(keyed, "drbg")
        usage = await ctx.access.usage(keyed)
        daily = usage["daily_bytes"]
        left = usage["bytes_left"]
        used = 0 if daily is None or left is None else int(daily) - int(left)  # type: ignore[call-overload]
        return {
            "status": "running",
            "creationTime": completion_time(record.created_at if record else time.time()),
            "totalBits": 8 * used,
            "totalRequests": 0,
            **await _usage(ctx, keyed),
        }

    async def verify_signature(request: Request, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"random", "signature"}, required={"random", "signature"})
        authentic = await signer.verify(params["random"], params["signature"])
        return {"authenticity": authentic, "advisoryDelay": 0}

    async def get_result(request: Request, params: dict[str, Any]) -> dict[str, Any]:
        _only(params, {"apiKey", "serialNumber"}, required={"apiKey", "serialNumber"})
        api_key = params["apiKey"]
        keyed = _keyed(request, api_key)
        serial = params["serialNumber"]
        if isinstance(serial, bool) or not isinstance(serial, int) or serial < 1:
            raise RpcError(INVALID_PARAMS)
        async with ctx.access.admitted(keyed, scope="drbg", nbytes=0):
            stored = await signer.stored(serial)
        if stored is None or stored["random"].get("hashedApiKey") != hashed_api_key(str(api_key)):
            raise RpcError(INVALID_PARAMS)
        return {**stored, **await _usage(ctx, keyed)}

    async def owner(request: Request, params: dict[str, Any], names: set[str]) -> str:
        """Admit the request's key (one request, no bits); return its ``hashedApiKey``."""
        _only(params, {"apiKey", *names})
        keyed = _keyed(request, params["apiKey"])
        async with ctx.access.admitted(keyed, scope="drbg", nbytes=0):
            return hashed_api_key(str(params["apiKey"]))

    async def create_tickets(request: Request, params: dict[str, Any]) -> Any:
        hashed = await owner(request, params, {"n", "showResult"})
        return await to_thread.run_sync(tickets.create, hashed, params["n"], params["showResult"])

    async def reveal_tickets(request: Request, params: dict[str, Any]) -> Any:
        hashed = await owner(request, params, {"ticketId"})
        count = await to_thread.run_sync(tickets.reveal, params["ticketId"], hashed)
        return {"ticketCount": count, "advisoryDelay": 0}

    async def list_tickets(request: Request, params: dict[str, Any]) -> Any:
        hashed = await owner(request, params, {"ticketType"})
        return await to_thread.run_sync(tickets.listed, params["ticketType"], hashed)

    async def get_ticket(request: Request, params: dict[str, Any]) -> Any:
        _only(params, {"ticketId"})
        return await to_thread.run_sync(tickets.get, params["ticketId"])

    calls: dict[str, Call] = {
        "getUsage": get_usage,
        "verifySignature": verify_signature,
        "getResult": get_result,
        "createTickets": create_tickets,
        "revealTickets": reveal_tickets,
        "listTickets": list_tickets,
        "getTicket": get_ticket,
    }

    async def call(request: Request, name: str, params: dict[str, Any]) -> Any:
        if name in METHODS:
            return await generate(request, name, params)
        handler = calls.get(name)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND)
        return await handler(request, params)

    async def invoke(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            return json_response(_error_body(None, RpcError(INVALID_REQUEST)), status_code=415)
        try:
            message = json.loads(await _body(request, body_limit))
        except RpcError as exc:
            return _answer(None, error=exc)
        except (ValueError, RecursionError):
            return _answer(None, error=RpcError(PARSE_ERROR))
        if not isinstance(message, dict):
            return _answer(None, error=RpcError(INVALID_REQUEST))
        rid = message.get("id")
        name = message.get("method")
        params = message.get("params", {})
        if message.get("jsonrpc") != "2.0" or not isinstance(name, str):
            return _answer(rid, error=RpcError(INVALID_REQUEST))
        if "id" not in message:  # a notification: no answer (204), so nothing is drawn
            return Response(status_code=204)
        try:
            if not isinstance(params, dict):
                raise RpcError(INVALID_PARAMS)
            return _answer(rid, result=await call(request, name, params))
        except RpcError as exc:
            return _answer(rid, error=exc)
        except QuantumRNGError as exc:
            return _answer(rid, error=from_error(exc))

    return Api(
        PREFIX,
        (
            Endpoint(
                PATH,
                invoke,
                operation_id="randomorg_invoke",
                summary="RANDOM.ORG JSON-RPC API, Release 4 (Basic and Signed methods)",
                tag="RANDOM.ORG",
                content={"application/json": {"type": "object"}},
                error_content={"application/json": {"type": "object"}},
                methods=("POST",),
                head=False,
            ),
        ),
    )


def _signed_extra(params: dict[str, Any]) -> dict[str, Any]:
    """``userData`` (JSON of at most 1,000 characters); ``licenseData`` must be null."""
    if params.get("licenseData") is not None:
        raise RpcError(425)
    user_data = params.get("userData")
    if (
        user_data is not None
        and len(json.dumps(user_data, separators=(",", ":"))) > MAX_USER_DATA_CHARS
    ):
        raise RpcError(202, "userData", 0, MAX_USER_DATA_CHARS)
    return {"userData": user_data, "ticketData": None}


def _only(params: dict[str, Any], allowed: set[str], required: set[str] | None = None) -> None:
    if not set(params) <= allowed or not (required or allowed) <= set(params):
        raise RpcError(INVALID_PARAMS)


async def _body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RpcError(INVALID_REQUEST)
    return bytes(body)


def _error_body(rid: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": rid}


def _answer(rid: Any, *, result: Any = None, error: RpcError | None = None) -> Response:
    """A JSON-RPC response; RANDOM.ORG answers errors with HTTP 200 too."""
    if error is not None:
        return json_response(_error_body(rid, error))
    return json_response({"jsonrpc": "2.0", "result": result, "id": rid})
