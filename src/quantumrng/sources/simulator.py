"""The ``simulator`` source: the Hadamard circuit sampled by Qiskit Aer.

The default source, so everything runs without an account. Its bits come
from Aer's seeded PRNG, not from a quantum measurement: they are health
tested like any other harvest (``NOMINAL_ENTROPY`` sets the cutoffs)
but earn no entropy credit (``creditable`` False).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from quantumrng.config import Settings
from quantumrng.errors import SourceError
from quantumrng.sources._common import (
    CREG,
    NOMINAL_ENTROPY,
    hadamard_circuit,
    packed_columns,
    stamp,
)
from quantumrng.sources.base import Harvest

__all__ = ["SimulatorSource"]

BACKEND = "aer_simulator"
_SEED_LIMIT = 1 << 63  # Aer takes a signed 64-bit seed


class SimulatorSource:
    """Sample H on every qubit with Aer's ``SamplerV2``; Qiskit loads on first harvest.

    With ``settings.simulator_seed`` the sequence of harvests is reproducible
    (each harvest gets its own seed drawn from it); otherwise every harvest
    is seeded from ``os.urandom``.
    """

    kind = "simulator"

    def __init__(self, settings: Settings) -> None:
        self.qubits = settings.qubits
        self.shots = settings.shots
        self._fixed = settings.simulator_seed is not None
        self._seeds = np.random.default_rng(settings.simulator_seed) if self._fixed else None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SimulatorSource(qubits={self.qubits}, shots={self.shots})"

    def info(self) -> dict[str, Any]:
        """Return what status pages show about this source."""
        return {
            "kind": self.kind,
            "backend": BACKEND,
            "qubits": self.qubits,
            "shots": self.shots,
            "seeded": self._fixed,
            "assessed_entropy": NOMINAL_ENTROPY,
            "creditable": False,
        }

    def _next_seed(self) -> int:
        with self._lock:
            if self._seeds is not None:
                return int(self._seeds.integers(_SEED_LIMIT))
        return int.from_bytes(os.urandom(8), "big") % _SEED_LIMIT

    def harvest(self) -> Harvest:
        """Run the circuit for ``shots`` shots and return the measured bits."""
        try:
            from qiskit_aer.primitives import SamplerV2
        except ImportError:
            raise SourceError("the simulator source needs qiskit-aer installed") from None
        circuit = hadamard_circuit(self.qubits)
        try:
            sampler = SamplerV2(seed=self._next_seed())
            result = sampler.run([circuit], shots=self.shots).result()
            array = getattr(result[0].data, CREG).array
        except Exception as exc:
            raise SourceError(f"Aer simulation failed ({type(exc).__name__})") from None
        samples = int(array.shape[0])
        return Harvest(
            data=packed_columns(array, self.qubits),
            width=self.qubits,
            samples=samples,
            provenance=stamp(self.kind, backend=BACKEND, qubits=self.qubits, shots=samples),
            assessed_entropy=NOMINAL_ENTROPY,
            creditable=False,
        )
