"""A source that only fails (SP 800-90B §4.3): 503 JSON answers, never a crash or output."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.server.process import run_server

WAIT_SECONDS = 60.0


def test_a_device_of_zeros_never_seeds_and_every_answer_is_503_json(tmp_path: Path) -> None:
    with run_server(
        tmp_path,
        "--source",
        "file",
        settings={"file_path": "/dev/zero", "harvest_backoff_max": "1"},
        wait_for="/health",
    ) as server:
        base = server.base_url
        deadline = time.monotonic() + WAIT_SECONDS
        state = None
        while state is None and time.monotonic() < deadline:
            state = httpx.get(base + "/api/v2/status", timeout=10).json().get("source_state")
            time.sleep(0.2)
        assert state is not None, "the source never reached the persistent failure state"
        assert state["source"] == "file" and state["test"] in (
            "startup",
            "rct",
            "apt",
            "bias",
            "repeat",
        )
        for url in ("/api/v2/bytes?n=16", "/api/v1/qrng/get_bits", "/ready"):
            r = httpx.get(base + url, timeout=10)
            assert r.status_code == 503, (url, r.text)
            assert r.headers["content-type"] == "application/json"
            assert set(r.json()["error"]) == {"code", "message"}
        raw = httpx.get(base + "/api/v2/bytes?n=16&mode=raw", timeout=10)
        assert raw.status_code == 503 and raw.json()["error"]["code"] == "source_failed"
        status = httpx.get(base + "/api/v2/status", timeout=10).json()
        assert status["pool"]["blocks"] == 0 and status["engine"]["seeded"] is False
        assert server.proc.poll() is None  # still running
