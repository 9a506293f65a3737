"""Routing: every route is one :class:`Endpoint` of an :class:`Api` family.

An API family is a path prefix and a table of endpoints. The app turns the
families into Starlette routes (one ``Mount`` per prefix) and ``openapi``
turns the same families into ``/openapi.json``, so the document cannot drift
from what is served. Randomness endpoints are made by one factory
(``server.randomness.random_endpoint``); this module knows nothing of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from quantumrng.server.params import Param

__all__ = ["RANDOM_ERRORS", "Api", "ApiRoute", "Endpoint", "Handler", "starlette_routes"]

Handler = Callable[[Request], Awaitable[Response]]

#: The errors any randomness route may answer.
RANDOM_ERRORS = (400, 401, 403, 413, 422, 429, 503)


@dataclass(frozen=True)
class Endpoint:
    """One route: where below its family's prefix, what it takes and answers, the handler."""

    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    params: tuple[Param, ...] = ()
    content: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # 200: type → schema
    errors: tuple[int, ...] = ()
    description: str = ""
    secured: bool = False  # takes an API key (randomness, usage)
    documented: bool = True
    methods: tuple[str, ...] = ("GET",)


@dataclass(frozen=True)
class Api:
    """An API family: endpoints served below one path prefix ("" for the root)."""

    prefix: str
    endpoints: tuple[Endpoint, ...]

    def paths(self) -> Iterator[tuple[str, Endpoint]]:
        """Yield each endpoint with its full path."""
        for e in self.endpoints:
            yield self.prefix + e.path, e


class ApiRoute(Route):
    """A Starlette route that knows its full path template (``template``), prefix
    included, for metrics labels; randomness answers no HEAD (it would draw bytes
    only to discard them)."""

    def __init__(self, template: str, e: Endpoint) -> None:
        super().__init__(e.path, e.handler, methods=list(e.methods), name=e.operation_id)
        self.template = template
        if e.secured and self.methods is not None:
            self.methods.discard("HEAD")


def starlette_routes(apis: Sequence[Api]) -> list[BaseRoute]:
    """Return the Starlette routes of ``apis``: a ``Mount`` per prefixed family."""
    routes: list[BaseRoute] = []
    for api in apis:
        family = [ApiRoute(path, e) for path, e in api.paths()]
        if api.prefix:
            routes.append(Mount(api.prefix, routes=list(family)))
        else:
            routes.extend(family)
    return routes
