"""uvicorn's httptools protocol with limits a client without a key cannot get around.

Everything here runs before the app (so before authentication), per worker:

- **header size**: the request line and headers of a request may take
  ``max_header_bytes`` in all; bytes are counted as they arrive, before the
  parser buffers them, and more are answered 431 (RFC 6585 §5) and the
  connection closed. A request whose body shares a read with the next
  request's first bytes lets those bytes through uncounted: one read (at most
  256 KiB) beyond the limit, never more;
- **header time**: a connection must complete a request's headers within
  ``header_timeout`` of being opened, or of going idle after a response.
  The deadline is fixed when the timer is armed, so a client trickling a
  byte at a time is cut at the deadline (408, RFC 9110 §15.5.9) like an
  idle one. uvicorn's keep-alive timeout (5 s) still closes idle
  connections first; no timer runs while a request is being answered, so
  long streams are never cut;
- **connections**: a worker keeps at most ``max_connections`` open, and at
  most ``max_client_connections`` from one client (named as
  :func:`~quantumrng.server.access.client_principal` names it: an IPv6
  client by its /64). A connection beyond either is answered 503 and
  closed at once. Trusted proxies (``forwarded_allow_ips``) are exempt from
  the per-client cap: every client behind them shares their address.

The limits travel in :class:`LimitedConfig`, which spawned workers receive
pickled with the rest of uvicorn's config.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from quantumrng.config import Settings, trusted_networks
from quantumrng.errors import (
    ConfigError,
    QuantumRNGError,
    RequestHeadersTooLarge,
    RequestTimeout,
    Unavailable,
)
from quantumrng.server.access import client_principal
from quantumrng.server.errors import error_body

__all__ = [
    "ConnectionLimits",
    "LimitedConfig",
    "LimitedHttpToolsProtocol",
    "error_response",
]

RETRY_AFTER_SECONDS = 5  # how soon a client refused for too many connections may retry


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The per-worker limits on connections, from the hardening settings."""

    max_header_bytes: int = 16_384
    header_timeout: float = 10.0
    max_connections: int = 4096
    max_client_connections: int = 64
    trusted_proxies: str = ""  # ``forwarded_allow_ips``: exempt from the per-client cap

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        """Take the limits from ``settings``."""
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout,
            max_connections=settings.max_connections,
            max_client_connections=settings.max_client_connections,
            trusted_proxies=settings.forwarded_allow_ips,
        )


DEFAULT_LIMITS = ConnectionLimits()


def _is_trusted(host: str | None, spec: str) -> bool:
    if not host or not spec:
        return False
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    try:
        networks = trusted_networks(spec)
    except ConfigError:
        return False  # Settings refuse a bad entry; never trusted here
    return any(addr.version == net.version and addr in net for net in networks)


@functools.lru_cache(maxsize=8)
def error_response(status: int, code: str, message: str) -> tuple[bytes, bytes]:
    """The status line, and the rest of a ``Connection: close`` answer with our JSON body.

    The server's default headers (``date``, HSTS under TLS) go between the two.
    """
    body = json.dumps(error_body(code, message)).encode()
    head = [
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"cache-control: no-store\r\n",
    ]
    if status == 503:
        head.append(b"retry-after: %d\r\n" % RETRY_AFTER_SECONDS)
    return STATUS_LINE[status], b"".join([*head, b"connection: close\r\n\r\n", body])


def _answer(cls: type[QuantumRNGError], message: str) -> tuple[int, str, str]:
    return cls.status, cls.code, message


_TOO_LARGE = _answer(RequestHeadersTooLarge, "the request line and headers are too large")
_TIMEOUT = _answer(RequestTimeout, "the request headers took too long")
_BUSY = _answer(Unavailable, "too many connections; try again later")
_CLIENT_BUSY = _answer(Unavailable, "too many connections from this client; try again later")


class LimitedConfig(uvicorn.Config):
    """uvicorn's config with :class:`ConnectionLimits`, served by our protocol."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        kwargs.setdefault("http", LimitedHttpToolsProtocol)
        super().__init__(app, **kwargs)
        self.limits = limits


_client_counts: weakref.WeakKeyDictionary[ServerState, Counter[str]] = weakref.WeakKeyDictionary()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, held to :class:`ConnectionLimits` (see the module)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = config.limits if isinstance(config, LimitedConfig) else DEFAULT_LIMITS
        self.principal: str | None = None  # set once the connection is admitted
        self.header_bytes = 0  # of the request being read
        self.awaiting_headers = True
        self.header_timer: asyncio.TimerHandle | None = None
        self.header_deadline: float | None = None  # loop time by which headers must be in

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else None
        principal = client_principal(host)
        counts = _client_counts.setdefault(self.server_state, Counter())
        if len(self.connections) > self.limits.max_connections:
            self.connections.discard(self)
            self._refuse(*_BUSY)
        elif counts[principal] >= self.limits.max_client_connections and not _is_trusted(
            host, self.limits.trusted_proxies
        ):
            self.connections.discard(self)
            self._refuse(*_CLIENT_BUSY)
        else:
            counts[principal] += 1
            self.principal = principal
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._release()  # the websocket protocol owns the connection from here
        super().handle_websocket_upgrade()

    def _release(self) -> None:
        """Stop the timer and give back this connection's place in its client's count."""
        self._cancel_header_timer()
        if self.principal is not None:
            counts = _client_counts.get(self.server_state)
            if counts is not None:
                counts[self.principal] -= 1
                if counts[self.principal] <= 0:
                    del counts[self.principal]
            self.principal = None

    def data_received(self, data: bytes) -> None:
        """Feed the parser, counting header bytes before it can buffer them."""
        while data and self.principal is not None and not self.transport.is_closing():
            if not self.awaiting_headers:
                super().data_received(data)
                return
            room = self.limits.max_header_bytes - self.header_bytes
            if room <= 0:
                self._refuse(*_TOO_LARGE)
                return
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self.header_bytes += len(piece)
            super().data_received(piece)

    def on_headers_complete(self) -> None:
        self.awaiting_headers = False
        self.header_deadline = None  # the timer, if any, finds nothing to do
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.awaiting_headers = True
        self.header_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._idle():
            self._arm_header_timer()

    def _idle(self) -> bool:
        """True when no request is being answered (none parsed, or the last one done)."""
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        """Set the header deadline; one timer per connection follows it lazily.

        A keep-alive client sends many requests per timeout: moving a
        deadline costs nothing, where a new timer per request would cost a
        heap push and a cancel on the hot path.
        """
        self.header_deadline = self.loop.time() + self.limits.header_timeout
        if self.header_timer is None:
            self.header_timer = self.loop.call_at(self.header_deadline, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        self.header_deadline = None
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _header_timeout(self) -> None:
        self.header_timer = None
        deadline = self.header_deadline
        if deadline is None or self.transport.is_closing():
            return
        if self.loop.time() < deadline:  # the deadline moved on: follow it
            self.header_timer = self.loop.call_at(deadline, self._header_timeout)
            return
        self.header_deadline = None
        if not self._idle():
            return
        if self.awaiting_headers and self.header_bytes > 0:
            self._refuse(*_TIMEOUT)
        else:
            self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` (unless a response is under way) and close the connection."""
        self._cancel_header_timer()
        if self._idle():
            status_line, rest = error_response(status, code, message)
            defaults = (b"%s: %s\r\n" % pair for pair in self.server_state.default_headers)
            self.transport.write(b"".join([status_line, *defaults, rest]))
        self.transport.close()
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # a client that reads nothing cannot keep the socket
