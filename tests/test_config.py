"""Settings: defaults < config file < QRNG_* environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantumrng.config import Settings, load_settings
from quantumrng.errors import ConfigError


def test_defaults_match_the_prototype() -> None:
    s = load_settings(environ={})
    assert (s.host, s.port, s.source, s.pool) == ("127.0.0.1", 5000, "simulator", "sqlite")


def test_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "qrng.toml"
    cfg.write_text("[quantumrng]\nport = 6000\nshots = 100\nqubits = 4\n")
    env = {"QRNG_CONFIG": str(cfg), "QRNG_SHOTS": "200", "QRNG_QUBITS": "5"}
    s = load_settings({"qubits": 6, "source": None}, environ=env)
    assert (s.port, s.shots, s.qubits, s.source) == (6000, 200, 6, "simulator")


def test_config_file_found_in_data_dir(tmp_path: Path) -> None:
    (tmp_path / "qrng.toml").write_text("pool_high_water = 5000\n")
    s = load_settings(environ={"QRNG_DATA_DIR": str(tmp_path)})
    assert s.pool_high_water == 5000 and s.data_dir == tmp_path


@pytest.mark.parametrize(
    ("env", "word"),
    [
        ({"QRNG_PORT": "http"}, "port"),
        ({"QRNG_PORT": "70000"}, "port"),
        ({"QRNG_SOURCE": "dice"}, "source"),
        ({"QRNG_POOL": "mongo"}, "pool"),
        ({"QRNG_REQUIRE_AUTH": "maybe"}, "require_auth"),
        ({"QRNG_IBM_ENTROPY": "1.5"}, "ibm_entropy"),
        ({"QRNG_POOL_LOW_WATER": "10", "QRNG_POOL_HIGH_WATER": "5"}, "water"),
        ({"QRNG_TLS_CERT": "/tmp/c.pem"}, "tls"),
        ({"QRNG_NO_SUCH_THING": "1"}, "no_such_thing"),
        ({"QRNG_RESEED_SECONDS": "0"}, "reseed_seconds"),
        ({"QRNG_RESEED_SECONDS": "-1"}, "reseed_seconds"),
        ({"QRNG_RESEED_SECONDS": "nan"}, "reseed_seconds"),
        ({"QRNG_RATE_LIMIT": "nan"}, "rate_limit"),
        ({"QRNG_RATE_LIMIT": "-1"}, "rate_limit"),
        ({"QRNG_IBM_TIMEOUT": "inf"}, "ibm_timeout"),
        ({"QRNG_DATA_DIR": ""}, "data_dir"),
        ({"QRNG_DATA_DIR": "  "}, "data_dir"),
    ],
)
def test_bad_settings_raise_config_error(env: dict[str, str], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        load_settings(environ=env)


@pytest.mark.parametrize(
    "text",
    [b"port = [", b"\xff\xfe garbage", b"qubits = 1e400", b"max_bytes = 1.5", b"port = true"],
)
def test_bad_config_file(tmp_path: Path, text: bytes) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(text)
    with pytest.raises(ConfigError):
        load_settings(config_file=bad, environ={})


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(config_file=tmp_path / "missing.toml", environ={})


def test_optional_and_bool_coercion() -> None:
    s = load_settings(environ={"QRNG_REQUIRE_AUTH": "off", "QRNG_IBM_BACKEND": "ibm_kyiv"})
    assert s.require_auth is False and s.ibm_backend == "ibm_kyiv"
    s = load_settings(environ={"QRNG_REQUIRE_AUTH": "none"})
    assert s.require_auth is None


def test_replace_validates() -> None:
    s = Settings()
    assert s.replace(port=8080).port == 8080
    with pytest.raises(ConfigError):
        s.replace(workers=0)


def test_default_data_dir_is_under_xdg_data_home_else_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert load_settings(environ={}).data_dir == tmp_path / "xdg" / "quantumrng"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_settings(environ={}).data_dir == tmp_path / "home/.local/share/quantumrng"


def test_config_file_found_in_default_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    (tmp_path / "quantumrng").mkdir()
    (tmp_path / "quantumrng" / "qrng.toml").write_text("port = 6001\n")
    assert load_settings(environ={}).port == 6001
