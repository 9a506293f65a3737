"""The os source: kernel random bytes as 8-bit rows, health-tested but never credited."""

from __future__ import annotations

import os

import pytest

from quantumrng.config import Settings
from quantumrng.errors import ConfigError, SourceError
from quantumrng.sources import OSSource
from quantumrng.sources._common import NOMINAL_ENTROPY


def test_harvest_reads_the_configured_number_of_bytes() -> None:
    harvest = OSSource(Settings(os_read_bytes=1000)).harvest()
    assert (harvest.width, harvest.samples, len(harvest.data)) == (8, 1000, 1000)
    assert harvest.assessed_entropy == NOMINAL_ENTROPY
    assert harvest.provenance.source == "os"
    assert harvest.provenance.backend == "getrandom"


def test_the_kernel_generator_is_not_creditable() -> None:
    """Its output is a deterministic generator's: zero credit, whatever it looks like.
    The kernel's entropy reaches seeds as the engine's OS-entropy input instead."""
    harvest = OSSource(Settings(os_read_bytes=64)).harvest()
    assert harvest.creditable is False
    assert OSSource(Settings()).info()["creditable"] is False


def test_harvests_differ() -> None:
    source = OSSource(Settings(os_read_bytes=32))
    assert source.harvest().data != source.harvest().data


def test_kernel_failure_is_a_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(_: int) -> bytes:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "urandom", fail)
    with pytest.raises(SourceError, match="kernel RNG failed"):
        OSSource(Settings()).harvest()


def test_rejects_nonpositive_size() -> None:
    with pytest.raises(ConfigError):
        OSSource(Settings(os_read_bytes=0))


def test_info_names_the_kernel_and_no_credit() -> None:
    assert OSSource(Settings(os_read_bytes=64)).info() == {
        "kind": "os",
        "backend": "getrandom",
        "read_bytes": 64,
        "assessed_entropy": NOMINAL_ENTROPY,
        "creditable": False,
    }
