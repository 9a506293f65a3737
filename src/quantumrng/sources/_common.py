"""Helpers shared by the sources: provenance stamps, the circuit, bit packing.

Low-level and private to :mod:`quantumrng.sources`. Qiskit is imported only
inside :func:`hadamard_circuit`, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from quantumrng.provenance import Provenance

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["CREG", "NOMINAL_ENTROPY", "hadamard_circuit", "packed_columns", "stamp"]

#: Min-entropy per bit assumed, for health-test cutoffs, by sources whose bits should
#: look ideal but earn no credit (kernel CSPRNG, simulated fair qubits). Not 1:
#: with alpha = 2^-20 the RCT cutoff at H = 1 is 21 and a fair 64 Kbit harvest would
#: trip it one time in 16; at 0.75 the cutoff is 28 and that is one in 2^11
#: (SP 800-90B §4.4.1), while a stuck or strongly biased stream is still caught.
NOMINAL_ENTROPY = 0.75

#: Name of the classical register; the sampler result exposes it as ``data.<CREG>``.
CREG = "bits"


def stamp(
    source: str,
    *,
    backend: str | None = None,
    job_id: str | None = None,
    qubits: int = 0,
    shots: int = 0,
) -> Provenance:
    """Return a fresh provenance record with a new harvest id and the current time."""
    return Provenance(
        source=source,
        harvest_id=uuid.uuid4().hex,
        harvested_at=time.time(),
        backend=backend,
        job_id=job_id,
        qubits=qubits,
        shots=shots,
    )


@functools.lru_cache(maxsize=8)
def hadamard_circuit(qubits: int) -> Any:
    """Return the circuit H on every qubit, then measure qubit ``i`` into bit ``i``.

    Each measurement of |+> is one bit of ideally full entropy. The circuit
    is cached per width; callers must not mutate it.
    """
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

    qreg = QuantumRegister(qubits, "q")
    creg = ClassicalRegister(qubits, CREG)
    circuit = QuantumCircuit(qreg, creg, name=f"hadamard{qubits}")
    circuit.h(qreg)
    circuit.measure(qreg, creg)
    return circuit


def packed_columns(array: npt.ArrayLike, width: int) -> bytes:
    """Repack a Qiskit ``BitArray.array`` so column ``i`` is classical bit ``i``.

    Qiskit stores each shot as big-endian bytes with bit ``i`` at weight
    ``2**i`` (the last byte holds bits 0-7). The result is the
    :class:`~quantumrng.sources.base.Harvest` layout: rows of ``width``
    bits, packed row-major, most significant bit first.
    """
    shots = np.asarray(array, dtype=np.uint8)
    if shots.ndim != 2 or not 0 < width <= shots.shape[1] * 8:
        raise ValueError("bit array must be (shots, bytes) and hold at least width bits")
    columns = np.unpackbits(shots[:, ::-1], axis=1, bitorder="little")[:, :width]
    return np.packbits(columns, axis=None).tobytes()
