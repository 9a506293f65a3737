"""NIST SP 800-22 Rev. 1a statistical tests on output (being built for issue 13).

Pure functions of the bytes given; p-values from ``scipy.special``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALPHA", "TestResult", "run"]

ALPHA = 0.01  # SP 800-22 §4.2.1: the significance level


@dataclass(frozen=True)
class TestResult:
    """One test of the battery on one sequence: its name (``frequency``, ``runs``, ...),
    the SP 800-22 section (``"2.1"``), its p-values (several for tests with several
    statistics), whether each is at least ``alpha``, and why it did not run (``skipped``,
    e.g. a sequence shorter than the test's minimum) or None."""

    name: str
    section: str
    p_values: tuple[float, ...]
    passed: bool
    skipped: str | None = None


def run(data: bytes, *, alpha: float = ALPHA) -> list[TestResult]:
    """Run every test of the battery on ``data`` (bits in big-endian order per byte)."""
    raise NotImplementedError
