"""The ``simulator`` source: the Hadamard circuit sampled by Qiskit Aer.

The default source, so everything runs without an account. Its bits come
from Aer's seeded PRNG, not from a quantum measurement: they are health
tested like any other harvest (``NOMINAL_ENTROPY`` sets the cutoffs)
but earn no entropy credit (``creditable`` False). Its job runs the physics
witnesses too (:mod:`quantumrng.witness`): they violate their bounds as
quantum mechanics predicts, which proves nothing about a device, so their
status is ``simulated``. Aer takes a shot count per pub, so the harvest keeps
its ``shots`` and the witness pubs (their settings as bindings, the plans'
shots per setting, drawn for the job) come on top of it, at most
``witness_share`` of the job.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from quantumrng.config import Settings
from quantumrng.errors import SourceError
from quantumrng.sources import _witness
from quantumrng.sources._common import (
    CREG,
    NOMINAL_ENTROPY,
    hadamard_circuit,
    packed_columns,
    stamp,
)
from quantumrng.sources.base import Harvest
from quantumrng.witness import WitnessPlan, fresh_plan

__all__ = ["SimulatorSource"]

BACKEND = "aer_simulator"
_SEED_LIMIT = 1 << 63  # Aer takes a signed 64-bit seed
#: Qubits the simulator lays its witnesses on: one copy of each (a simulated qubit is
#: every other simulated qubit; more copies would only cost simulation time).
WITNESS_QUBITS = 3


class SimulatorSource:
    """Sample H on every qubit with Aer's ``SamplerV2``; Qiskit loads on first harvest.

    With ``settings.simulator_seed`` the sequence of harvests is reproducible
    (each harvest gets its own seed drawn from it); otherwise every harvest
    is seeded from ``os.urandom``. The witness settings always come from
    ``entropy`` (fresh local entropy, whatever the seed); ``witness=False``
    runs none (benchmarks).
    """

    kind = "simulator"

    def __init__(
        self,
        settings: Settings,
        *,
        witness: bool = True,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.qubits = settings.qubits
        self.shots = settings.shots
        self.witness_share = settings.witness_share if witness else 0.0
        self.witness_confidence = settings.witness_confidence
        self._entropy = entropy
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
            "witness_share": self.witness_share,
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
        plans: tuple[WitnessPlan, ...] = ()
        if self.witness_share:
            plans = fresh_plan(
                qubits=min(self.qubits, WITNESS_QUBITS),
                job_shots=self.shots,
                share=self.witness_share,
                entropy=self._entropy,
            )
        try:
            sampler = SamplerV2(seed=self._next_seed())
            witness_pubs = [
                (circuit_, values, plan.shots_per_circuit)
                for (circuit_, values), plan in zip(_witness.pubs(plans), plans, strict=True)
            ]
            result = sampler.run([circuit, *witness_pubs], shots=self.shots).result()
            array = getattr(result[0].data, CREG).array
        except Exception as exc:
            raise SourceError(f"Aer simulation failed ({type(exc).__name__})") from None
        witness = _witness.evaluate(
            plans, result, 1, confidence=self.witness_confidence, simulated=True
        )
        samples = int(array.shape[0])
        return Harvest(
            data=packed_columns(array, self.qubits),
            width=self.qubits,
            samples=samples,
            provenance=replace(
                stamp(self.kind, backend=BACKEND, qubits=self.qubits, shots=samples),
                witness=witness,
            ),
            assessed_entropy=NOMINAL_ENTROPY,
            creditable=False,
        )
