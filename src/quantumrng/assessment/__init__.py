"""SP 800-90B entropy assessment: IID tests (§5), non-IID estimators (§6.3), restart tests (§3.1.4).

Pure functions on sample arrays (one sample per element, its low ``k`` bits,
as NIST's ``ea_iid``/``ea_non_iid`` read a file):

- :mod:`~quantumrng.assessment.estimators`: the ten non-IID estimators,
  on the symbols and on their bitstring;
- :mod:`~quantumrng.assessment.iid`: the permutation tests, the chi-square
  tests and the LRS test that decide whether the IID track applies;
- :mod:`~quantumrng.assessment.restart`: the restart tests on a 1000 x 1000
  matrix of samples;
- :mod:`~quantumrng.assessment.source`: a source's initial assessment, per
  stream (qubit) and on whole samples (shots), and the credit it allows.

:func:`assess` combines the first two as §3.1.3 says: when the IID tests
pass, H_original is the most-common-value estimate (§5, the IID track),
otherwise the lowest non-IID estimate (§6); the bitstring is assessed the
same way; H_I = min(H_original, k * H_bitstring, H_submitter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from quantumrng.assessment._checks import check_samples

if TYPE_CHECKING:
    from quantumrng.assessment.iid import IidResult

__all__ = ["MIN_SAMPLES", "Assessment", "assess", "check_symbols"]

#: Samples an assessment needs, SP 800-90B §3.1.1 ("at least 1,000,000 sequential samples").
MIN_SAMPLES = 1_000_000


@dataclass(frozen=True)
class Assessment:
    """The outcome of assessing one sequence of ``k``-bit samples (§3.1.3).

    ``estimators`` holds, per non-IID estimator, min-entropy per sample:
    its value on the samples where the standard runs it on ``k``-bit
    samples, else ``k`` times its value on the bitstring (collision, Markov
    and compression are defined on binary data only, §6.3.2-6.3.4).
    ``bitstring_estimators`` are bits per bit (None when ``k`` is 1).
    """

    samples: int
    bits_per_symbol: int
    iid: bool
    estimators: dict[str, float]
    bitstring_estimators: dict[str, float] | None
    h_original: float
    h_bitstring: float
    h_submitter: float | None
    h_assessed: float
    iid_result: IidResult | None = field(default=None, repr=False, compare=False)

    @property
    def track(self) -> str:
        """``iid`` when the IID tests passed (the MCV estimate applies), else ``non_iid``."""
        return "iid" if self.iid else "non_iid"

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``qrng assess --json`` prints (figures rounded to 6 places)."""
        data: dict[str, Any] = {
            "samples": self.samples,
            "bits_per_symbol": self.bits_per_symbol,
            "iid": self.iid,
            "estimators": {name: _round(h) for name, h in self.estimators.items()},
            "h_original": _round(self.h_original),
            "h_bitstring": _round(self.h_bitstring),
            "h_assessed": _round(self.h_assessed),
            "track": self.track,
            "h_submitter": self.h_submitter,
        }
        if self.bitstring_estimators is not None:
            data["bitstring_estimators"] = {
                name: _round(h) for name, h in self.bitstring_estimators.items()
            }
        result = self.iid_result
        if result is not None:
            data["iid_tests"] = {
                "permutation": {o.name: o.passed for o in result.permutation},
                "chi_square_independence": result.chi_square_independence,
                "chi_square_goodness_of_fit": result.chi_square_goodness_of_fit,
                "lrs": result.lrs,
            }
        return data


def _round(h: float) -> float:
    return round(float(h), 6)


def check_symbols(
    symbols: npt.ArrayLike, bits_per_symbol: int, *, min_samples: int = MIN_SAMPLES
) -> npt.NDArray[np.uint8]:
    """Return ``symbols`` as a 1-D uint8 array, or raise ValueError saying what is wrong.

    ``bits_per_symbol`` must be 1 to 8, every sample below 2**k, and there
    must be at least ``min_samples`` of them (§3.1.1).
    """
    samples, _ = check_samples(
        symbols,
        bits_per_symbol,
        minimum=min_samples,
        use="assess",
        need="SP 800-90B §3.1.1 needs",
    )
    return samples


def assess(
    symbols: npt.ArrayLike,
    bits_per_symbol: int,
    *,
    h_submitter: float | None = None,
    min_samples: int = MIN_SAMPLES,
    iid_tests: bool = True,
    rng: np.random.Generator | None = None,
) -> Assessment:
    """Assess ``k``-bit samples: the IID verdict, every estimator, H_I (§3.1.3).

    ``h_submitter`` (bits per sample) caps the result when given. With
    ``iid_tests`` False the IID track is never taken (a source that makes
    no IID claim). ``rng`` drives the permutation tests' shuffles.
    """
    from quantumrng.assessment.estimators import BINARY_ONLY, non_iid_assessment

    samples = check_symbols(symbols, bits_per_symbol, min_samples=min_samples)
    k = bits_per_symbol
    if h_submitter is not None and not (0 < h_submitter <= k and math.isfinite(h_submitter)):
        raise ValueError(f"the submitter's estimate must be in (0, {k}] bits per sample")

    non_iid = non_iid_assessment(samples, k)
    estimators = dict(non_iid.estimators)
    if non_iid.bitstring_estimators is not None:
        for name in BINARY_ONLY:
            if name not in estimators and name in non_iid.bitstring_estimators:
                estimators[name] = k * non_iid.bitstring_estimators[name]

    iid_result = None
    iid = False
    h_original, h_bitstring = non_iid.h_original, non_iid.h_bitstring
    if iid_tests:
        from quantumrng.assessment.iid import iid_assessment

        iid_result = iid_assessment(samples, k, rng=rng)
        iid = iid_result.passed
        if iid:
            h_original, h_bitstring = iid_result.h_original, iid_result.h_bitstring

    h_assessed = min(h_original, k * h_bitstring, float(k))
    if h_submitter is not None:
        h_assessed = min(h_assessed, h_submitter)
    return Assessment(
        samples=int(samples.size),
        bits_per_symbol=k,
        iid=iid,
        estimators=estimators,
        bitstring_estimators=non_iid.bitstring_estimators,
        h_original=h_original,
        h_bitstring=h_bitstring,
        h_submitter=h_submitter,
        h_assessed=max(0.0, h_assessed),
        iid_result=iid_result,
    )
