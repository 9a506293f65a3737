"""Third-party tools the compatibility tests run: npm packages and Debian programs.

npm packages install once into a cache folder (``QRNG_TEST_CACHE``, default
``~/.cache/quantumrng-tests``), keyed by the exact package list, so a second
run reuses them. Debian programs (pollinate, rng-tools5, chromium) are
installed with apt-get when missing and the test runs as root; otherwise the
test is skipped with the reason, never silently passed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["cache_dir", "debian_program", "npm_packages"]

NPM_TIMEOUT = 300  # seconds for one npm install
APT_TIMEOUT = 300  # seconds for one apt-get install


def cache_dir() -> Path:
    """The folder test tools are installed into (created)."""
    root = os.environ.get("QRNG_TEST_CACHE") or str(Path.home() / ".cache" / "quantumrng-tests")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def npm_packages(*packages: str) -> Path:
    """Install ``packages`` (``name@version``) with npm; return the folder holding node_modules.

    Serialized by a lock file, so parallel sessions share one install.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for this test")
    key = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:16]
    folder = cache_dir() / "npm" / key
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / ".installed"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            (folder / "package.json").write_text('{"private": true}\n')
            run = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder), *packages],
                capture_output=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
            if run.returncode != 0:
                pytest.skip(f"npm could not install {packages}: {run.stderr.decode()[-300:]}")
            done.write_text("\n".join(packages))
    return folder


def debian_program(program: str, package: str) -> str:
    """The path of ``program``, installing Debian's ``package`` first if it is missing."""
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{program} is missing and {package} cannot be installed here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    run = subprocess.run(cmd, capture_output=True, timeout=APT_TIMEOUT, env=env, check=False)
    if run.returncode != 0:
        update = ["apt-get", "update", "-q"]
        subprocess.run(update, capture_output=True, timeout=APT_TIMEOUT, env=env, check=False)
        run = subprocess.run(cmd, capture_output=True, timeout=APT_TIMEOUT, env=env, check=False)
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if run.returncode != 0 or not found:
        pytest.skip(f"apt-get could not install {package}: {run.stderr.decode()[-300:]}")
    return found
