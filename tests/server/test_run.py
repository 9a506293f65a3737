"""`qrng serve` wiring: flags to settings, uvicorn config, the TLS context, startup
failures as one line, the startup warning and the access log's redaction."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import resource
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

from quantumrng.config import Settings
from quantumrng.errors import ConfigError, Unavailable
from quantumrng.server import run
from quantumrng.server.protocol import ConnectionLimits, LimitedHttpToolsProtocol
from tests.conftest import make_settings


def test_uvicorn_config_uses_uvloop_our_httptools_protocol_and_pickles(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pool="memory", source="os", workers=2, port=6124)
    config: Any = run.build_config(settings)
    assert (config.loop, config.http) == ("uvloop", LimitedHttpToolsProtocol)
    assert (config.workers, config.port) == (2, 6124)
    assert config.ssl_context_factory is None and config.headers == []
    copy = pickle.loads(pickle.dumps(config))  # spawned workers receive it pickled
    assert copy.limits == config.limits and copy.http is LimitedHttpToolsProtocol


def test_the_connection_limits_come_from_the_settings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, pool="memory", max_header_bytes=4096, header_timeout=2.5,
        max_connections=500, max_client_connections=20, forwarded_allow_ips="10.0.0.1",
    )  # fmt: skip
    config: Any = run.build_config(settings)
    assert config.limits == ConnectionLimits(4096, 2.5, 500, 20, "10.0.0.1")


# -- proxy headers: only from the proxies configured -------------------------------------


def _client_seen(config: Any, peer: str, forwarded_for: str) -> str:
    """The client address the app sees through ``config`` for a request from ``peer``."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["client"][0])

    config.app, config.factory, config.log_config = app, False, None
    config.load()
    scope = {
        "type": "http", "scheme": "http", "client": (peer, 5555), "path": "/",
        "headers": [(b"x-forwarded-for", forwarded_for.encode())],
    }  # fmt: skip
    asyncio.run(config.loaded_app(scope, None, None))
    return seen[0]


def test_proxy_headers_are_ignored_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # uvicorn's own default must not apply
    config: Any = run.build_config(make_settings(tmp_path, pool="memory"))
    assert config.proxy_headers is False
    assert _client_seen(config, "127.0.0.1", "203.0.113.7") == "127.0.0.1"


def test_proxy_headers_are_read_only_from_the_configured_proxies(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pool="memory", forwarded_allow_ips=" 10.0.0.1, ::1 ")
    config: Any = run.build_config(settings)
    assert config.proxy_headers is True and config.forwarded_allow_ips == "10.0.0.1,::1"
    assert _client_seen(config, "10.0.0.1", "203.0.113.7") == "203.0.113.7"
    config = run.build_config(settings)
    assert _client_seen(config, "127.0.0.1", "203.0.113.7") == "127.0.0.1"


def test_a_forwarded_allow_ips_entry_that_is_no_address_is_a_config_error(
    tmp_path: Path,
) -> None:
    """The settings refuse it, so no server, worker or command ever sees it."""
    with pytest.raises(ConfigError, match=r"proxy\.lan"):
        make_settings(tmp_path, pool="memory", forwarded_allow_ips="10.0.0.1,proxy.lan")


# -- the open-file limit -----------------------------------------------------------------


def test_the_open_file_limit_is_raised_toward_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if soft > 256:
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        raised = run.raise_fd_limit(target=4096)
        expected = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
        assert raised == max(expected, min(soft, 256))
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == raised
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_open_file_limit_that_cannot_be_raised_is_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_: object) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(resource, "setrlimit", refuse)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (64, 1 << 16))
    assert run.raise_fd_limit() == -1


@pytest.fixture
def cert_files(tmp_path: Path) -> tuple[Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path


def test_tls_context_is_12_minimum_with_forward_secret_aead_ciphers(
    cert_files: tuple[Path, Path],
) -> None:
    ctx = run.tls_context(str(cert_files[0]), str(cert_files[1]))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    for cipher in ctx.get_ciphers():
        if cipher["protocol"] == "TLSv1.2":
            assert cipher["kea"] == "kx-ecdhe" and cipher["aead"], cipher["name"]


def test_tls_config_sends_hsts_and_builds_our_context(
    tmp_path: Path, cert_files: tuple[Path, Path]
) -> None:
    settings = make_settings(tmp_path, pool="memory", tls_cert=cert_files[0], tls_key=cert_files[1])
    config: Any = run.build_config(settings)
    assert ("strict-transport-security", run.HSTS) in config.headers
    ctx = config.ssl_context_factory(config, lambda: None)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    pickle.dumps(config.ssl_context_factory)


def test_a_bad_certificate_is_one_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="TLS certificate"):
        run.tls_context(str(bad), str(bad))


# -- startup failures: one line, non-zero exit, no banner --------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def qrng_serve(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    return subprocess.run(
        [sys.executable, "-m", "quantumrng", "serve", "--data-dir", str(tmp_path / "data"),
         "--source", "os", "--pool", "memory", *flags],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def assert_one_error_line(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    assert result.returncode == exit_code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("qrng: error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = qrng_serve(tmp_path, "--port", str(port))
    assert "in use" in assert_one_error_line(result, 1)


def test_an_invalid_host_is_one_line_and_exit_2(tmp_path: Path) -> None:
    line = assert_one_error_line(qrng_serve(tmp_path, "--host", "999.1.1.1"), 2)
    assert "999.1.1.1" in line


@pytest.mark.parametrize(
    ("which", "expected"),
    [("cert", "holds no PEM certificate"), ("key", "holds no usable PEM private key"),
     ("other_key", "does not match")],
)  # fmt: skip
def test_a_bad_tls_file_is_one_clear_line_before_any_banner(
    tmp_path: Path, cert_files: tuple[Path, Path], which: str, expected: str
) -> None:
    cert, key = cert_files
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    other = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(other))
    files = {"cert": (bad, key), "key": (cert, bad), "other_key": (cert, other)}[which]
    result = qrng_serve(tmp_path, "--tls-cert", str(files[0]), "--tls-key", str(files[1]))
    line = assert_one_error_line(result, 2)
    assert expected in line and "PEM lib" not in line


def test_a_corrupt_key_store_stops_a_server_that_needs_keys(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keys.sqlite3").write_bytes(b"garbage, not SQLite " * 100)
    line = assert_one_error_line(
        qrng_serve(tmp_path, "--require-auth", "--port", str(free_port())), 1
    )
    assert "key store" in line and "not a database" in line


def test_a_healthy_or_missing_key_store_passes_the_check(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pool="memory", require_auth=True)
    run._check_key_store(settings)  # no file: nothing to check, nothing created
    assert not settings.keys_path.exists()
    from quantumrng.server.keys import KeyStore

    KeyStore(settings.keys_path).close()
    run._check_key_store(settings)
    settings.keys_path.write_bytes(b"\0" * 4096)
    with pytest.raises(Unavailable, match="key store"):
        run._check_key_store(settings)


def test_bind_socket_errors_are_ours() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(Unavailable, match="in use"):
            run.bind_socket("127.0.0.1", taken.getsockname()[1])
    with pytest.raises(ConfigError, match="unknown host"):
        run.bind_socket("999.1.1.1", 0)
    sock = run.bind_socket("127.0.0.1", 0)
    assert sock.get_inheritable()
    sock.close()


# -- serve(): order of checks, banner and warning -----------------------------------------


@pytest.fixture
def fake_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[list[socket.socket]]:
    """uvicorn's Server.run records the sockets it was given and returns at once."""
    import uvicorn

    runs: list[list[socket.socket]] = []

    def fake_run(self: Any, sockets: list[socket.socket] | None = None) -> None:
        assert sockets is not None
        runs.append(sockets)
        self.started = True

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    return runs


OPEN_WARNING = "authentication is disabled on the non-loopback address"


def test_open_non_loopback_server_warns_once_at_startup(
    tmp_path: Path, fake_uvicorn: list[list[socket.socket]], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        tmp_path, pool="memory", source="os", host="0.0.0.0", port=free_port(), require_auth=False
    )
    announced: list[Settings] = []
    with caplog.at_level(logging.WARNING, logger="quantumrng.server.run"):
        run.serve(settings, announce=announced.append)
    warnings = [r for r in caplog.records if OPEN_WARNING in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "0.0.0.0" in warnings[0].getMessage()
    assert announced == [settings]
    (sockets,) = fake_uvicorn
    assert sockets[0].fileno() == -1  # bound by serve(), closed when uvicorn returned


@pytest.mark.parametrize(
    ("host", "require_auth"), [("127.0.0.1", False), ("0.0.0.0", True), ("0.0.0.0", None)]
)
def test_no_warning_on_loopback_or_with_auth(
    tmp_path: Path,
    fake_uvicorn: list[list[socket.socket]],
    caplog: pytest.LogCaptureFixture,
    host: str,
    require_auth: bool | None,
) -> None:
    settings = make_settings(
        tmp_path, pool="memory", source="os", host=host, port=free_port(), require_auth=require_auth
    )
    with caplog.at_level(logging.WARNING, logger="quantumrng.server.run"):
        run.serve(settings)
    assert not [r for r in caplog.records if OPEN_WARNING in r.getMessage()]


def test_nothing_is_announced_when_the_start_cannot_succeed(
    tmp_path: Path, fake_uvicorn: list[list[socket.socket]]
) -> None:
    announced: list[Settings] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = make_settings(tmp_path, pool="memory", port=taken.getsockname()[1])
        with pytest.raises(Unavailable):
            run.serve(settings, announce=announced.append)
    assert announced == [] and fake_uvicorn == []


# -- access log: query values and anything key-shaped never logged ------------------------


SECRET = "qrng_0123456789ab_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Vj"


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/api/v2/bytes", "/api/v2/bytes"),
        ("/api/v2/bytes?n=16", "/api/v2/bytes?n=<redacted>"),
        (f"/api/v2/bytes?api_key={SECRET}&n=1", "/api/v2/bytes?api_key=<redacted>&n=<redacted>"),
        (f"/api/v2/bytes?{SECRET}", "/api/v2/bytes?<redacted>"),
        (f"/x?{SECRET}=1", "/x?<redacted>"),
        ("/x?a=1&&b", "/x?a=<redacted>&<redacted>&<redacted>"),
    ],
)
def test_redact_query_keeps_names_and_drops_values(path: str, logged: str) -> None:
    assert run.redact_query(path) == logged


def _access_record(path: str) -> logging.LogRecord:
    """A record shaped like uvicorn's access log line."""
    return logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1,
        '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5555", "GET", path, "1.1", 200), None,
    )  # fmt: skip


def test_the_access_log_filter_hides_a_key_sent_in_the_url() -> None:
    from uvicorn.logging import AccessFormatter

    record = _access_record(f"/api/v2/bytes?n=8&api_key={SECRET}")
    assert run.RedactQuery().filter(record) is True
    formatted = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(
        record
    )
    assert SECRET not in formatted and SECRET not in record.getMessage()
    assert "GET /api/v2/bytes?n=<redacted>&api_key=<redacted> HTTP/1.1" in formatted
    assert "200" in formatted
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "plain %s", ("a?b=c",), None)
    assert run.RedactQuery().filter(other) and other.args == ("a?b=c",)


def test_the_filter_is_installed_once_on_uvicorns_access_logger() -> None:
    access = logging.getLogger("uvicorn.access")
    before = list(access.filters)
    try:
        run.install_access_log_filter()
        run.install_access_log_filter()
        assert sum(isinstance(f, run.RedactQuery) for f in access.filters) == 1
    finally:
        access.filters[:] = before


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        (f"/api/v2/bytes/{SECRET}", "/api/v2/bytes/<redacted>"),
        (f"/api/v2/bytes/{SECRET}/more?n=1", "/api/v2/bytes/<redacted>/more?n=<redacted>"),
        (f"/x/{SECRET[:20]}", "/x/<redacted>"),
        ("/x/qrng_0123", "/x/<redacted>"),
        (f"/x/{SECRET.replace('_', '%5F')}", "/x/<redacted>"),
        ("/x/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0", "/x/<redacted>.<redacted>"),
        ("/api/v1/qrng/get_num_bits/1001", "/api/v1/qrng/get_num_bits/1001"),
        ("/api/v2/a_rather_long_route_name_in_words", "/api/v2/a_rather_long_route_name_in_words"),
    ],
)
def test_a_key_or_token_anywhere_in_the_path_is_redacted(path: str, logged: str) -> None:
    record = _access_record(path)
    run.RedactQuery().filter(record)
    assert isinstance(record.args, tuple) and record.args[2] == logged


def test_a_key_in_the_client_field_is_redacted() -> None:
    record = _access_record("/health")
    record.args = (f"{SECRET}:0", "GET", "/health", "1.1", 200)  # X-Forwarded-For picks it
    run.RedactQuery().filter(record)
    assert SECRET not in record.getMessage() and "<redacted>:0" in record.getMessage()
