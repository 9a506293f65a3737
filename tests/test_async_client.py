"""AsyncClient, the retry policy both clients share, the prefetch buffer, and both clients
and RemoteRandom against a real `qrng serve` process (rate limits for 429, a front that
answers 503 for the rest)."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from quantumrng import client as qclient
from quantumrng.client import (
    AsyncClient,
    Client,
    Failure,
    RemoteRandom,
    Reply,
    Request,
    RetryPolicy,
    parse_retry_after,
)
from quantumrng.errors import (
    EntropyUnavailable,
    NotSeeded,
    QuantumRNGError,
    RateLimited,
    Unavailable,
    UncreditedRaw,
)
from quantumrng.server.keys import KeyStore
from tests.conftest import make_settings
from tests.server.process import Server, run_server
from tests.test_client import SOURCE, Fake, fake_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> Fake:
    return Fake()


def asgi(fake: Fake) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=fake_app(fake))


class Counting(httpx.AsyncBaseTransport):
    """A real transport that records each request's path and its answer's status, and
    calls ``on_request`` as each is sent."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, on_request: Callable[[], None] | None = None
    ) -> None:
        self.inner = inner
        self.on_request = on_request
        self.paths: list[str] = []
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.on_request is not None:
            self.on_request()
        response = await self.inner.handle_async_request(request)
        self.statuses.append(response.status_code)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class SyncCounting(httpx.BaseTransport):
    """The blocking twin of :class:`Counting`."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.statuses.append(response.status_code)
        return response

    def close(self) -> None:
        self.inner.close()


# -- one set of operations, two clients ------------------------------------------------------

PUBLIC = [
    name
    for name, member in vars(Client).items()
    if not name.startswith("_") and callable(member) and name != "close"
]


def test_the_async_client_has_every_method_of_the_client_with_its_signature() -> None:
    assert len(PUBLIC) == 18
    for name in PUBLIC:
        method = getattr(AsyncClient, name)
        assert inspect.iscoroutinefunction(method), name
        assert inspect.signature(method) == inspect.signature(getattr(Client, name)), name
        assert method.__doc__ == getattr(Client, name).__doc__ and method.__doc__, name
        assert method.__qualname__ == f"AsyncClient.{name}"


def test_an_operation_is_a_plain_generator_of_requests() -> None:
    state = Client("http://qrng.test")
    op = qclient._integers(state, 3, 1, 6, signed=False)
    request = next(op)
    assert isinstance(request, Request)
    assert request == Request(
        "GET", "/api/v2/integers", {"n": "3", "min": "1", "max": "6", "mode": "drbg"}
    )
    body = json.dumps({"data": [1, 6, 2], "mode": "drbg", "source": SOURCE}).encode()
    with pytest.raises(StopIteration) as done:
        op.send(Reply(200, {}, body, request.path))
    assert done.value.value == [1, 6, 2] and state.last_source == SOURCE
    # a refusal asks for a sleep, then the same request again
    bits = qclient._bits(state, 8)
    again = next(bits)
    assert isinstance(again, Request)
    pause = bits.send(Reply(503, {"retry-after": "2"}, b"{}", again.path))
    assert isinstance(pause, qclient.Sleep) and 2.0 <= pause.seconds <= 2.2
    assert bits.send(None) == again


@pytest.mark.anyio
async def test_async_values_are_those_of_the_server(fake: Fake) -> None:
    async with AsyncClient("http://qrng.test", transport=asgi(fake)) as c:
        data = await c.bytes(100_000)
        assert data == fake.served[-1]
        assert await c.bytes(0) == b""
        ints = await c.integers(50, -3, 3)
        assert len(ints) == 50 and all(-3 <= v <= 3 for v in ints)
        assert c.last_source == SOURCE
        big = await c.integers(5, -(10**30), 10**30)
        assert all(type(v) is int for v in big)
        assert len(await c.bits(77)) == 77
        assert all(0 <= f < 1 for f in await c.floats(10))
        assert await c.gaussians(3, mean=10.0) == [10.5] * 3
        assert all(u.version == 4 for u in await c.uuids(4))
        assert [len(s) for s in await c.strings(3, length=9, alphabet="hex")] == [9, 9, 9]
        assert sorted(await c.shuffle(5, 9)) == [5, 6, 7, 8, 9]
        assert (await c.status())["pool"] == {"blocks": 12}
        assert (await c.usage())["principal"] == "ip:127.0.0.1"
        values = await asyncio.gather(*(c.integers(2, 0, 9) for _ in range(20)))
        assert len(values) == 20 and all(len(v) == 2 for v in values)


@pytest.mark.anyio
async def test_async_errors_and_wrong_answers_raise_as_in_the_client(fake: Fake) -> None:
    async with AsyncClient("http://qrng.test", transport=asgi(fake), retries=0) as c:
        fake.fail = (503, {"error": {"code": "not_seeded", "message": "no seed"}}, {})
        with pytest.raises(NotSeeded, match="no seed"):
            await c.bits(8)
        with pytest.raises(NotSeeded):
            await c.bytes(8)
        fake.fail = None
        fake.corrupt = True
        for call in (c.bytes(100), c.bits(10), c.integers(3, 0, 5), c.uuids(2)):
            with pytest.raises(QuantumRNGError, match="wrong shape"):
                await call
    with pytest.raises(RuntimeError, match="closed"):
        await c.bits(8)


# -- the retry policy ------------------------------------------------------------------------

NOW = 1_800_000_000.0


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(" 0 ", NOW) == 0.0
    date = datetime.fromtimestamp(NOW + 30, UTC)
    assert parse_retry_after(format_datetime(date, usegmt=True), NOW) == 30.0  # IMF-fixdate
    assert parse_retry_after(date.strftime("%A, %d-%b-%y %H:%M:%S GMT"), NOW) == 30.0  # RFC 850
    assert parse_retry_after(date.strftime("%a %b %d %H:%M:%S %Y"), NOW) == 30.0  # asctime
    assert parse_retry_after(format_datetime(date - timedelta(hours=1), usegmt=True), NOW) == 0.0
    for bad in (None, "", "soon", "-5", "nan", "inf"):
        assert parse_retry_after(bad, NOW) is None


def test_the_policy_honours_retry_after_within_the_cap_and_backs_off_without_it() -> None:
    policy = RetryPolicy(retries=3, max_retry_wait=10.0, backoff=0.5)

    def refused(status: int, after: str | None = None) -> Reply:
        return Reply(status, {"retry-after": after} if after is not None else {}, b"", "/")

    assert policy.delay(0, refused(429, "4"), now=NOW, jitter=0.0) == 4.0
    assert policy.delay(0, refused(503, "4"), now=NOW, jitter=0.999) == pytest.approx(4.4, 0.01)
    assert policy.delay(0, refused(503, "10"), now=NOW, jitter=0.999) == 10.0  # never above cap
    assert policy.delay(0, refused(429, "11"), now=NOW, jitter=0.0) is None  # give up at once
    assert policy.delay(3, refused(429, "1"), now=NOW, jitter=0.0) is None  # retries spent
    waits = [policy.delay(a, refused(503), now=NOW, jitter=j) for a in range(3) for j in (0, 0.99)]
    assert waits == pytest.approx([0.25, 0.4975, 0.5, 0.995, 1.0, 1.99])
    assert RetryPolicy(retries=9, max_retry_wait=2.0).delay(8, refused(503), now=NOW, jitter=1) == 2
    for status in (400, 403, 404, 413, 500, 502):
        assert policy.delay(0, refused(status, "1"), now=NOW, jitter=0.0) is None
    assert policy.delay(0, Failure("refused", sent=False), now=NOW, jitter=0.0) == 0.25
    assert policy.delay(0, Failure("read timeout", sent=True), now=NOW, jitter=0.0) is None
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(max_retry_wait=float("inf"))


@pytest.mark.anyio
async def test_async_retries_a_refusal_then_answers(fake: Fake) -> None:
    fake.fail = (429, {"error": {"code": "rate_limited", "message": "slow"}}, {"Retry-After": "0"})
    fake.fail_times = 3
    async with AsyncClient("http://qrng.test", transport=asgi(fake)) as c:
        assert len(await c.bits(8)) == 8
        assert len(fake.seen_auth) == 4
        fake.fail_times = 4
        with pytest.raises(RateLimited, match="slow"):
            await c.bits(8)
        assert len(fake.seen_auth) == 8


# -- prefetch --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_prefetched_bytes_are_served_once_in_order_and_zeroed(fake: Fake) -> None:
    async with AsyncClient("http://qrng.test", transport=asgi(fake), prefetch=256) as c:
        got = [await c.read(32) for _ in range(40)]
        if c._refill_task is not None:
            await c._refill_task
        fetched = b"".join(fake.served)
        assert b"".join(got) == fetched[: 32 * 40]
        assert all(len(s) == 256 for s in fake.served)
        assert len(fake.served) <= 40 * 32 // 256 + 2  # refills of 256, not one per read
        for buf in c._buffers:
            assert not any(buf.view[: buf.pos])  # what was read is zero
        assert c.prefetched == sum(buf.left for buf in c._buffers)
        big = await c.read(1000)  # above the prefetch size: its own request
        assert big == fake.served[-1]
    assert c.prefetched == 0


@pytest.mark.anyio
async def test_without_prefetch_each_read_is_a_request(fake: Fake) -> None:
    async with AsyncClient("http://qrng.test", transport=asgi(fake)) as c:
        assert [len(await c.read(16)) for _ in range(5)] == [16] * 5
        assert [len(s) for s in fake.served] == [16] * 5


@pytest.mark.anyio
async def test_a_failed_refill_raises_from_the_next_read(fake: Fake) -> None:
    async with AsyncClient("http://qrng.test", transport=asgi(fake), prefetch=256, retries=0) as c:
        await c.read(32)  # the first fill
        first = c._refill_task
        fake.fail = (503, {"error": {"code": "not_seeded", "message": "no seed"}}, {})
        while c._refill_task is first:
            await c.read(32)  # until under half: then a refill starts, and fails
        task = c._refill_task
        assert task is not None
        await task
        assert c.prefetched >= 32  # bytes are left, but the failure comes first
        with pytest.raises(NotSeeded, match="no seed"):
            await c.read(32)
        fake.fail = None
        assert len(await c.read(32)) == 32  # the next read goes on, and refills


@pytest.mark.anyio
async def test_closing_cancels_a_running_refill_and_zeroes_the_buffer() -> None:
    release = asyncio.Event()
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls > 1:
            await release.wait()  # the refill hangs
        return httpx.Response(200, content=b"\x5a" * int(request.url.params["n"]))

    c = AsyncClient("http://qrng.test", transport=httpx.MockTransport(handler), prefetch=64)
    assert await c.read(40) == b"\x5a" * 40
    await asyncio.sleep(0.05)
    task = c._refill_task
    assert task is not None and not task.done() and calls == 2
    buffers = list(c._buffers)
    waiting = asyncio.create_task(c.read(64))  # more than is left: waits for the refill
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await c.aclose()
    assert task.cancelled() and c.prefetched == 0
    with pytest.raises(RuntimeError, match="closed"):
        await waiting
    assert all(not any(buf.view) for buf in buffers)
    with pytest.raises(RuntimeError, match="closed"):
        await c.read(1)


# -- a real server process -------------------------------------------------------------------


class Keys:
    limited: str  # 1 request/s, burst 1
    daily: str  # 64 bytes a day


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("async-client")
    store = KeyStore(make_settings(tmp / "data").keys_path)
    keys.limited, _ = store.create("limited", {"drbg"}, 1.0, None, burst=1)
    keys.daily, _ = store.create("daily", {"drbg"}, None, 64)
    with run_server(tmp) as running:
        yield running


@pytest.mark.anyio
async def test_async_client_against_a_real_server(server: Server) -> None:
    async with AsyncClient(server.base_url) as c:
        assert len(await c.bytes(100_000)) == 100_000
        ints = await asyncio.gather(*(c.integers(3, 1, 6) for _ in range(30)))
        assert all(1 <= v <= 6 for batch in ints for v in batch)
        assert c.last_source is not None and c.last_source["kind"] == "os"
        big = await c.integers(4, 2**200, 2**201)
        assert all(2**200 <= v <= 2**201 for v in big)
        assert len(await c.bits(13)) == 13 and len(await c.uuids(2)) == 2
        assert sorted(await c.shuffle(1, 30)) == list(range(1, 31))
        data, signed = await c.signed_bytes(32)
        assert len(data) == 32
        assert qclient.verify(signed, await c.public_keys()).valid
        assert (await c.verify_remote(signed))["valid"] is True
        with pytest.raises(UncreditedRaw, match="no credit"):
            await c.bytes(64, mode="raw")


@pytest.mark.anyio
async def test_prefetch_refills_in_the_background_from_a_real_server(server: Server) -> None:
    levels: list[int] = []
    holder: list[AsyncClient] = []
    transport = Counting(httpx.AsyncHTTPTransport(), lambda: levels.append(holder[0].prefetched))
    async with AsyncClient(server.base_url, transport=transport, prefetch=4096) as c:
        holder.append(c)
        reads = [await c.read(32) for _ in range(400)]  # 12,800 bytes
        assert len(set(reads)) == 400
    assert 3 <= len(transport.paths) <= 5 and set(transport.paths) == {"/api/v2/bytes"}
    assert levels[0] == 0 and all(0 < level < 2048 for level in levels[1:])  # never ran dry


@pytest.mark.anyio
async def test_a_rate_limited_key_is_retried_after_retry_after(server: Server, keys: Keys) -> None:
    transport = Counting(httpx.AsyncHTTPTransport())
    async with AsyncClient(server.base_url, keys.limited, transport=transport) as c:
        await c.bits(8)
        start = time.monotonic()
        assert len(await c.bits(8)) == 8  # refused (Retry-After: 1), waited, answered
        elapsed = time.monotonic() - start
    assert transport.statuses == [200, 429, 200]
    assert 1.0 <= elapsed < 5.0
    await asyncio.sleep(1.0)  # the bucket refills
    transport = Counting(httpx.AsyncHTTPTransport())
    async with AsyncClient(
        server.base_url, keys.limited, transport=transport, max_retry_wait=0.5
    ) as c:
        with pytest.raises(RateLimited) as err:  # one answered, the next refused at once
            for _ in range(2):
                await c.bits(8)
    assert err.value.retry_after is not None and err.value.retry_after >= 1
    assert transport.statuses == [200, 429]


def test_the_blocking_client_retries_a_rate_limit_the_same_way(server: Server, keys: Keys) -> None:
    transport = SyncCounting()
    with Client(server.base_url, keys.limited, transport=transport) as c:
        time.sleep(1.0)  # a full bucket, whatever the tests before did
        start = time.monotonic()
        assert len(c.integers(2, 0, 9)) == 2 and len(c.integers(2, 0, 9)) == 2
        assert time.monotonic() - start >= 1.0
    assert transport.statuses == [200, 429, 200]


@pytest.mark.anyio
async def test_a_spent_daily_quota_is_not_waited_for(server: Server, keys: Keys) -> None:
    now = datetime.now(UTC)
    if (now.replace(hour=23, minute=59, second=0) - now).total_seconds() < 0:
        pytest.skip("the quota resets within a minute")
    transport = Counting(httpx.AsyncHTTPTransport())
    async with AsyncClient(server.base_url, keys.daily, transport=transport) as c:
        assert len(await c.bytes(64)) == 64
        start = time.monotonic()
        with pytest.raises(RateLimited) as err:
            await c.bytes(64)
        assert time.monotonic() - start < 2.0
    assert err.value.retry_after is not None and err.value.retry_after > 60
    assert transport.statuses == [200, 429]


def test_remote_random_draws_from_a_real_server(server: Server) -> None:
    with Client(server.base_url) as c:
        rnd = RemoteRandom(c, chunk_bytes=1024)
        values = [rnd.randrange(10**100) for _ in range(200)]
        assert all(0 <= v < 10**100 for v in values) and len(set(values)) == 200
        assert len({v % 10 for v in values}) == 10  # the low digits vary: no float rounding
        deck = list(range(52))
        rnd.shuffle(deck)
        assert sorted(deck) == list(range(52))
        assert len(set(rnd.sample(range(10**18), 20))) == 20
        assert all(0.0 <= rnd.random() < 1.0 for _ in range(100))
        with pytest.warns(RuntimeWarning, match="cannot be seeded"):
            rnd.seed(7)
        with pytest.raises(NotImplementedError):
            rnd.setstate(None)


# -- a front that refuses before it forwards to the real server -----------------------------


class Front:
    """An HTTP/1.1 server on loopback that answers each request from ``script`` while it
    lasts (status, headers), then forwards to ``upstream``; it counts connections and
    requests."""

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream)
        self.script: list[tuple[int, dict[str, str]]] = []
        self.connections = 0
        self.requests = 0
        self.times: list[float] = []
        self.lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with front.lock:
                    front.connections += 1

            def do_GET(self) -> None:
                with front.lock:
                    front.requests += 1
                    front.times.append(time.monotonic())
                    step = front.script.pop(0) if front.script else None
                if step is not None:
                    status, headers = step
                    code = {429: "rate_limited", 503: "entropy_unavailable"}[status]
                    message = "the pool is empty" if status == 503 else "slow down"
                    self.reply(status, headers, {"error": {"code": code, "message": message}})
                    return
                answer = front.upstream.get(self.path)
                kept = {
                    k: v
                    for k, v in answer.headers.items()
                    if k.lower() in ("content-type", "retry-after")
                }
                self.reply(answer.status_code, kept, answer.content)

            def reply(self, status: int, headers: dict[str, str], body: Any) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if not isinstance(body, bytes):
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.upstream.close()


@pytest.fixture
def front(server: Server) -> Iterator[Front]:
    f = Front(server.base_url)
    yield f
    f.close()


@pytest.mark.anyio
async def test_one_connection_serves_every_request(front: Front) -> None:
    async with AsyncClient(front.url) as c:
        for _ in range(30):
            await c.integers(1, 0, 9)
        front.script = [(503, {"Retry-After": "0"})] * 2
        assert len(await c.bytes(1000)) == 1000  # a refusal keeps the connection too
        await c.status()
    assert front.requests == 34 and front.connections == 1
    with Client(front.url) as sync:
        for _ in range(10):
            sync.bits(8)
    assert front.requests == 44 and front.connections == 2


@pytest.mark.anyio
async def test_a_503_is_retried_after_its_retry_after_seconds_and_dates(front: Front) -> None:
    front.script = [(503, {"Retry-After": "1"}), (503, {"Retry-After": "0"})]
    async with AsyncClient(front.url) as c:
        assert len(await c.integers(5, 1, 6)) == 5
        assert front.requests == 3
        assert front.times[1] - front.times[0] >= 1.0  # waited as told
        date = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
        front.script = [(429, {"Retry-After": date})]
        start = time.monotonic()
        assert len(await c.bits(8)) == 8
        assert 1.0 <= time.monotonic() - start < 4.0  # the date, to the second
        assert front.requests == 5


@pytest.mark.anyio
async def test_retries_stop_at_the_bound_and_raise_the_servers_error(front: Front) -> None:
    front.script = [(503, {"Retry-After": "0"})] * 10
    async with AsyncClient(front.url, retries=2) as c:
        with pytest.raises(EntropyUnavailable, match="pool is empty"):
            await c.floats(3)
    assert front.requests == 3
    front.script = [(503, {})] * 10  # no Retry-After: jittered exponential backoff
    start = time.monotonic()
    with Client(front.url, retries=3) as sync, pytest.raises(EntropyUnavailable):
        sync.floats(3)
    assert front.requests == 7
    assert time.monotonic() - start >= 0.125 + 0.25 + 0.5
    front.script = [(503, {"Retry-After": "30"})]
    start = time.monotonic()
    async with AsyncClient(front.url, max_retry_wait=5) as c:
        with pytest.raises(Unavailable) as err:
            await c.floats(3)
    assert time.monotonic() - start < 2.0 and err.value.retry_after == 30.0
    assert front.requests == 8
