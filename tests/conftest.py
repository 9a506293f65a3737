"""Shared fixtures: an isolated environment, settings, in-memory pools and blocks."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantumrng.config import ENV_PREFIX, Settings, load_settings
from quantumrng.pool import open_pool
from quantumrng.pool.base import Pool

#: XDG base directories, each pointed at its usual place under the tests' HOME.
XDG_DIRS = {
    "XDG_DATA_HOME": ".local/share",
    "XDG_CONFIG_HOME": ".config",
    "XDG_CACHE_HOME": ".cache",
    "XDG_STATE_HOME": ".local/state",
}

_session_env = pytest.MonkeyPatch()
_session_home: Path | None = None


def isolate_environment(mp: pytest.MonkeyPatch, home: Path) -> None:
    """Point HOME and the XDG base directories under ``home``; drop every ``QRNG_*`` variable."""
    mp.setenv("HOME", str(home))
    for name, sub in XDG_DIRS.items():
        mp.setenv(name, str(home / sub))
    for name in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        mp.delenv(name)


def pytest_configure(config: pytest.Config) -> None:
    """Isolate the whole session, collection and wide-scoped fixtures included."""
    global _session_home
    _session_home = Path(tempfile.mkdtemp(prefix="qrng-test-home-"))
    isolate_environment(_session_env, _session_home)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give the process its environment back and remove the session's home."""
    _session_env.undo()
    if _session_home is not None:
        shutil.rmtree(_session_home, ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Each test gets its own empty HOME/XDG directories and no ``QRNG_*`` variables.

    ``os.environ`` itself is changed, so subprocesses given ``os.environ`` (or a
    copy) inherit the isolation.
    """
    home = tmp_path_factory.mktemp("home")
    isolate_environment(monkeypatch, home)
    return home


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings isolated from the environment, data in ``tmp_path``."""
    values: dict[str, object] = {"data_dir": tmp_path}
    values.update(overrides)
    return load_settings(overrides=values, environ={})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, pool="memory", source="os")


@pytest.fixture
def memory_pool(settings: Settings) -> Iterator[Pool]:
    pool = open_pool(settings)
    yield pool
    pool.close()
