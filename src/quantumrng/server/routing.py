"""Routing: every route is one :class:`Endpoint` of an :class:`Api` family.

An API family is a path prefix and a table of endpoints, each declared at its
path below the prefix. The app turns the families into Starlette routes and
``openapi`` turns the same families into ``/openapi.json``, so the document
cannot drift from what is served. A family is mounted by registering its
routes at prefix + path in one flat router: a Starlette ``Mount`` (a nested
router) measured about 5 µs more per request, a third of the in-process cost
of ``get_bits``, for no behaviour a family needs. Randomness endpoints are made by one factory
(``server.randomness.random_endpoint``); this module knows nothing of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_from_bytes

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

from quantumrng.server.params import Param

__all__ = [
    "RANDOM_ERRORS",
    "Api",
    "ApiRoute",
    "Endpoint",
    "Handler",
    "redirect_slashes_relatively",
    "starlette_routes",
]

Handler = Callable[[Request], Awaitable[Response]]

#: The errors any randomness route may answer.
RANDOM_ERRORS = (400, 401, 403, 409, 413, 422, 429, 503)

_PATH_SAFE = "/-._~!$&'()*+,;=:@"  # RFC 3986 pchar and "/", kept as they are
_QUERY_SAFE = _PATH_SAFE + "?%"  # a query string arrives percent-encoded already


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
    #: error bodies (type → schema) of a family that answers in its original's format
    #: (ANU, RANDOM.ORG, drand, pollen); empty: ours, ``{"error": {"code", "message"}}``
    error_content: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    description: str = ""
    secured: bool = False  # takes an API key (randomness, usage; status and metrics if private)
    key_required: bool = False  # a secured route answers 401 without one (auth is required)
    documented: bool = True
    methods: tuple[str, ...] = ("GET",)
    head: bool = True  # False: no HEAD (randomness would draw bytes only to drop them)


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
    """A Starlette route at an endpoint's full path (its family's prefix included),
    answering HEAD as GET unless the endpoint says otherwise."""

    def __init__(self, path: str, e: Endpoint) -> None:
        super().__init__(path, e.handler, methods=list(e.methods), name=e.operation_id)
        if not e.head and self.methods is not None:
            self.methods.discard("HEAD")


def starlette_routes(apis: Sequence[Api]) -> list[BaseRoute]:
    """Return the Starlette routes of ``apis``, each at its family's prefix + path."""
    return [ApiRoute(path, e) for api in apis for path, e in api.paths()]


def redirect_slashes_relatively(router: Router) -> None:
    """Redirect ``/route/`` to ``/route`` with a relative ``Location``, never built from Host.

    Starlette's own ``redirect_slashes`` writes an absolute URL from the
    ``Host`` header, so ``Host: evil.example`` sent the client elsewhere.
    RFC 9110 §10.2.2 allows a relative reference; this one is path-absolute
    (one leading ``/``, never ``//`` that would name another host) and keeps
    the query string. Runs only for paths no route matched.
    """
    router.redirect_slashes = False
    not_found = router.not_found

    async def fallback(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            target = path.rstrip("/")
            if target.startswith("/") and target[1:2] not in ("/", "\\"):
                probe = {**scope, "path": target}
                if any(route.matches(probe)[0] is not Match.NONE for route in router.routes):
                    location = quote(target, safe=_PATH_SAFE)
                    query: bytes = scope.get("query_string", b"")
                    if query:
                        location += "?" + quote_from_bytes(query, safe=_QUERY_SAFE)
                    await Response(status_code=307, headers={"location": location})(
                        scope, receive, send
                    )
                    return
        await not_found(scope, receive, send)

    router.default = fallback
