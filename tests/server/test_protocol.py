"""The connection limits of `server/protocol.py`, driven through a fake transport.

Header bytes are counted before the parser buffers them and answered 431
before the app runs; the header timer closes idle and trickling connections
at a fixed deadline and never while a request is answered; connections
beyond the per-client and per-worker caps are refused at once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import pickle
import time
from collections.abc import Iterator
from typing import Any

import pytest
from uvicorn.server import ServerState

from quantumrng.config import trusted_networks
from quantumrng.errors import ConfigError
from quantumrng.server.protocol import (
    ConnectionLimits,
    LimitedConfig,
    LimitedHttpToolsProtocol,
)

_ports = itertools.count(40_000)


class FakeTransport(asyncio.Transport):
    """A transport that records what is written and reports its close to the protocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str) -> None:
        super().__init__()
        self.loop = loop
        self.peer = (host, next(_ports))
        self.written = bytearray()
        self.closed = False
        self.protocol: LimitedHttpToolsProtocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 5000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed:  # as a real transport, drop what comes after close
            self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def status(self) -> int | None:
        """The status of the first answer written, if any."""
        return int(self.written.split(b" ", 2)[1]) if self.written else None

    def error_code(self) -> str:
        body = bytes(self.written).split(b"\r\n\r\n", 1)[1]
        return str(json.loads(body)["error"]["code"])


class Harness:
    """One worker's server state and event loop, and an app that records its calls."""

    def __init__(self, limits: ConnectionLimits, *, app_seconds: float = 0.0) -> None:
        self.loop = asyncio.new_event_loop()
        self.calls: list[str] = []
        self.app_seconds = app_seconds
        self.config = LimitedConfig(
            self.app,
            limits=limits,
            proxy_headers=False,
            log_config=None,
            lifespan="off",
            interface="asgi3",
        )
        self.config.load()
        self.state = ServerState()

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls.append(scope["path"])
        if self.app_seconds:
            await asyncio.sleep(self.app_seconds)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"ok"})

    def connect(self, host: str = "127.0.0.1") -> tuple[LimitedHttpToolsProtocol, FakeTransport]:
        protocol = LimitedHttpToolsProtocol(
            config=self.config, server_state=self.state, app_state={}, _loop=self.loop
        )
        transport = FakeTransport(self.loop, host)
        transport.protocol = protocol
        protocol.connection_made(transport)
        return protocol, transport

    def run(self, seconds: float = 0.0) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))
        self.loop.run_until_complete(asyncio.sleep(0))  # let close callbacks run


@pytest.fixture
def make_harness() -> Iterator[Any]:
    made: list[Harness] = []

    def make(**limits: Any) -> Harness:
        app_seconds = limits.pop("app_seconds", 0.0)
        harness = Harness(ConnectionLimits(**limits), app_seconds=app_seconds)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.loop.close()


def request(header_bytes: int = 0, path: str = "/health") -> bytes:
    """A GET whose request line and headers take about ``header_bytes`` more than bare."""
    pad = b"x-pad: " + b"a" * header_bytes + b"\r\n" if header_bytes else b""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nhost: t\r\n" + pad + b"\r\n"


# -- header size ------------------------------------------------------------------------


def test_headers_beyond_the_limit_are_answered_431_before_the_app_runs(make_harness: Any) -> None:
    h = make_harness(max_header_bytes=16_384)
    protocol, transport = h.connect()
    protocol.data_received(request(20_000))
    h.run()
    assert transport.status() == 431 and transport.closed
    assert transport.error_code() == "request_header_fields_too_large"
    assert b"connection: close" in transport.written
    assert h.calls == []


def test_a_header_split_across_many_small_writes_is_still_counted(make_harness: Any) -> None:
    h = make_harness(max_header_bytes=4096)
    protocol, transport = h.connect()
    data = b"GET /health HTTP/1.1\r\nx-pad: " + b"a" * 100_000
    fed = 0
    for i in range(0, len(data), 7):
        if transport.closed:
            break
        protocol.data_received(data[i : i + 7])
        fed += 7
        assert protocol.header_bytes <= 4096
    h.run()
    assert transport.status() == 431 and h.calls == []
    assert fed <= 4096 + 7


def test_a_url_alone_beyond_the_limit_is_refused(make_harness: Any) -> None:
    h = make_harness(max_header_bytes=2048)
    protocol, transport = h.connect()
    protocol.data_received(b"GET /" + b"a" * 5000)
    h.run()
    assert transport.status() == 431 and h.calls == []


def test_headers_just_within_the_limit_reach_the_app(make_harness: Any) -> None:
    h = make_harness(max_header_bytes=16_384)
    protocol, transport = h.connect()
    data = request(0)
    data = request(16_384 - len(data) - len(b"x-pad: \r\n"))
    assert len(data) == 16_384
    protocol.data_received(data)
    h.run()
    assert transport.status() == 200 and h.calls == ["/health"]


def test_a_body_read_with_the_headers_is_not_counted_as_header(make_harness: Any) -> None:
    h = make_harness(max_header_bytes=2048)
    protocol, transport = h.connect()
    body = b"b" * 60_000
    protocol.data_received(
        b"POST /upload HTTP/1.1\r\nhost: t\r\ncontent-length: 60000\r\n\r\n" + body
    )
    h.run()
    assert transport.status() == 200 and h.calls == ["/upload"]


def test_each_keep_alive_request_gets_the_whole_allowance(make_harness: Any) -> None:
    h = make_harness(max_header_bytes=4096)
    protocol, transport = h.connect()
    for _ in range(3):
        protocol.data_received(request(3000))
        h.run()
    assert h.calls == ["/health"] * 3 and not transport.closed
    assert transport.written.count(b"HTTP/1.1 200") == 3


def test_an_oversized_request_behind_pipelined_ones_closes_the_connection(
    make_harness: Any,
) -> None:
    h = make_harness(max_header_bytes=4096)
    protocol, transport = h.connect()
    protocol.data_received(request(100) + request(100) + b"GET /" + b"a" * 10_000)
    assert transport.closed and protocol.header_bytes <= 4096
    h.run(0.05)
    assert b"HTTP/1.1 431" not in transport.written  # never inside an answer under way


# -- header time ------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout(
    make_harness: Any,
) -> None:
    h = make_harness(header_timeout=0.1)
    _, transport = h.connect()
    h.run(0.05)
    assert not transport.closed
    h.run(0.1)
    assert transport.closed and transport.written == b""


def test_a_trickled_request_is_cut_at_the_deadline_not_reset_by_each_byte(
    make_harness: Any,
) -> None:
    h = make_harness(header_timeout=0.3)
    protocol, transport = h.connect()
    data = request(200)
    start = time.monotonic()
    sent = 0
    while not transport.closed and time.monotonic() - start < 2.0:
        protocol.data_received(data[sent : sent + 1])
        sent += 1
        h.run(0.02)
    elapsed = time.monotonic() - start
    assert transport.closed and sent < len(data) and h.calls == []
    assert 0.25 <= elapsed < 0.6, elapsed
    assert transport.status() == 408 and transport.error_code() == "request_timeout"


def test_an_idle_keep_alive_connection_is_timed_again_after_its_response(
    make_harness: Any,
) -> None:
    h = make_harness(header_timeout=0.2)
    protocol, transport = h.connect()
    h.run(0.15)
    protocol.data_received(request())
    h.run(0.15)  # past the first deadline: the request's headers stopped that timer
    assert transport.status() == 200 and not transport.closed
    protocol.data_received(b"GET /hea")  # then the next request stalls
    h.run(0.25)
    assert transport.closed and h.calls == ["/health"]
    assert transport.written.count(b"HTTP/1.1 200") == 1 and b"HTTP/1.1 408" in transport.written


def test_no_header_timer_runs_while_a_request_is_answered(make_harness: Any) -> None:
    h = make_harness(header_timeout=0.2, app_seconds=0.5)
    protocol, transport = h.connect()
    protocol.data_received(request())
    deadline = time.monotonic() + 3.0
    while not transport.written and time.monotonic() < deadline:
        h.run(0.02)
    assert transport.status() == 200 and transport.written.endswith(b"ok")
    assert not transport.closed  # the timer starts again only now


# -- connection caps --------------------------------------------------------------------


def test_connections_beyond_the_per_client_cap_are_refused_at_once(make_harness: Any) -> None:
    h = make_harness(max_connections=100, max_client_connections=2)
    held = [h.connect("192.0.2.1") for _ in range(2)]
    _, refused = h.connect("192.0.2.1")
    assert refused.closed and refused.status() == 503 and b"retry-after:" in refused.written
    _, other = h.connect("192.0.2.2")
    assert not other.closed
    held[0][1].close()
    h.run()
    _, again = h.connect("192.0.2.1")
    assert not again.closed


def test_an_ipv6_client_is_counted_by_its_64(make_harness: Any) -> None:
    h = make_harness(max_connections=100, max_client_connections=2)
    h.connect("2001:db8:1:2::1")
    h.connect("2001:db8:1:2::ffff")
    _, refused = h.connect("2001:db8:1:2:abcd::9")
    _, other = h.connect("2001:db8:1:3::1")
    assert refused.closed and refused.status() == 503 and not other.closed


def test_connections_beyond_the_worker_cap_are_refused_at_once(make_harness: Any) -> None:
    h = make_harness(max_connections=3, max_client_connections=3)
    held = [h.connect(f"192.0.2.{i}") for i in range(1, 4)]
    protocol, refused = h.connect("192.0.2.9")
    assert refused.closed and refused.status() == 503
    protocol.data_received(request())
    h.run()
    assert h.calls == [] and len(h.state.connections) == 3
    held[0][1].close()
    h.run()
    _, admitted = h.connect("192.0.2.9")
    assert not admitted.closed and len(h.state.connections) == 3


def test_trusted_proxies_are_exempt_from_the_per_client_cap(make_harness: Any) -> None:
    h = make_harness(max_connections=100, max_client_connections=1, trusted_proxies="10.0.0.0/8")
    transports = [h.connect("10.1.2.3")[1] for _ in range(5)]
    assert not any(t.closed for t in transports)
    h.connect("192.0.2.1")
    assert h.connect("192.0.2.1")[1].closed


def test_forwarded_allow_ips_takes_addresses_networks_or_a_star() -> None:
    assert len(trusted_networks("127.0.0.1, ::1,10.0.0.0/8")) == 3
    assert len(trusted_networks("*")) == 2 and trusted_networks("") == ()
    with pytest.raises(ConfigError, match=r"'proxy\.example'"):
        trusted_networks("127.0.0.1,proxy.example")


def test_the_limits_travel_pickled_with_the_config() -> None:
    limits = ConnectionLimits(max_header_bytes=2048, header_timeout=1.5)
    config = LimitedConfig("quantumrng.x:app", limits=limits, log_config=None)
    copy = pickle.loads(pickle.dumps(config))
    assert copy.limits == limits and copy.http is LimitedHttpToolsProtocol
