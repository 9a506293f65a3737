"""Helpers for the server tests: an app over an in-memory pool, no harvester."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from quantumrng.node import Node
from quantumrng.provenance import CREDITABLE_SOURCE_KINDS
from quantumrng.server import create_app
from quantumrng.server.access import Access
from tests.blocks import make_blocks
from tests.conftest import make_settings

warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")

from starlette.testclient import TestClient  # noqa: E402 - after the filter above


@dataclass
class Served:
    """An app, its node and a test client."""

    app: Starlette
    node: Node
    client: TestClient


def serve_memory(
    tmp_path: Path,
    *,
    source: str = "simulator",
    blocks: int = 64,
    credited_bits: int | None = None,
    access: Access | None = None,
    **overrides: Any,
) -> Served:
    """Return an app over a memory pool holding ``blocks`` blocks of ``source``.

    Blocks are credited as the source's kind would be (full entropy for
    ``ibm`` and ``file``, none for the others) unless ``credited_bits`` says
    otherwise. ``allow_uncredited_raw`` is on unless overridden, so raw-mode
    mechanics can be tested on the zero-credit sources; the tests of the
    refusal turn it off.
    """
    overrides.setdefault("allow_uncredited_raw", True)
    settings = make_settings(tmp_path, pool="memory", source=source, **overrides)
    node = Node(settings, harvest_on_demand=False)
    if blocks:
        credit = (
            credited_bits
            if credited_bits is not None
            else (512 if source in CREDITABLE_SOURCE_KINDS else 0)
        )
        node.pool.put(make_blocks(blocks, source=source, credited_bits=credit))
    app = create_app(settings, node, access=access)
    return Served(app, node, TestClient(app, raise_server_exceptions=False))


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Check the one error shape and return its inner object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return dict(body["error"])
