"""The ASGI app: the API families v1, v2, operations and docs on Starlette.

``create_app(settings)`` builds its own node and, while it runs (lifespan),
the node's harvester thread: one leads per source across the deployment,
since the harvest lease in the pool's store keeps the threads of other
workers and nodes idle, so only the lease's holder makes the startup
harvest. Every worker then waits (a bounded time, local sources only)
for the first blocks and seeds its DRBG; one that is not seeded stays 503 on
``/ready`` until it is. An app given a ``node`` leaves harvesting to its caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware

from quantumrng import __version__
from quantumrng.config import Settings
from quantumrng.errors import QuantumRNGError
from quantumrng.harvester import Harvester
from quantumrng.node import Node
from quantumrng.provenance import LOCAL_SOURCE_KINDS
from quantumrng.server import (
    anu,
    beacon,
    dashboard,
    drand,
    ops,
    pollen,
    randomorg,
    v1,
    v2,
    verifiable,
)
from quantumrng.server.access import Access
from quantumrng.server.errors import EXCEPTION_HANDLERS
from quantumrng.server.metrics import Metrics, MetricsMiddleware
from quantumrng.server.openapi import docs_api
from quantumrng.server.routing import Api, redirect_slashes_relatively, starlette_routes
from quantumrng.server.service import Context

__all__ = ["STARTUP_BLOCKS", "apis", "create_app"]

log = logging.getLogger(__name__)

STARTUP_BLOCKS = 8  # blocks the startup harvest makes sure of before serving
STARTUP_WAIT_SECONDS = 15.0  # longest a worker waits for them before serving anyway
STARTUP_MAX_FAILURES = 3  # failed harvests after which a worker stops waiting
_POLL_SECONDS = 0.05  # seconds between two reads of the pool level while waiting


def apis(ctx: Context) -> list[Api]:
    """Return every API family of the app, the documentation last."""
    served = [
        v1.api(ctx),
        v2.api(ctx),
        verifiable.api(ctx),
        beacon.api(ctx),
        anu.api(ctx),
        randomorg.api(ctx),
        drand.api(ctx),
        pollen.api(ctx),
        ops.api(ctx),
        dashboard.api(ctx),
    ]
    return [*served, docs_api(served, __version__)]


def _await_blocks(harvester: Harvester, target: int, timeout: float) -> None:
    """Wait until the pool holds ``target`` blocks of the harvester's source.

    Whichever process holds the harvest lease harvests them (its thread fills
    from empty at once); this one only reads the level. Gives up after
    ``timeout`` seconds or ``STARTUP_MAX_FAILURES`` failed harvests here.
    """
    deadline = time.monotonic() + timeout
    failures_before = harvester.source_errors + harvester.dropped
    while True:
        try:
            if harvester.level() >= target:
                return
        except QuantumRNGError as exc:
            log.warning("pool level unavailable at startup (%s)", exc.message)
            return
        failures = harvester.source_errors + harvester.dropped - failures_before
        if failures >= STARTUP_MAX_FAILURES or time.monotonic() >= deadline:
            why = harvester.last_error or "no blocks yet"
            log.warning("startup harvest incomplete (%s); the harvester retries", why)
            return
        time.sleep(_POLL_SECONDS)


def _start(ctx: Context) -> None:
    """Start the harvester thread, wait for first blocks and seed the DRBG (blocking)."""
    node, harvester = ctx.node, ctx.node.harvester
    harvester.start()
    node.log.start()
    if ctx.settings.beacon_period > 0:
        node.beacon.start()
    ctx.harvester = harvester
    ctx.metrics.watch(harvester)
    dashboard.start(ctx)
    if ctx.settings.source in LOCAL_SOURCE_KINDS:
        _await_blocks(harvester, STARTUP_BLOCKS, STARTUP_WAIT_SECONDS)
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
                dashboard.stop(ctx)
                ctx.harvester = None
                await to_thread.run_sync(node.close)

    app = Starlette(
        routes=starlette_routes(apis(ctx)),
        middleware=[Middleware(MetricsMiddleware, metrics=ctx.metrics)],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        lifespan=lifespan,
    )
    redirect_slashes_relatively(app.router)
    app.state.context = ctx
    return app
