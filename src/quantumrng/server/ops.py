"""Operations: liveness, readiness and Prometheus metrics (status is v2's ``/status``).

``/ready`` is 200 only when this process's DRBG is seeded, the pool holds
blocks of the configured source and answers every read a take makes, and
the source is not stopped by a persistent health-test failure (SP 800-90B
§4.3); anything else is a 503, so a load balancer sends no traffic then.
``/metrics`` carries counters, never a secret (no key, token, pool byte or
DRBG state); under required auth it needs an ``admin`` key unless
``public_status`` is set. ``/health`` and ``/ready`` are always public: load
balancers probe them without a key.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response

from quantumrng.errors import EntropyUnavailable, NotSeeded, QuantumRNGError, Unavailable
from quantumrng.server.metrics import CONTENT_TYPE_LATEST
from quantumrng.server.responses import json_response
from quantumrng.server.routing import Api, Endpoint
from quantumrng.server.service import POOL_ANSWER_SECONDS, BoundedRead, Context

__all__ = ["api", "ready_state"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _pool_errors() -> Iterator[None]:
    """Turn any failure of the pool into ``Unavailable``: not ready is a 503, never a 500."""
    try:
        yield
    except Unavailable:
        raise
    except Exception as exc:  # a pool's ConfigError or a driver's own error, as a 503
        detail = exc.message if isinstance(exc, QuantumRNGError) else type(exc).__name__
        log.warning("readiness: the entropy pool failed: %s", detail)
        raise Unavailable("not ready: the entropy pool is unavailable") from None


def _pool_blocks(ctx: Context) -> int:
    """Return the pool's blocks of the configured source, reading what every take reads.

    ``level`` counts the blocks table; ``recent`` joins the harvests table
    that every take joins too, so a pool that answers one but not the other
    (a damaged page) is not ready.
    """
    pool = ctx.node.pool
    blocks = pool.level().by_source.get(ctx.settings.source, 0)
    pool.recent(1)
    return blocks


def ready_state(ctx: Context) -> dict[str, Any]:
    """Return readiness facts, seeding the DRBG first if the pool allows.

    Raises ``NotSeeded``, ``EntropyUnavailable`` or (any pool failure)
    ``Unavailable``: all 503. Blocking (reads the pool): call it off the
    event loop.
    """
    source = ctx.settings.source
    engine = ctx.engine
    with _pool_errors():
        ctx.node.ledger.check_usable()  # a source stopped by a persistent failure (§4.3)
        blocks = _pool_blocks(ctx)
        if not engine.seeded and blocks > 0:
            with contextlib.suppress(NotSeeded):  # another worker may have taken the blocks
                engine.reseed()
            blocks = _pool_blocks(ctx)
    if not engine.seeded:
        raise NotSeeded(f"not ready: the DRBG has no seed yet (waiting for {source} entropy)")
    if blocks == 0:
        raise EntropyUnavailable(f"not ready: the pool holds no {source} blocks")
    return {"status": "ready", "source": source, "seeded": True, "pool_blocks": blocks}


def api(ctx: Context) -> Api:
    """Return the operations routes over ``ctx``, at the root."""

    async def health(request: Request) -> Response:
        return json_response({"status": "ok"})

    readiness = BoundedRead(lambda: ready_state(ctx), "readiness", POOL_ANSWER_SECONDS)

    async def ready(request: Request) -> Response:
        return json_response(await to_thread.run_sync(readiness))

    access = ctx.access
    private = access.private_status

    async def metrics(request: Request) -> Response:
        access.authorize_status(request)
        body = await to_thread.run_sync(ctx.metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    obj = {"type": "object"}
    endpoints = (
        Endpoint(
            "/health",
            health,
            "health",
            "Alive: the process answers.",
            "ops",
            content={"application/json": {**obj, "required": ["status"]}},
        ),
        Endpoint(
            "/ready",
            ready,
            "ready",
            "Ready: the DRBG is seeded and the pool holds blocks of the configured source.",
            "ops",
            content={"application/json": {**obj, "required": ["status", "source"]}},
            errors=(503,),
        ),
        Endpoint(
            "/metrics",
            metrics,
            "metrics",
            "Prometheus metrics (text exposition format).",
            "ops",
            content={"text/plain": {"type": "string"}},
            errors=(401, 403) if private else (),
            secured=private,
            key_required=private,
        ),
    )
    return Api("", endpoints)
