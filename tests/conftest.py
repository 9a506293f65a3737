"""Shared fixtures: isolated settings, in-memory pools and blocks to fill them."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from quantumrng.block import Block
from quantumrng.config import Settings, load_settings
from quantumrng.pool import open_pool
from quantumrng.pool.base import Pool
from quantumrng.provenance import Provenance


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings isolated from the environment, data in ``tmp_path``."""
    values: dict[str, object] = {"data_dir": tmp_path}
    values.update(overrides)
    return load_settings(overrides=values, environ={})


def make_blocks(n: int, source: str = "os", credited_bits: int = 512) -> list[Block]:
    """Blocks with distinct, recognisable (not random) contents, one harvest."""
    prov = Provenance(source=source, harvest_id=uuid.uuid4().hex, harvested_at=time.time())
    return [
        Block(hashlib.sha512(f"{prov.harvest_id}/{i}".encode()).digest(), credited_bits, prov)
        for i in range(n)
    ]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, pool="memory", source="os")


@pytest.fixture
def memory_pool(settings: Settings) -> Iterator[Pool]:
    pool = open_pool(settings)
    yield pool
    pool.close()
