"""drand's HTTP API v1 and v2 under ``/drand``, serving our own chain (issue 10).

drand's clients verify our rounds with only the URL changed: the routes, field names,
status codes and caching are those of drand's HTTP relay (``drand/http-relay``,
``routes_handler.go``). v1: ``/chains``, ``/info``, ``/health``, ``/public/latest``,
``/public/{round}``, and the same below ``/{chainhash}``. v2: ``/v2/chains``,
``/v2/beacons``, and ``/info``, ``/health``, ``/rounds/latest``, ``/rounds/next``,
``/rounds/{round}`` below ``/v2/chains/{chainhash}`` and ``/v2/beacons/{beaconID}`` (v2
rounds leave ``randomness`` out, as drand v2 does). A past round is
``public, max-age=604800, immutable``; the latest is cacheable until the next round;
the next round is answered once it is emitted (the request waits, at most
:data:`MAX_WAIT_SECONDS`); a round beyond it is 425 Too Early at once. Errors are
drand's: plain text, its status. Public like drand: no API key. ``drand_period = 0``
serves none of it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from quantumrng.drand import Beacon, DrandChain, RoundNotYet, load_chain_secret
from quantumrng.drand.key import KEY_FILE
from quantumrng.errors import QuantumRNGError
from quantumrng.harvester import holder_name
from quantumrng.pool.integrity import load_or_create_key
from quantumrng.server.params import Param
from quantumrng.server.responses import go_http_error, json_response
from quantumrng.server.routing import Api, Endpoint
from quantumrng.server.service import Context

__all__ = ["IMMUTABLE", "MAX_WAIT_SECONDS", "PREFIX", "api"]

PREFIX = "/drand"
TAG = "drand"
IMMUTABLE = "public, max-age=604800, immutable"  # drand's header for a named past round
NO_CACHE = "no-cache"
MAX_WAIT_SECONDS = 60.0  # longest a request for the next round waits for its emission
KEY_DRAW_BYTES = 64
_ROUND = re.compile(r"[0-9]{1,20}")
_HEADERS = {"access-control-allow-origin": "*"}

_INFO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["public_key", "period", "genesis_time", "hash", "groupHash", "schemeID"],
    "properties": {
        "public_key": {"type": "string"},
        "period": {"type": "integer"},
        "genesis_time": {"type": "integer"},
        "hash": {"type": "string"},
        "groupHash": {"type": "string"},
        "schemeID": {"type": "string"},
        "metadata": {"type": "object", "properties": {"beaconID": {"type": "string"}}},
    },
}
_ROUND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["round", "signature"],
    "properties": {
        "round": {"type": "integer"},
        "randomness": {"type": "string"},
        "signature": {"type": "string"},
        "previous_signature": {"type": "string"},
    },
}
_HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"current": {"type": "integer"}, "expected": {"type": "integer"}},
}
_LIST_SCHEMA: dict[str, Any] = {"type": "array", "items": {"type": "string"}}


class _Refusal(Exception):
    """An answer in drand's error format: plain text and a status."""

    def __init__(self, status: int, text: str, cache: str = NO_CACHE) -> None:
        super().__init__(text)
        self.status, self.text, self.cache = status, text, cache


def _json(body: Any, cache: str | None = None) -> Response:
    headers = dict(_HEADERS)
    if cache is not None:
        headers["cache-control"] = cache
    return json_response(body, headers=headers)


def _text(refusal: _Refusal) -> Response:
    """drand's ``http.Error``."""
    headers = {**_HEADERS, "cache-control": refusal.cache}
    return go_http_error(refusal.text, refusal.status, headers)


class _Chains:
    """The node's one chain, built on its first request (the key may be made then)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self._chain: DrandChain | None = None

    def _draw(self, n: int) -> bytes:
        return self._ctx.node.engine.random_bytes(n, prediction_resistance=True)

    def _build(self) -> DrandChain:
        with self._lock:
            if self._chain is None:
                s = self._ctx.settings
                secret = load_chain_secret(
                    s.data_dir,
                    self._draw,
                    pool=self._ctx.node.pool,
                    pool_key=load_or_create_key(s.pool_key_path),
                    holder=holder_name(s.node),
                )
                self._chain = DrandChain(
                    s.drand_scheme,
                    s.drand_period,
                    secret,
                    checkpoint_dir=s.data_dir / KEY_FILE.parent,
                )
            return self._chain

    async def get(self, request: Request) -> DrandChain:
        """The chain the request names (by hash, beacon ID or none), else a 404."""
        chain = self._chain
        if chain is None:
            try:
                chain = await to_thread.run_sync(self._build)
            except QuantumRNGError:
                raise _Refusal(503, "Failed to get chain info") from None
        named_hash = request.path_params.get("chainhash")
        if named_hash is not None and named_hash.lower() != chain.hash.hex():
            raise _Refusal(404, "404 page not found")
        named_id = request.path_params.get("beacon_id")
        if named_id is not None and named_id != chain.info.beacon_id:
            raise _Refusal(404, "404 page not found")
        return chain


def _drand_route(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except _Refusal as refusal:
            return _text(refusal)

    return route


async def _round(chain: DrandChain, wanted: int | None) -> tuple[Beacon, str]:
    """The round ``wanted`` (None or 0: the latest) with its Cache-Control, waiting for
    the next round's emission (drand ``getBeacon``)."""
    upcoming, upcoming_time = chain.next_round()
    latest = wanted is None or wanted == 0
    target = chain.current_round() if latest else int(wanted or 0)
    if target > upcoming:
        seconds = max(0, int(upcoming_time - chain.now()))
        raise _Refusal(
            425, "Requested future beacon", f"must-revalidate, public, max-age={seconds}"
        )
    if target == 0:
        target = upcoming  # before genesis the latest round is the first
    waited = target == upcoming
    if waited:
        delay = chain.round_time(target) - chain.now()
        if delay > MAX_WAIT_SECONDS:
            raise _Refusal(
                425, "Requested future beacon", f"must-revalidate, public, max-age={int(delay)}"
            )
        await anyio.sleep(max(0.0, delay))
    beacon = chain.cached(target)  # a round is cached only once emitted
    for _ in range(3):  # the clock may read a hair early after the sleep
        if beacon is not None:
            break
        try:
            beacon = await to_thread.run_sync(chain.beacon, target)
        except RoundNotYet:
            await anyio.sleep(0.01)
    if beacon is None:
        raise _Refusal(500, "Failed to get beacon")
    if waited:
        return beacon, NO_CACHE
    if latest:
        left = max(0, int(chain.round_time(target + 1) - chain.now()))
        return beacon, f"public, must-revalidate, max-age={left}"
    return beacon, IMMUTABLE


def _parse_round(request: Request) -> int:
    text = str(request.path_params["round"])
    if not _ROUND.fullmatch(text) or int(text) >= 1 << 64:
        raise _Refusal(400, "Failed to parse round parameter", IMMUTABLE)  # input not echoed
    return int(text)


def api(ctx: Context) -> Api:
    """The family's routes, below ``/drand`` (none when ``drand_period`` is 0)."""
    if ctx.settings.drand_period == 0:
        return Api(PREFIX, ())
    chains = _Chains(ctx)

    async def chain_list(request: Request) -> Response:
        chain = await chains.get(request)
        return _json([chain.hash.hex()])

    async def beacon_list(request: Request) -> Response:
        chain = await chains.get(request)
        return _json([chain.info.beacon_id])

    async def info_v1(request: Request) -> Response:
        chain = await chains.get(request)
        return _json(chain.info.v1())

    async def info_v2(request: Request) -> Response:
        chain = await chains.get(request)
        return _json(chain.info.v2())

    async def health(request: Request) -> Response:
        chain = await chains.get(request)
        upcoming, _ = chain.next_round()
        body = {"current": chain.current_round(), "expected": upcoming - 1}
        return _json(body, NO_CACHE)

    def rounds(version: str, which: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            chain = await chains.get(request)
            if which == "latest":
                wanted: int | None = None
            elif which == "next":
                wanted = chain.next_round()[0]
            else:
                wanted = _parse_round(request)
            beacon, cache = await _round(chain, wanted)
            return _json(beacon.v1() if version == "v1" else beacon.v2(), cache)

        return handler

    chainhash = Param("chainhash", "str", "The chain hash (hex).", max_length=64, location="path")
    beacon_id = Param("beacon_id", "str", "The beacon ID.", max_length=64, location="path")
    round_param = Param(
        "round",
        "str",
        "The round number (1 is emitted at genesis).",
        max_length=20,
        location="path",
    )
    info_content = {"application/json": _INFO_SCHEMA}
    round_content = {"application/json": _ROUND_SCHEMA}
    list_content = {"application/json": _LIST_SCHEMA}
    health_content = {"application/json": _HEALTH_SCHEMA}

    def endpoint(
        path: str,
        handler: Callable[[Request], Awaitable[Response]],
        operation: str,
        summary: str,
        content: dict[str, Any],
        params: tuple[Param, ...] = (),
    ) -> Endpoint:
        return Endpoint(
            path,
            _drand_route(handler),
            operation,
            summary,
            TAG,
            params=params,
            content=content,
            errors=(400, 404, 425, 503) if "round" in path else (404, 503),
            error_content={"text/plain; charset=utf-8": {"type": "string"}},
            description="drand's format and status codes; a round not yet due is 425.",
        )

    endpoints: list[Endpoint] = [
        endpoint("/v2/chains", chain_list, "drand_v2_chains", "Chain hashes.", list_content),
        endpoint("/v2/beacons", beacon_list, "drand_v2_beacons", "Beacon IDs.", list_content),
    ]
    for kind, param in (("chains", chainhash), ("beacons", beacon_id)):
        base = f"/v2/{kind}/{{{param.name}}}"
        op = f"drand_v2_{kind}"
        endpoints += [
            endpoint(
                f"{base}/info", info_v2, f"{op}_info", "Chain info (v2).", info_content, (param,)
            ),
            endpoint(
                f"{base}/health",
                health,
                f"{op}_health",
                "Rounds current and expected.",
                health_content,
                (param,),
            ),
            endpoint(
                f"{base}/rounds/latest",
                rounds("v2", "latest"),
                f"{op}_latest",
                "The latest round.",
                round_content,
                (param,),
            ),
            endpoint(
                f"{base}/rounds/next",
                rounds("v2", "next"),
                f"{op}_next",
                "The next round, once emitted.",
                round_content,
                (param,),
            ),
            endpoint(
                f"{base}/rounds/{{round}}",
                rounds("v2", "round"),
                f"{op}_round",
                "A round.",
                round_content,
                (param, round_param),
            ),
        ]
    endpoints += [
        endpoint("/chains", chain_list, "drand_chains", "Chain hashes.", list_content),
        endpoint("/info", info_v1, "drand_info", "Chain info.", info_content),
        endpoint("/health", health, "drand_health", "Rounds current and expected.", health_content),
        endpoint(
            "/public/latest",
            rounds("v1", "latest"),
            "drand_latest",
            "The latest round.",
            round_content,
        ),
        endpoint(
            "/public/{round}",
            rounds("v1", "round"),
            "drand_round",
            "A round.",
            round_content,
            (round_param,),
        ),
        endpoint(
            "/{chainhash}/info",
            info_v1,
            "drand_chain_info",
            "Chain info.",
            info_content,
            (chainhash,),
        ),
        endpoint(
            "/{chainhash}/health",
            health,
            "drand_chain_health",
            "Rounds current and expected.",
            health_content,
            (chainhash,),
        ),
        endpoint(
            "/{chainhash}/public/latest",
            rounds("v1", "latest"),
            "drand_chain_latest",
            "The latest round.",
            round_content,
            (chainhash,),
        ),
        endpoint(
            "/{chainhash}/public/{round}",
            rounds("v1", "round"),
            "drand_chain_round",
            "A round.",
            round_content,
            (chainhash, round_param),
        ),
    ]
    return Api(PREFIX, tuple(endpoints))
