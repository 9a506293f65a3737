"""``qrng serve``: its setting flags and the group's agree, and its own win."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from quantumrng.cli import cli
from quantumrng.config import Settings
from quantumrng.server import run
from quantumrng.server.keys import KeyStore


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """The settings ``serve`` would run with, after its announcement; nothing is served."""
    calls: list[Settings] = []

    def fake_serve(
        settings: Settings,
        *,
        access_log: bool = False,
        announce: Callable[[Settings], None] | None = None,
    ) -> None:
        assert announce is not None
        announce(settings)
        calls.append(settings)

    monkeypatch.setattr(run, "serve", fake_serve)
    return calls


def _serve(tmp_path: Path, served: list[Settings], *args: str) -> Settings:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    return served.pop()


@pytest.mark.parametrize("flag", [("--source", "os"), ("--pool", "memory")])
def test_a_shared_flag_on_the_group_or_on_serve_agrees(
    tmp_path: Path, served: list[Settings], flag: tuple[str, str]
) -> None:
    assert _serve(tmp_path, served, *flag, "serve") == _serve(tmp_path, served, "serve", *flag)


def test_serve_flags_override_the_group_and_unset_ones_keep_it(
    tmp_path: Path, served: list[Settings]
) -> None:
    other = tmp_path / "other"
    s = _serve(
        tmp_path, served,
        "--source", "file", "--pool", "memory", "--redis-url", "redis://a/0",
        "serve", "--source", "os", "--data-dir", str(other), "--port", "6123",
    )  # fmt: skip
    assert (s.source, s.pool, s.redis_url, s.data_dir) == ("os", "memory", "redis://a/0", other)
    assert (s.port, s.host, s.require_auth) == (6123, "127.0.0.1", None)


def test_serve_flags_override_the_group_settings(tmp_path: Path, served: list[Settings]) -> None:
    result = CliRunner().invoke(
        cli,
        ["--source", "os", "--data-dir", str(tmp_path), "serve", "--port", "6123",
         "--workers", "3", "--no-require-auth", "--pool", "memory"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (s,) = served
    assert (s.source, s.port, s.workers, s.require_auth, s.pool) == ("os", 6123, 3, False, "memory")
    assert s.data_dir == tmp_path and s.host == "127.0.0.1"


# -- the startup lines -------------------------------------------------------------------


def _startup(tmp_path: Path, *args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "serve", *args])
    assert result.exit_code == 0, result.output
    return result.stderr.splitlines()


def test_loopback_says_auth_is_off_and_warns_of_nothing(
    tmp_path: Path, served: list[Settings]
) -> None:
    lines = _startup(tmp_path)
    assert lines[0].startswith("qrng: serving simulator entropy on http://127.0.0.1:5000")
    assert lines[1:] == ["qrng: auth: off (loopback only)"]
    assert not (tmp_path / "keys.sqlite3").exists()


def test_any_address_says_auth_is_required_with_no_keys_and_warns_of_plain_http(
    tmp_path: Path, served: list[Settings]
) -> None:
    lines = _startup(tmp_path, "--host", "0.0.0.0")
    assert lines[1] == (
        "qrng: auth: required (0 active keys; create one with `qrng keys create --name NAME`)"
    )
    assert lines[2].startswith("qrng: warning: plain HTTP on 0.0.0.0: API keys and random")
    assert not served[0].keys_path.exists()  # counted without creating the key file


def test_required_auth_counts_only_active_keys(tmp_path: Path, served: list[Settings]) -> None:
    store = KeyStore(tmp_path / "keys.sqlite3")
    for name in ("a", "b", "c"):
        store.create(name, {"drbg"}, None, None)
    store.revoke("b")
    lines = _startup(tmp_path, "--require-auth")
    assert lines[1].startswith("qrng: auth: required (2 active keys; create one with")
    assert len(lines) == 2  # loopback: no plain-HTTP warning
    store.revoke("c")
    assert _startup(tmp_path, "--require-auth")[1].startswith("qrng: auth: required (1 active key;")


def test_auth_turned_off_off_loopback_says_so(tmp_path: Path, served: list[Settings]) -> None:
    lines = _startup(tmp_path, "--host", "192.0.2.7", "--no-require-auth")
    assert lines[1] == "qrng: auth: off (anyone who reaches this address)"
    assert lines[2].startswith("qrng: warning: plain HTTP on 192.0.2.7")
