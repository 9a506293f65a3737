"""The ``Source`` interface and the ``Harvest`` it returns.

A harvest is a matrix of raw bits: ``samples`` rows (shots) of ``width``
columns (qubits, or the 8 bit positions of a byte-oriented device), packed
row-major, most significant bit first, as ``numpy.packbits`` does. Column
``i`` is classical bit ``i`` of the measured circuit. Health tests run per
column; conditioning hashes the packed bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from quantumrng.provenance import Provenance

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Harvest", "Source"]


@dataclass(frozen=True, slots=True)
class Harvest:
    """Raw bits from one source run, with their provenance.

    ``assessed_entropy`` is the min-entropy per bit the source is designed to
    deliver; the health tests derive their cutoffs from it.
    ``creditable`` is False when the bits come from a seeded PRNG (the
    simulator) or the kernel's generator (``os``): such bits are
    health-tested but earn zero entropy credit. ``configuration`` names what
    an entropy assessment depends on beyond the backend (physical qubit
    layout, calibration): when it changes, the source is assessed again
    (SP 800-90B §3.1.1).
    """

    data: bytes
    width: int
    samples: int
    provenance: Provenance
    assessed_entropy: float
    creditable: bool
    configuration: str = ""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.samples < 0:
            raise ValueError("harvest width must be positive and samples non-negative")
        if len(self.data) != (self.width * self.samples + 7) // 8:
            raise ValueError("harvest data length does not match width * samples bits")
        if not 0.0 < self.assessed_entropy <= 1.0:
            raise ValueError("assessed entropy must be in (0, 1] bits per bit")

    @property
    def nbits(self) -> int:
        """Number of raw bits in the harvest."""
        return self.width * self.samples

    def bits(self) -> npt.NDArray[np.uint8]:
        """Return the bits as a ``(samples, width)`` array of 0s and 1s."""
        import numpy as np

        flat = np.unpackbits(np.frombuffer(self.data, dtype=np.uint8), count=self.nbits)
        return flat.reshape(self.samples, self.width)


@runtime_checkable
class Source(Protocol):
    """Anything that can be asked for a harvest of raw bits."""

    #: One of :data:`quantumrng.provenance.SOURCE_KINDS`.
    kind: str

    def info(self) -> dict[str, Any]:
        """Return what status pages show about this source: kind, backend, credit claim;
        never a credential."""
        ...

    def harvest(self) -> Harvest:
        """Run the source once and return its raw bits.

        Raises :class:`quantumrng.errors.SourceError` (or a subclass) when the
        source cannot deliver.
        """
        ...
