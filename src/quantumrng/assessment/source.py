"""A source's initial entropy assessment and the credit it allows (SP 800-90B §3.1.1, §3.1.3).

A harvest is a matrix of bits: rows are samples (shots), columns are
streams (qubits, or a device's bit positions). The assessment runs on at
least :data:`~quantumrng.assessment.MIN_SAMPLES` rows, per source, backend
and configuration (qubit layout, calibration):

- each stream alone, as binary samples: H_i bits per bit;
- the whole samples, which carry the correlations between streams: rows of
  up to 8 bits are ``width``-bit symbols; wider rows are read as the
  row-major bitstream cut into bytes, 8-bit symbols. Its H_I per symbol
  divided by the symbol's bits is the joint figure, bits per bit.

Stream ``i`` is first given min(H_i, H_submitter) bits per bit; when
these add up to more than ``width`` times the joint figure, all are scaled
down in proportion. So a stream never gets more than it shows alone, nor a
whole sample more than its joint assessment (H_I = min(H_original,
n H_bitstring, H_submitter) per sample, §3.1.3). The continuous health tests then guard the
source (§4.4); a change of backend or configuration needs a new assessment.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from quantumrng.assessment import MIN_SAMPLES, Assessment, assess

__all__ = [
    "SourceAssessment",
    "SourceAssessmentRun",
    "assess_source",
    "assessment_key",
    "whole_sample_symbols",
]

RECORD_VERSION = 1


def assessment_key(source: str, backend: str | None, width: int, configuration: str) -> str:
    """Name the assessment of one source, backend, width and configuration (32 hex digits)."""
    text = json.dumps([source, backend, width, configuration], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def whole_sample_symbols(bits: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], int]:
    """Return the whole samples of a (samples, width) bit matrix as symbols, and their bits.

    Up to 8 columns, each row is one ``width``-bit symbol (column 0 the most
    significant bit); wider rows are the row-major bitstream cut into bytes.
    """
    width = bits.shape[1]
    if width <= 8:
        weights = (1 << np.arange(width - 1, -1, -1)).astype(np.uint16)
        return (bits.astype(np.uint16) @ weights).astype(np.uint8), width
    flat = bits.reshape(-1)
    usable = flat.size - flat.size % 8
    return np.packbits(flat[:usable]), 8


@dataclass(frozen=True)
class SourceAssessment:
    """The stored outcome of a source's initial assessment."""

    key: str
    source: str
    backend: str | None
    configuration: str
    width: int
    samples: int
    assessed_at: float
    h_submitter: float
    streams: tuple[float, ...]
    iid: tuple[bool, ...]
    joint: float
    joint_bits_per_symbol: int
    joint_iid: bool
    credit: tuple[float, ...]

    @property
    def credited_bits_per_sample(self) -> float:
        """Min-entropy credited to one whole sample (shot), bits."""
        return math.fsum(self.credit)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for status pages and the stored record."""
        data = asdict(self)
        data["streams"] = [round(h, 6) for h in self.streams]
        data["credit"] = [round(h, 6) for h in self.credit]
        data["iid"] = list(self.iid)
        data["joint"] = round(self.joint, 6)
        data["credited_bits_per_sample"] = round(self.credited_bits_per_sample, 6)
        return data

    def to_record(self) -> bytes:
        """The bytes stored in the pool (exact figures, versioned)."""
        data = asdict(self)
        data["version"] = RECORD_VERSION
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, record: bytes) -> SourceAssessment:
        """Read what :meth:`to_record` wrote; ValueError when it is not that."""
        try:
            data = json.loads(record)
            if not isinstance(data, dict) or data.pop("version", None) != RECORD_VERSION:
                raise ValueError("unknown record version")
            data["streams"] = tuple(float(h) for h in data["streams"])
            data["credit"] = tuple(float(h) for h in data["credit"])
            data["iid"] = tuple(bool(x) for x in data["iid"])
            made = cls(**data)
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an assessment record ({type(exc).__name__})") from None
        if len(made.credit) != made.width or not all(0 <= c <= 1 for c in made.credit):
            raise ValueError("not an assessment record (credit)")
        return made


@dataclass(frozen=True)
class SourceAssessmentRun:
    """A source assessment with every figure behind it (for ``qrng assess --source``)."""

    assessment: SourceAssessment
    joint_assessment: Assessment
    stream_assessments: tuple[Assessment, ...]


def assess_source(
    bits: npt.NDArray[np.uint8],
    *,
    source: str,
    backend: str | None,
    configuration: str,
    h_submitter: float,
    min_samples: int = MIN_SAMPLES,
    rng: np.random.Generator | None = None,
) -> SourceAssessmentRun:
    """Assess a (samples, width) bit matrix of one source; see the module."""
    if bits.ndim != 2 or bits.shape[1] < 1:
        raise ValueError("need a (samples, width) matrix of bits")
    if not 0 < h_submitter <= 1:
        raise ValueError("the submitter's estimate must be in (0, 1] bits per bit")
    samples, width = bits.shape
    columns = np.ascontiguousarray(bits.T)
    per_stream: list[Assessment] = [
        assess(column, 1, h_submitter=h_submitter, min_samples=min_samples, rng=rng)
        for column in columns
    ]
    symbols, k = whole_sample_symbols(bits)
    joint = assess(symbols, k, h_submitter=k * h_submitter, min_samples=min_samples, rng=rng)
    joint_per_bit = joint.h_assessed / k
    streams = tuple(a.h_assessed for a in per_stream)
    own = [max(0.0, min(h, h_submitter)) for h in streams]
    total = math.fsum(own)
    scale = min(1.0, width * joint_per_bit / total) if total > 0 else 0.0
    credit = tuple(h * scale for h in own)
    record = SourceAssessment(
        key=assessment_key(source, backend, width, configuration),
        source=source,
        backend=backend,
        configuration=configuration,
        width=width,
        samples=samples,
        assessed_at=time.time(),
        h_submitter=h_submitter,
        streams=streams,
        iid=tuple(a.iid for a in per_stream),
        joint=joint_per_bit,
        joint_bits_per_symbol=k,
        joint_iid=joint.iid,
        credit=credit,
    )
    return SourceAssessmentRun(record, joint, tuple(per_stream))
