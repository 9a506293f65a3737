"""Entropy accounting every process of a deployment shares: a source's assessment and state.

Two records per source kind live in the pool's store, sealed under the node
key (:mod:`quantumrng.pool.integrity`), so every worker and node sees the
same answer and a store writer can forge neither:

- ``assessment:<kind>``: the source's initial assessment
  (:class:`~quantumrng.assessment.source.SourceAssessment`, SP 800-90B
  §3.1), which sets the credit of its blocks;
- ``state:<kind>``: present only while the source is in the persistent
  failure state (§4.3), saying which test failed on which stream and what
  was quarantined. While it is there nothing new is harvested, raw output
  stops and the DRBG is not reseeded (:meth:`SourceLedger.check_usable`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from quantumrng.assessment.source import SourceAssessment
from quantumrng.errors import SourceFailed, Unavailable
from quantumrng.pool.base import Pool

__all__ = ["SourceFailure", "SourceLedger"]

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0  # how long a state read is reused by check_usable


@dataclass(frozen=True)
class SourceFailure:
    """A persistent health-test failure of one source (SP 800-90B §4.3)."""

    source: str
    test: str
    stream: int
    failed_at: float
    quarantined_harvests: int = 0
    quarantined_blocks: int = 0

    def message(self) -> str:
        """One line for errors, logs and status: the source, test and stream; no data."""
        where = f"on stream {self.stream}" if self.stream >= 0 else "on whole harvests"
        return (
            f"the {self.source} source is stopped: health test {self.test!r} failed "
            f"persistently {where}; {self.quarantined_blocks} block(s) quarantined"
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for status pages."""
        return {**asdict(self), "message": self.message()}

    def to_record(self) -> bytes:
        """The bytes stored in the pool."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, record: bytes) -> SourceFailure:
        """Read what :meth:`to_record` wrote; ValueError when it is not that."""
        try:
            data = json.loads(record)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            return cls(**data)
        except (TypeError, json.JSONDecodeError):
            raise ValueError("not a source state record") from None


class SourceLedger:
    """The shared records of one source kind; see the module. Thread-safe."""

    def __init__(self, pool: Pool, kind: str, *, check_seconds: float = CHECK_SECONDS) -> None:
        self._pool = pool
        self.kind = kind
        self._check_seconds = check_seconds
        self._lock = threading.Lock()
        self._checked_at = -float("inf")
        self._checked: SourceFailure | None = None

    @property
    def _state_name(self) -> str:
        return f"state:{self.kind}"

    @property
    def _assessment_name(self) -> str:
        return f"assessment:{self.kind}"

    # -- failure state -------------------------------------------------------------

    def failure(self) -> SourceFailure | None:
        """The recorded persistent failure, or None.

        A state record that does not verify or decode counts as a failure
        (fail closed): only the harvester's own write, or an operator
        reset, clears it. A read also refreshes what :meth:`check_usable`
        goes by, so no answer contradicts a status read before it.
        """
        started = time.monotonic()
        failure = self._read_failure()
        with self._lock:
            if started >= self._checked_at:
                self._checked, self._checked_at = failure, started
        return failure

    def _read_failure(self) -> SourceFailure | None:
        try:
            record = self._pool.read_record(self._state_name)
            if record is None:
                return None
            return SourceFailure.from_record(record)
        except ValueError:
            return SourceFailure(self.kind, "state record unreadable", -1, time.time())
        except Unavailable as exc:
            if "integrity" not in exc.message:
                raise
            return SourceFailure(self.kind, "state record integrity", -1, time.time())

    def record_failure(self, failure: SourceFailure) -> None:
        """Store the persistent failure; every process stops using the source."""
        self._pool.write_record(self._state_name, failure.to_record())
        with self._lock:
            self._checked, self._checked_at = failure, time.monotonic()

    def clear_failure(self) -> None:
        """Leave the failure state (after a new start-up test, or an operator reset)."""
        self._pool.write_record(self._state_name, None)
        with self._lock:
            self._checked, self._checked_at = None, time.monotonic()

    def check_usable(self) -> None:
        """Raise ``SourceFailed`` (503) while the source is in the failure state.

        The record is read at most once per ``check_seconds``, so a failure
        recorded by another process stops this one within that time.
        """
        now = time.monotonic()
        with self._lock:
            fresh = now - self._checked_at < self._check_seconds
            failure = self._checked
        if not fresh:
            failure = self.failure()
        if failure is not None:
            raise SourceFailed(failure.message())

    # -- assessment ------------------------------------------------------------------

    def assessment(self) -> SourceAssessment | None:
        """The stored assessment, or None (also when the record does not verify or
        decode: the source is then assessed again, never credited on it)."""
        try:
            record = self._pool.read_record(self._assessment_name)
        except Unavailable as exc:
            if "integrity" not in exc.message:
                raise
            log.warning("the stored %s assessment failed its integrity check", self.kind)
            return None
        if record is None:
            return None
        try:
            return SourceAssessment.from_record(record)
        except ValueError:
            log.warning("the stored %s assessment does not decode; assessing again", self.kind)
            return None

    def save_assessment(self, assessment: SourceAssessment) -> None:
        """Store the assessment for every process (replacing an older one)."""
        self._pool.write_record(self._assessment_name, assessment.to_record())
