"""The HTTP client and RemoteRandom, against a tiny v2 look-alike and against the real app."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from quantumrng.client import Client, RemoteRandom, error_from_response
from quantumrng.errors import (
    AuthenticationError,
    ConfigError,
    EntropyUnavailable,
    InvalidRequest,
    NotSeeded,
    PayloadTooLarge,
    PermissionDenied,
    QuantumRNGError,
    RateLimited,
    Unavailable,
    ValidationError,
)
from tests.conftest import make_settings

GOOD_KEY = "qrng_0123456789ab_" + "k" * 43
SOURCE = {"kind": "simulator", "quantum": False, "credited_bits": 0, "harvests": []}


class Fake:
    """State of the look-alike server: what it served, and what it should do next."""

    def __init__(self) -> None:
        self.served: list[bytes] = []
        self.counter = 0
        self.fail: tuple[int, dict[str, Any], dict[str, str]] | None = None
        self.fail_times: int | None = None  # None: every request fails while ``fail`` is set
        self.corrupt = False
        self.seen_auth: list[str | None] = []

    def draw(self, n: int) -> bytes:
        start, self.counter = self.counter, self.counter + -(-n // 64)
        seed = start.to_bytes(8, "big")
        out = b"".join(
            hashlib.sha512(seed + i.to_bytes(8, "big")).digest() for i in range(-(-n // 64))
        )[:n]
        self.served.append(out)
        return out


def fake_app(fake: Fake) -> Starlette:
    def answer(request: Request, data: Any) -> Response:
        mode = request.query_params.get("mode", "drbg")
        return JSONResponse({"data": data, "mode": mode, "source": SOURCE})

    def gate(request: Request) -> Response | None:
        fake.seen_auth.append(request.headers.get("authorization"))
        if fake.fail is not None and fake.fail_times != 0:
            if fake.fail_times is not None:
                fake.fail_times -= 1
            status, body, headers = fake.fail
            return JSONResponse(body, status, headers=headers)
        if request.query_params.get("mode") == "raw" and (
            request.headers.get("authorization") != f"Bearer {GOOD_KEY}"
        ):
            return JSONResponse(
                {"error": {"code": "forbidden", "message": "this API key lacks the 'raw' scope"}},
                403,
            )
        return None

    def n_of(request: Request) -> int:
        return int(request.query_params.get("n", "1")) + (1 if fake.corrupt else 0)

    async def bytes_(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        n, fmt = n_of(request), request.query_params.get("format", "base64")
        if n > 1 << 24:
            body = {"error": {"code": "payload_too_large", "message": "the largest is 16 MiB"}}
            return JSONResponse(body, 413)
        data = fake.draw(n)
        if fmt != "raw":
            return answer(request, data.hex())

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 65536):
                yield data[i : i + 65536]

        return StreamingResponse(
            chunks(),
            media_type="application/octet-stream",
            headers={"content-length": str(len(data))},
        )

    async def bits(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        n = n_of(request)
        return answer(request, "".join(str(b & 1) for b in fake.draw(n)))

    async def integers(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        q = request.query_params
        lo, hi = int(q["min"]), int(q["max"])
        values = [
            lo + int.from_bytes(fake.draw(32), "big") % (hi - lo + 1) for _ in range(n_of(request))
        ]
        big = not (lo > -(2**53) and hi < 2**53)
        return answer(request, [str(v) for v in values] if big else values)

    async def floats(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        n = n_of(request)
        return answer(
            request, [(int.from_bytes(fake.draw(7), "big") >> 3) * 2.0**-53 for _ in range(n)]
        )

    async def gaussians(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        mean = float(request.query_params.get("mean", "0"))
        return answer(request, [mean + 0.5] * n_of(request))

    async def uuids(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        return answer(
            request, [str(uuid.UUID(bytes=fake.draw(16), version=4)) for _ in range(n_of(request))]
        )

    async def strings(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        q = request.query_params
        length, alphabet = int(q["length"]), q["alphabet"]
        chars = "0123456789abcdef" if alphabet == "hex" else alphabet
        return answer(
            request,
            [
                "".join(chars[b % len(chars)] for b in fake.draw(length))
                for _ in range(n_of(request))
            ],
        )

    async def shuffle(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        lo, hi = int(request.query_params["min"]), int(request.query_params["max"])
        return answer(request, list(range(hi, lo - 1, -1)))

    async def status(request: Request) -> Response:
        return JSONResponse({"source": "simulator", "pool": {"blocks": 12}})

    async def usage(request: Request) -> Response:
        if (refused := gate(request)) is not None:
            return refused
        return JSONResponse({"principal": "ip:127.0.0.1", "status": "running", "bytes_left": None})

    routes = [
        Route("/api/v2/bytes", bytes_),
        Route("/api/v2/bits", bits),
        Route("/api/v2/integers", integers),
        Route("/api/v2/floats", floats),
        Route("/api/v2/gaussians", gaussians),
        Route("/api/v2/uuids", uuids),
        Route("/api/v2/strings", strings),
        Route("/api/v2/shuffle", shuffle),
        Route("/api/v2/status", status),
        Route("/api/v2/usage", usage),
    ]
    return Starlette(routes=routes)


def through(app: Starlette) -> httpx.MockTransport:
    """A sync transport that hands each request to the ASGI ``app``."""
    asgi = TestClient(app, base_url="http://qrng.test")
    return httpx.MockTransport(lambda request: _relay(asgi, request))


@pytest.fixture
def fake() -> Fake:
    return Fake()


@pytest.fixture
def qrng(fake: Fake) -> Iterator[Client]:
    with Client("http://qrng.test", transport=through(fake_app(fake))) as c:
        yield c


# -- values -----------------------------------------------------------------------------------


def test_bytes_are_the_raw_stream(qrng: Client, fake: Fake) -> None:
    data = qrng.bytes(100_000)
    assert data == fake.served[-1] and len(data) == 100_000
    assert qrng.bytes(0) == b""


def test_formats_come_back_as_python_values(qrng: Client, fake: Fake) -> None:
    bits = qrng.bits(77)
    assert len(bits) == 77 and set(bits) <= {"0", "1"}
    ints = qrng.integers(50, -3, 3)
    assert len(ints) == 50 and all(isinstance(v, int) and -3 <= v <= 3 for v in ints)
    assert qrng.last_source == SOURCE
    floats = qrng.floats(10)
    assert len(floats) == 10 and all(0 <= f < 1 for f in floats)
    assert qrng.gaussians(3, mean=10.0) == [10.5] * 3
    uuids = qrng.uuids(4)
    assert all(isinstance(u, uuid.UUID) and u.version == 4 for u in uuids)
    assert [len(s) for s in qrng.strings(3, length=9, alphabet="hex")] == [9, 9, 9]
    assert sorted(qrng.shuffle(5, 9)) == [5, 6, 7, 8, 9]
    assert qrng.status()["pool"] == {"blocks": 12}
    assert qrng.usage()["principal"] == "ip:127.0.0.1"


def test_big_integers_arrive_as_strings_and_leave_as_ints(qrng: Client) -> None:
    lo, hi = -(10**30), 10**30
    values = qrng.integers(20, lo, hi)
    assert all(type(v) is int and lo <= v <= hi for v in values)
    assert any(abs(v) > 2**53 for v in values)


def test_key_is_sent_as_bearer_and_never_shown(fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QRNG_API_KEY", raising=False)
    anonymous = Client("http://qrng.test", transport=through(fake_app(fake)))
    with pytest.raises(PermissionDenied, match="'raw' scope"):
        anonymous.bytes(16, mode="raw")
    assert fake.seen_auth[-1] is None
    keyed = Client("http://qrng.test", GOOD_KEY, transport=through(fake_app(fake)))
    assert len(keyed.bytes(16, mode="raw")) == 16
    assert fake.seen_auth[-1] == f"Bearer {GOOD_KEY}"
    assert GOOD_KEY not in repr(keyed)
    monkeypatch.setenv("QRNG_API_KEY", GOOD_KEY)
    from_env = Client("http://qrng.test", transport=through(fake_app(fake)))
    assert len(from_env.integers(2, 0, 1, mode="raw")) == 2


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_request", InvalidRequest),
        (422, "validation_error", ValidationError),
        (401, "unauthenticated", AuthenticationError),
        (403, "forbidden", PermissionDenied),
        (413, "payload_too_large", PayloadTooLarge),
        (429, "rate_limited", RateLimited),
        (503, "entropy_unavailable", EntropyUnavailable),
        (503, "not_seeded", NotSeeded),
        (503, "something_new", Unavailable),
        (418, "teapot", QuantumRNGError),
    ],
)
def test_errors_map_back_to_their_classes(
    fake: Fake, status: int, code: str, cls: type[QuantumRNGError]
) -> None:
    qrng = Client("http://qrng.test", transport=through(fake_app(fake)), retries=0)
    headers = {"Retry-After": "7", "RateLimit-Remaining": "0"}
    fake.fail = (status, {"error": {"code": code, "message": f"said {code}"}}, headers)
    for call in (lambda: qrng.bytes(10), lambda: qrng.integers(1, 0, 9), qrng.usage):
        with pytest.raises(QuantumRNGError) as err:
            call()
        assert type(err.value) is cls
        assert err.value.message == f"said {code}"
        assert err.value.retry_after == 7.0
        assert err.value.headers["ratelimit-remaining"] == "0"


def test_an_error_without_our_body_maps_by_status() -> None:
    err = error_from_response(429, "<html>busy</html>", {})
    assert type(err) is RateLimited and "429" in err.message and err.retry_after is None
    assert type(error_from_response(502, None, {"retry-after": "soon"})) is QuantumRNGError


def test_a_wrong_answer_is_refused_not_used(qrng: Client, fake: Fake) -> None:
    fake.corrupt = True  # one value, bit or byte too many
    for call in (
        lambda: qrng.bytes(100),
        lambda: qrng.bits(10),
        lambda: qrng.integers(3, 0, 5),
        lambda: qrng.uuids(2),
        lambda: qrng.strings(2, length=4, alphabet="hex"),
    ):
        with pytest.raises(QuantumRNGError, match="wrong shape"):
            call()


def test_an_unreachable_server_is_unavailable_after_the_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unavailable, match="cannot reach"):
        Client(f"http://127.0.0.1:{port}", GOOD_KEY, timeout=2, retries=0).bits(8)
    start = time.monotonic()
    with pytest.raises(Unavailable, match="cannot reach"):
        Client(f"http://127.0.0.1:{port}", GOOD_KEY, timeout=2, retries=2).bits(8)
    assert time.monotonic() - start >= 0.125 + 0.25  # two backoffs: at least half of each


# -- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limited"), (503, "not_seeded")])
def test_a_refusal_is_retried_after_its_retry_after_then_answered(
    qrng: Client, fake: Fake, status: int, code: str
) -> None:
    fake.fail = (status, {"error": {"code": code, "message": "later"}}, {"Retry-After": "0"})
    fake.fail_times = 3
    assert len(qrng.integers(4, 0, 9)) == 4  # the default: 3 retries
    assert len(fake.seen_auth) == 4 and fake.fail_times == 0
    fake.fail_times = 3
    assert len(qrng.bytes(100)) == 100  # a raw stream is retried the same way
    assert len(fake.seen_auth) == 8


def test_retries_are_bounded_and_the_last_error_is_raised(fake: Fake) -> None:
    fake.fail = (503, {"error": {"code": "not_seeded", "message": "no seed"}}, {"Retry-After": "0"})
    c = Client("http://qrng.test", transport=through(fake_app(fake)), retries=2)
    with pytest.raises(NotSeeded, match="no seed") as err:
        c.bits(8)
    assert err.value.retry_after == 0.0
    assert len(fake.seen_auth) == 3


def test_a_retry_after_above_the_cap_is_raised_at_once(fake: Fake) -> None:
    headers = {"Retry-After": "3600", "RateLimit-Remaining": "0"}
    fake.fail = (429, {"error": {"code": "rate_limited", "message": "quota"}}, headers)
    c = Client("http://qrng.test", transport=through(fake_app(fake)), max_retry_wait=5)
    start = time.monotonic()
    with pytest.raises(RateLimited) as err:
        c.usage()
    assert time.monotonic() - start < 2 and len(fake.seen_auth) == 1
    assert err.value.retry_after == 3600.0


def test_other_errors_are_not_retried(qrng: Client, fake: Fake) -> None:
    fake.fail = (403, {"error": {"code": "forbidden", "message": "no"}}, {"Retry-After": "0"})
    with pytest.raises(PermissionDenied):
        qrng.bits(8)
    assert len(fake.seen_auth) == 1


def test_bad_arguments_are_refused_locally(qrng: Client, fake: Fake) -> None:
    for call in (lambda: qrng.bits(0), lambda: qrng.bytes(-1), lambda: qrng.floats(True)):
        with pytest.raises(InvalidRequest):
            call()
    assert fake.served == []


# -- RemoteRandom -----------------------------------------------------------------------------


def test_remote_random_uses_each_fetched_byte_once_in_order(qrng: Client, fake: Fake) -> None:
    rnd = RemoteRandom(qrng, chunk_bytes=64)
    got = b"".join(rnd.randbytes(k) for k in (1, 5, 30, 28, 10, 64, 3))
    assert got == b"".join(fake.served)[: len(got)]
    assert [len(s) for s in fake.served] == [64, 64, 64]
    big = rnd.randbytes(1000)  # larger than a chunk: fetched on its own
    assert big == fake.served[-1]


def test_remote_random_is_a_random_random(qrng: Client) -> None:
    rnd = RemoteRandom(qrng, chunk_bytes=256)
    assert all(0.0 <= rnd.random() < 1.0 for _ in range(100))
    assert all(0 <= rnd.getrandbits(5) < 32 for _ in range(100))
    assert rnd.getrandbits(0) == 0
    assert 1 <= rnd.randint(1, 6) <= 6
    assert sorted(rnd.sample(range(10), 10)) == list(range(10))
    deck = list(range(52))
    rnd.shuffle(deck)
    assert sorted(deck) == list(range(52))
    with pytest.warns(RuntimeWarning, match="cannot be seeded"):
        rnd.seed(1234)
    with pytest.raises(NotImplementedError, match="no state"):
        rnd.getstate()


def test_remote_random_drops_its_buffer_in_a_forked_child(
    qrng: Client, fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    rnd = RemoteRandom(qrng, chunk_bytes=64)
    first = rnd.randbytes(8)
    parent_next = fake.served[0][8:16]
    child_pid = os.getpid() + 1
    monkeypatch.setattr(os, "getpid", lambda: child_pid)
    child = rnd.randbytes(8)
    assert child != parent_next and child == fake.served[1][:8]
    assert first == fake.served[0][:8]


# -- over real sockets ------------------------------------------------------------------------


class _Server(uvicorn.Server):
    """A uvicorn server that sets ``ready`` once it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.ready.set()


@pytest.fixture
def served(fake: Fake) -> Iterator[str]:
    """The look-alike app on uvicorn in a thread; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(fake_app(fake), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert server.ready.wait(30), "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_a_stream_over_a_socket(served: str, fake: Fake) -> None:
    with Client(served) as c:
        data = c.bytes(3 << 20)
        assert data == fake.served[-1]
        assert RemoteRandom(c).random() < 1.0


# -- against the real app ---------------------------------------------------------------------


def test_against_the_real_app(tmp_path: Path) -> None:
    from quantumrng.server.app import create_app
    from quantumrng.server.keys import KeyStore

    settings = make_settings(tmp_path, source="os", pool="memory", require_auth=True)
    keys = KeyStore(settings.keys_path)
    key, _ = keys.create("client", {"drbg"}, None, None)
    admin, _ = keys.create("operator", {"admin"}, None, None)
    with TestClient(create_app(settings)) as asgi:
        transport = httpx.MockTransport(lambda r: _relay(asgi, r))
        with pytest.raises(AuthenticationError, match="API key"):
            Client("http://qrng.test", "", transport=transport).bits(8)
        c = Client("http://qrng.test", key, transport=transport)
        assert len(c.bytes(100_000)) == 100_000
        assert len(c.bits(13)) == 13
        big = c.integers(5, 2**60, 2**61)
        assert all(type(v) is int and 2**60 <= v <= 2**61 for v in big)
        assert c.last_source is not None and c.last_source["kind"] == "os"
        assert len(c.floats(4)) == 4 and len(c.gaussians(4, 5.0, 0.1)) == 4
        assert all(u.version == 4 for u in c.uuids(3))
        assert [len(s) for s in c.strings(2, length=5, alphabet="hex")] == [5, 5]
        assert sorted(c.shuffle(1, 20)) == list(range(1, 21))
        assert c.usage()["principal"].startswith("key:")
        with pytest.raises(PermissionDenied):  # status needs the admin scope under auth
            c.status()
        assert "pool" in Client("http://qrng.test", admin, transport=transport).status()
        with pytest.raises(PermissionDenied):
            c.bytes(64, mode="raw")
        with pytest.raises(ValidationError):
            c.integers(1, 5, 1)
        with pytest.raises(PayloadTooLarge):
            c.bytes(settings.max_bytes + 1)
        rnd = RemoteRandom(c)
        assert 0 <= rnd.randrange(10**40) < 10**40
        values = [rnd.randrange(10**100) for _ in range(300)]
        assert len({v % 10 for v in values}) == 10  # every low digit: no float rounding
        assert len(set(rnd.sample(range(10**18), 30))) == 30


def _relay(asgi: TestClient, request: httpx.Request) -> httpx.Response:
    r = asgi.request(
        request.method, request.url.raw_path.decode("ascii"), headers=dict(request.headers)
    )
    return httpx.Response(r.status_code, headers=r.headers, content=r.content)


def test_a_missing_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CA bundle"):
        Client("https://127.0.0.1:5000", verify=str(tmp_path / "missing.pem"))


# -- signed answers, offline verification and the log --------------------------------------------


@pytest.fixture
def signing_client(tmp_path: Path) -> Iterator[tuple[Client, Any]]:
    """A client of the real app over a SQLite pool and ledger, and the app's node."""
    from tests.server.test_signed import signing_app

    served = signing_app(tmp_path)

    def relay(request: httpx.Request) -> httpx.Response:
        r = served.client.request(
            request.method,
            request.url.raw_path.decode("ascii"),
            headers=dict(request.headers),
            content=request.content,
        )
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    with Client("http://qrng.test", transport=httpx.MockTransport(relay)) as c:
        yield c, served.node
    served.node.close()


def test_signed_calls_leave_a_signed_object_that_verifies_offline(
    signing_client: tuple[Client, Any],
) -> None:
    from quantumrng.client import load_public_keys, verify

    c, _ = signing_client
    calls = [
        lambda: c.integers(3, 1, 6, signed=True),
        lambda: c.bits(9, signed=True),
        lambda: c.floats(2, signed=True),
        lambda: c.gaussians(2, 1.0, 2.0, signed=True),
        lambda: c.uuids(1, signed=True),
        lambda: c.strings(1, 4, signed=True),
        lambda: c.shuffle(1, 5, signed=True),
    ]
    keys = c.public_keys()
    pem_only = load_public_keys(keys[0].pem())
    for serial, call in enumerate(calls, start=1):
        call()
        signed = c.last_signed
        assert signed is not None and signed["result"]["serial"] == serial
        assert verify(signed, keys).valid and verify({"signed": signed}, pem_only).valid
        assert c.verify_remote(signed)["valid"] is True
        assert c.result(serial)["signed"] == signed
    c.floats(1)
    assert c.last_signed is None


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    field=st.sampled_from(
        [
            "data",
            "parameters",
            "serial",
            "key_serial",
            "completion_time",
            "provenance",
            "hashed_api_key",
            "key_id",
            "method",
            "signature",
        ]
    ),
    value=st.integers(-2, 2) | st.text(max_size=3),
)
def test_client_verify_refuses_any_tampered_field(
    signing_client: tuple[Client, Any], field: str, value: object
) -> None:
    from quantumrng.client import verify
    from quantumrng.signed import canonical

    c, _ = signing_client
    c.integers(2, 0, 9, signed=True)
    signed = json.loads(json.dumps(c.last_signed))
    target = signed if field == "signature" else signed["result"]
    if canonical(target[field]) == canonical(value):
        value = [value]
    target[field] = value
    assert not verify(signed, c.public_keys()).valid


def test_audit_checks_the_head_inclusion_and_consistency(
    signing_client: tuple[Client, Any],
) -> None:
    from quantumrng.client import audit_log
    from quantumrng.signed import canonical
    from quantumrng.transparency.verify import tree_head_data

    c, node = signing_client
    c.integers(1, 0, 9, signed=True)
    first_result = c.last_signed
    node.log.publish_head()
    keys = c.public_keys()
    first = c.audit([first_result], public_keys=keys)
    assert first.valid and first.head is not None and first.head["tree_size"] == 1
    c.floats(1, signed=True)
    second_result = c.last_signed
    node.log.publish_head()
    second = c.audit([first_result, second_result], previous=first.head, public_keys=keys)
    assert second.valid, second.reason
    assert second.head is not None and second.head["tree_size"] == 2

    key = node.signing_keys.current
    # a head signed by the service for a rewritten history of the same size
    forged = dict(first.head)
    forged["root_hash"] = "00" * 32
    forged["signature"] = base64.b64encode(
        key.sign(tree_head_data(forged["timestamp"], 1, bytes(32)))
    ).decode()
    rewritten = c.audit(previous=forged, public_keys=keys)
    assert not rewritten.valid and "rewritten" in rewritten.reason
    # a head of a larger tree than the log now holds: the log shrank
    bigger = {**second.head, "tree_size": 5}
    bigger["signature"] = base64.b64encode(
        key.sign(tree_head_data(bigger["timestamp"], 5, bytes.fromhex(bigger["root_hash"])))
    ).decode()
    shrank = c.audit(previous=bigger, public_keys=keys)
    assert not shrank.valid and "shrank" in shrank.reason
    # a result the service signed and kept out of the log
    withheld = json.loads(json.dumps(second_result))
    withheld["result"]["data"] = [0.5]
    withheld["signature"] = base64.b64encode(key.sign(canonical(withheld["result"]))).decode()
    missing = c.audit([withheld], public_keys=keys)
    assert not missing.valid and "not in the log" in missing.reason
    # a head that is not the service's
    head = c.log_head()
    assert not audit_log({**head, "tree_size": 1}, keys).valid
