"""Helpers for the CLI tests: ``qrng`` run as users run it, a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def qrng(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m quantumrng ARGS`` on the OS source, data in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRNG_")}
    env["QRNG_DATA_DIR"] = str(tmp_path / "data")
    env["QRNG_SOURCE"] = "os"
    return subprocess.run(
        [sys.executable, "-m", "quantumrng", *args],
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )
