"""`qrng serve` wiring: flags to settings, uvicorn config, the TLS context."""

from __future__ import annotations

import os
import pickle
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner

from quantumrng.cli import cli
from quantumrng.config import Settings
from quantumrng.errors import ConfigError
from quantumrng.server import run
from tests.conftest import make_settings


@pytest.fixture
def served_settings(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    calls: list[Settings] = []

    def fake_serve(settings: Settings, *, access_log: bool = False) -> None:
        calls.append(settings)

    monkeypatch.setattr(run, "serve", fake_serve)
    return calls


def test_serve_flags_override_the_group_settings(
    tmp_path: Path, served_settings: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("QRNG_")]:
        monkeypatch.delenv(key)
    result = CliRunner().invoke(
        cli,
        ["--source", "os", "--data-dir", str(tmp_path), "serve", "--port", "6123",
         "--workers", "3", "--no-require-auth", "--pool", "memory"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (s,) = served_settings
    assert (s.source, s.port, s.workers, s.require_auth, s.pool) == ("os", 6123, 3, False, "memory")
    assert s.data_dir == tmp_path and s.host == "127.0.0.1"


def test_uvicorn_config_uses_uvloop_httptools_and_a_picklable_factory(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, pool="memory", source="os", workers=2, port=6124)
    config: Any = run.build_config(settings)
    assert (config.loop, config.http) == ("uvloop", "httptools")
    assert (config.workers, config.port) == (2, 6124)
    assert config.ssl_context_factory is None and config.headers == []
    pickle.dumps(config.app)  # spawned workers receive it pickled


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
