"""The suite never sees the developer's HOME, XDG directories or QRNG_* variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quantumrng.config import ENV_PREFIX, Settings, default_data_dir, load_settings
from tests.conftest import XDG_DIRS

ROOT = Path(__file__).resolve().parents[1]

# A user's own setup: every place settings are read from says something else.
_USER_TOML = 'source = "ibm"\nport = 1234\n'
_USER_ENV = {"QRNG_SOURCE": "file", "QRNG_SHOTS": "7"}

_PROBE = """
import json, os, pathlib
from quantumrng.config import load_settings
s = load_settings()
print(json.dumps({
    "home": str(pathlib.Path.home()),
    "qrng": sorted(k for k in os.environ if k.startswith("QRNG_")),
    "settings": [s.source, s.port, s.shots],
}))
"""


def _user_home(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fake real home with ``qrng.toml`` where settings look, and its environment."""
    home = tmp_path / "user"
    for where in (home / ".local/share/quantumrng", home / "xdg-data/quantumrng"):
        where.mkdir(parents=True)
        (where / "qrng.toml").write_text(_USER_TOML)
    env = dict(os.environ, HOME=str(home), XDG_DATA_HOME=str(home / "xdg-data"), **_USER_ENV)
    return home, env


def _probe(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_home_and_xdg_directories_are_a_per_test_temporary_directory(
    isolated_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert Path.home() == isolated_home
    assert isolated_home.is_relative_to(tmp_path_factory.getbasetemp())
    assert list(isolated_home.iterdir()) == []
    for name, sub in XDG_DIRS.items():
        assert os.environ[name] == str(isolated_home / sub)
    assert default_data_dir() == isolated_home / ".local/share/quantumrng"


def test_no_qrng_variable_is_visible() -> None:
    assert [k for k in os.environ if k.startswith(ENV_PREFIX)] == []
    assert load_settings() == Settings()


def test_subprocesses_given_os_environ_inherit_the_isolation(isolated_home: Path) -> None:
    got = _probe(dict(os.environ))
    assert got == {"home": str(isolated_home), "qrng": [], "settings": ["simulator", 5000, 4096]}


def test_the_probe_sees_a_users_setup_without_isolation(tmp_path: Path) -> None:
    # control: the fake user's files and variables do change settings when not isolated
    home, env = _user_home(tmp_path)
    got = _probe(env)
    assert got == {"home": str(home), "qrng": sorted(_USER_ENV), "settings": ["file", 1234, 7]}


def test_a_users_qrng_toml_and_qrng_variables_do_not_reach_a_test(tmp_path: Path) -> None:
    home, env = _user_home(tmp_path)
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pytest.ini").write_text("[pytest]\n")
    (inner / "test_inner.py").write_text(
        textwrap.dedent(
            f"""
            import os
            from pathlib import Path

            from quantumrng.config import Settings, load_settings

            USER_HOME = {str(home)!r}
            AT_IMPORT = (str(Path.home()), sorted(k for k in os.environ if k.startswith("QRNG_")))

            def test_collection_was_isolated():
                assert AT_IMPORT[0] != USER_HOME and AT_IMPORT[1] == []

            def test_a_test_is_isolated():
                assert str(Path.home()) != USER_HOME
                assert "QRNG_SOURCE" not in os.environ
                assert load_settings() == Settings()
            """
        )
    )
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "-c", str(inner / "pytest.ini"), "--rootdir", str(inner), str(inner)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout
    assert (home / ".local/share/quantumrng/qrng.toml").read_text() == _USER_TOML
    assert sorted(p.name for p in home.iterdir()) == [".local", "xdg-data"]
