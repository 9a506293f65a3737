"""The ASGI app: the route table of v1, v2, operations and docs on Starlette.

``create_app(settings)`` builds its own node and, while it runs (lifespan),
the node's harvester: a first synchronous harvest when the pool has nothing
of the configured local source, then the background thread (one per node:
the harvester's lock file keeps other workers idle), then the first seeding.
An app given a ``node`` leaves harvesting to its caller.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from quantumrng import __version__
from quantumrng.config import Settings
from quantumrng.errors import QuantumRNGError
from quantumrng.node import Node
from quantumrng.server import ops, v1, v2
from quantumrng.server.access import Access
from quantumrng.server.errors import EXCEPTION_HANDLERS
from quantumrng.server.metrics import Metrics, MetricsMiddleware
from quantumrng.server.openapi import Endpoint, docs_endpoints
from quantumrng.server.service import Context

__all__ = ["STARTUP_BLOCKS", "create_app", "route_table"]

log = logging.getLogger(__name__)

STARTUP_BLOCKS = 8  # blocks the startup harvest makes sure of before serving
_LOCAL_SOURCES = ("simulator", "os", "file")  # quick enough to harvest before serving


def route_table(ctx: Context) -> list[Endpoint]:
    """Return every route of the app, documented ones first."""
    table = [*v1.endpoints(ctx), *v2.endpoints(ctx), *ops.endpoints(ctx)]
    return [*table, *docs_endpoints(table, __version__)]


def _route(e: Endpoint) -> Route:
    """A Starlette route; randomness answers no HEAD (it would draw bytes to discard)."""
    route = Route(e.path, e.handler, methods=list(e.methods), name=e.operation_id)
    if e.secured and route.methods is not None:
        route.methods.discard("HEAD")
    return route


def _start(ctx: Context) -> None:
    """Prime the pool, start the harvester thread and seed the DRBG (blocking)."""
    node, harvester = ctx.node, ctx.node.harvester
    if ctx.settings.source in _LOCAL_SOURCES and harvester.level() == 0:
        try:
            harvester.fill(STARTUP_BLOCKS)
        except QuantumRNGError as exc:
            log.warning("startup harvest failed (%s); the harvester retries", exc.message)
    harvester.start()
    ctx.harvester = harvester
    ctx.metrics.watch(harvester)
    try:
        node.engine.reseed()
    except QuantumRNGError as exc:
        log.warning("DRBG not seeded yet (%s); /ready stays 503 until it is", exc.message)


def create_app(
    settings: Settings, node: Node | None = None, *, access: Access | None = None
) -> Starlette:
    """Return the QuantumRNG ASGI app for ``settings``.

    Without ``node`` the app builds one and runs its harvester while it
    lives; ``access`` defaults to API keys, scopes and limits from ``settings``.
    """
    owned = node is None
    node = node if node is not None else Node(settings, harvest_on_demand=False)
    ctx = Context(settings, node, access or Access(settings), Metrics(node))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if owned:
            await to_thread.run_sync(_start, ctx)
        try:
            yield
        finally:
            if owned:
                ctx.harvester = None
                await to_thread.run_sync(node.close)

    routes = [_route(e) for e in route_table(ctx)]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(MetricsMiddleware, metrics=ctx.metrics)],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        lifespan=lifespan,
    )
    app.state.context = ctx
    return app
