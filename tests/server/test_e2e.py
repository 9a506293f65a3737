"""End to end: the real `qrng serve` process over HTTP and HTTPS.

The prototype's v1 shape, bulk streaming in constant memory, a stream that
stops when its client leaves, TLS 1.3 and 1.2 accepted and 1.1 refused with
HSTS, and 64 concurrent clients against two workers: no error and no 16-byte
chunk repeated anywhere in the output.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.server.process import Server, run_server

pytestmark = pytest.mark.slow

CHUNK = 16  # bytes: the unit in which repeats are looked for


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("e2e"), "--workers", "2") as s:
        yield s


def test_v1_shape_over_http(server: Server) -> None:
    with httpx.Client(base_url=server.base_url) as c:
        r = c.get("/api/v1/qrng/get_bits")
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        assert list(r.json()) == ["512_qrng_bits"]
        assert len(base64.b64decode(r.json()["512_qrng_bits"])) == 64
        r = c.get("/api/v1/qrng/get_num_bits/1001")
        assert len(base64.b64decode(r.json()["qrng_bits"])) == 126
        bad = c.get("/api/v1/qrng/get_num_bits/-1")
        assert bad.status_code == 422 and set(bad.json()["error"]) == {"code", "message"}
        assert "strict-transport-security" not in r.headers  # no TLS, no HSTS
        assert c.get("/docs").status_code == 200
        assert c.get("/metrics").status_code == 200


def test_raw_stream_of_64_mib_in_constant_memory(server: Server) -> None:
    n = 64 << 20
    url = server.base_url + "/api/v2/bytes"
    with httpx.Client(timeout=60) as c:
        c.get(url, params={"n": 4 << 20, "format": "raw"})  # warm both workers' allocators
        c.get(url, params={"n": 4 << 20, "format": "raw"})
        before = {pid: _peak_rss_kib(pid) for pid in server.processes()}
        received = 0
        first = b""
        with c.stream("GET", url, params={"n": n, "format": "raw"}) as r:
            assert r.status_code == 200
            assert r.headers["content-length"] == str(n)
            for part in r.iter_bytes():
                if len(first) < 1 << 20:
                    first += part[: (1 << 20) - len(first)]
                received += len(part)
        after = {pid: _peak_rss_kib(pid) for pid in before}
    assert received == n
    growth_mib = max(after[p] - before[p] for p in before) / 1024
    assert growth_mib < 24, f"peak RSS grew by {growth_mib:.1f} MiB streaming 64 MiB"
    chunks = {first[i : i + CHUNK] for i in range(0, len(first), CHUNK)}
    assert len(chunks) == len(first) // CHUNK


def _drbg_bytes(c: httpx.Client) -> dict[int, int]:
    """DRBG output so far per worker pid, by asking on fresh connections."""
    seen: dict[int, int] = {}
    for _ in range(40):
        body = c.get("/api/v2/status", headers={"connection": "close"}).json()
        seen[body["server"]["pid"]] = body["engine"]["drbg_bytes"]
    return seen


def _settled_drbg_bytes(c: httpx.Client, timeout: float = 60.0) -> dict[int, int]:
    """DRBG output per worker once no worker's count grows between two looks 0.5 s apart."""
    deadline = time.monotonic() + timeout
    last = _drbg_bytes(c)
    while time.monotonic() < deadline:
        time.sleep(0.5)  # the sampling interval: a running stream generates MiB in it
        now = _drbg_bytes(c)
        if now == last:
            return now
        last = now
    raise AssertionError(f"DRBG output still growing after {timeout:.0f} s: {last}")


def test_a_stream_stops_when_its_client_leaves(server: Server) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        before = _settled_drbg_bytes(c)
        with c.stream("GET", "/api/v2/bytes", params={"n": 1 << 30, "format": "raw"}) as r:
            got = 0
            for part in r.iter_bytes():
                got += len(part)
                if got >= 4 << 20:
                    break
        after = _settled_drbg_bytes(c)
        assert c.get("/health").status_code == 200
    spent = sum(after.get(pid, 0) - before.get(pid, 0) for pid in after)
    assert spent < 256 << 20, f"{spent} DRBG bytes generated for a 1 GiB stream left after 4 MiB"


def test_one_harvester_per_node(server: Server) -> None:
    harvesting: dict[int, bool] = {}
    with httpx.Client(base_url=server.base_url) as c:
        for i in range(200):
            body = c.get("/api/v2/status", headers={"connection": "close"}).json()
            h = body["harvester"]
            harvesting[body["server"]["pid"]] = h["active"] and h["running"]
            if len(harvesting) == 2 and i >= 20:
                break
    assert len(harvesting) == 2, "expected answers from both workers"
    assert sum(harvesting.values()) == 1, harvesting


async def _client(base_url: str, requests: int, out: list[bytes], errors: list[str]) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as c:
        for i in range(requests):
            if i % 3:
                r = await c.get("/api/v1/qrng/get_bits")
                if r.status_code == 200:
                    out.append(base64.b64decode(r.json()["512_qrng_bits"]))
            else:
                r = await c.get("/api/v2/bytes", params={"n": 1024, "format": "raw"})
                if r.status_code == 200:
                    out.append(r.content)
            if r.status_code != 200:
                errors.append(f"{r.status_code} {r.text[:200]}")


def test_64_concurrent_clients_see_no_error_and_no_repeat(server: Server) -> None:
    clients, per_client = 64, 50
    out: list[bytes] = []
    errors: list[str] = []

    async def main() -> None:
        await asyncio.gather(
            *(_client(server.base_url, per_client, out, errors) for _ in range(clients))
        )

    asyncio.run(main())
    assert errors == []
    assert len(out) == clients * per_client
    chunks = [data[i : i + CHUNK] for data in out for i in range(0, len(data), CHUNK)]
    assert len(chunks) > 50_000
    assert len(set(chunks)) == len(chunks), "a 16-byte chunk was served twice"


# --- TLS -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    verify = ssl.create_default_context()
    ca.configure_trust(verify)
    with run_server(
        tmp, "--tls-cert", str(cert_path), "--tls-key", str(key_path), verify=verify
    ) as s:
        yield s


def _client_context(ca: trustme.CA, lo: ssl.TLSVersion, hi: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(ctx)
    ctx.minimum_version, ctx.maximum_version = lo, hi
    return ctx


def _handshake(server: Server, ctx: ssl.SSLContext) -> tuple[str | None, str]:
    host, port = server.base_url.removeprefix("https://").split(":")
    raw = socket.create_connection((host, int(port)), timeout=10)
    with raw, ctx.wrap_socket(raw, server_hostname=host) as tls:
        cipher = tls.cipher()
        return tls.version(), cipher[0] if cipher else ""


@pytest.mark.parametrize(
    ("version", "name"), [(ssl.TLSVersion.TLSv1_3, "TLSv1.3"), (ssl.TLSVersion.TLSv1_2, "TLSv1.2")]
)
def test_tls_13_and_12_are_accepted_with_hsts(
    tls_server: Server, ca: trustme.CA, version: ssl.TLSVersion, name: str
) -> None:
    ctx = _client_context(ca, version, version)
    got, cipher = _handshake(tls_server, ctx)
    assert got == name
    if name == "TLSv1.2":
        assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)
    r = httpx.get(tls_server.base_url + "/api/v1/qrng/get_bits", verify=ctx)
    assert r.status_code == 200
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_tls_prefers_13(tls_server: Server, ca: trustme.CA) -> None:
    ctx = _client_context(ca, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.MAXIMUM_SUPPORTED)
    assert _handshake(tls_server, ctx)[0] == "TLSv1.3"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_11_is_refused(tls_server: Server, ca: trustme.CA) -> None:
    ctx = _client_context(ca, ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer it: the server must say no
    with pytest.raises(ssl.SSLError):
        _handshake(tls_server, ctx)


def test_weak_tls_12_ciphers_are_refused(tls_server: Server, ca: trustme.CA) -> None:
    ctx = _client_context(ca, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("AES128-SHA:AES256-SHA:ECDHE-RSA-AES128-SHA")  # no forward secrecy or CBC
    with pytest.raises(ssl.SSLError):
        _handshake(tls_server, ctx)
