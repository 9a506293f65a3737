"""Shared options are declared once, and ``command_settings`` layers group < command flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from quantumrng.cli import cli
from quantumrng.cli.options import SettingOption, command_settings, shared_settings
from quantumrng.cli.serve import serve_command
from quantumrng.config import Settings


def _options(command: click.Command) -> dict[str, dict[str, Any]]:
    return {
        p.name: p.to_info_dict()
        for p in command.params
        if isinstance(p, click.Option) and p.name is not None and p.name != "help"
    }


def test_options_on_both_the_group_and_serve_are_the_shared_declarations() -> None:
    shared = _options(click.command()(shared_settings(lambda **_: None)))
    group, serve = _options(cli), _options(serve_command)
    assert (
        set(group) & set(serve)
        == set(shared)
        == {
            "source",
            "pool",
            "data_dir",
            "redis_url",
            "allow_uncredited_raw",
        }
    )
    for name, declared in shared.items():
        assert group[name] == serve[name] == declared, name
    for command in (cli, serve_command):
        assert all(isinstance(p, SettingOption) for p in command.params if p.name in shared)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("QRNG_")]:
        monkeypatch.delenv(key)


def _probe(seen: list[Settings]) -> click.Group:
    """A group and command declared like ``qrng`` and ``qrng serve``, recording the settings."""

    @click.group()
    @shared_settings
    @click.pass_context
    def group(ctx: click.Context, /, **_: Any) -> None:
        ctx.obj = command_settings(ctx)

    @group.command()
    @shared_settings
    def command(**_: Any) -> None:
        seen.append(command_settings())

    return group


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("args", "source", "pool"),
    [
        (["command"], "simulator", "memory"),
        (["--source", "os", "command"], "os", "memory"),
        (["command", "--source", "os"], "os", "memory"),
        (["--source", "file", "command", "--source", "os"], "os", "memory"),
        (["--source", "os", "command", "--pool", "sqlite"], "os", "sqlite"),
    ],
)
def test_command_flags_override_group_flags_which_override_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    source: str,
    pool: str,
) -> None:
    monkeypatch.setenv("QRNG_SOURCE", "simulator")
    monkeypatch.setenv("QRNG_POOL", "memory")
    seen: list[Settings] = []
    result = CliRunner().invoke(_probe(seen), ["--data-dir", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    (s,) = seen
    assert (s.source, s.pool, s.data_dir) == (source, pool, tmp_path)


@pytest.mark.usefixtures("clean_env")
def test_a_command_outside_any_group_loads_settings_itself(tmp_path: Path) -> None:
    seen: list[Settings] = []
    command = _probe(seen).commands["command"]
    result = CliRunner().invoke(command, ["--data-dir", str(tmp_path), "--source", "os"])
    assert result.exit_code == 0, result.output
    assert (seen[0].source, seen[0].data_dir) == ("os", tmp_path)
