"""The witness circuits a quantum source runs beside its harvest, and their outcomes.

Private to :mod:`quantumrng.sources`. The statistics live in
:mod:`quantumrng.witness`; this module turns a :class:`WitnessPlan` into
Qiskit circuits (Qiskit imported inside the functions) and a sampler's bit
arrays back into products of outcomes.

- Mermin: GHZ (|000> + |111>)/sqrt 2, each qubit measured in X (H) or Y
  (S-dagger, H) as the circuit's term says: XXX, XYY, YXY, YYX.
- CHSH: the Bell pair (|00> + |11>)/sqrt 2, qubit A measured at angle 0 (a)
  or pi/2 (a'), qubit B at pi/4 (b) or -pi/4 (b'), in the X-Z plane
  (Ry(-angle), then Z); terms ab, ab', a'b, a'b'.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from quantumrng.sources._common import CREG
from quantumrng.witness import Witness, WitnessPlan, missing, score

__all__ = ["evaluate", "pubs", "witness_circuit"]

MERMIN_BASES = ("XXX", "XYY", "YXY", "YYX")
CHSH_ANGLES = ((0.0, math.pi / 4), (0.0, -math.pi / 4), (math.pi / 2, math.pi / 4),
               (math.pi / 2, -math.pi / 4))  # fmt: skip


@functools.lru_cache(maxsize=64)
def witness_circuit(kind: str, term: int, qubits: int, copies: tuple[tuple[int, ...], ...]) -> Any:
    """The circuit of one setting on a ``qubits``-wide register (the harvest's), one
    copy of the witness state on each group of ``copies``, measured into ``bits``.

    Cached; callers must not mutate it. ``metadata`` names the setting.
    """
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

    measured = [q for group in copies for q in group]
    qreg = QuantumRegister(qubits, "q")
    creg = ClassicalRegister(len(measured), CREG)
    circuit = QuantumCircuit(
        qreg, creg, name=f"{kind}{term}", metadata={"witness": kind, "term": term}
    )
    for group in copies:
        circuit.h(group[0])
        for a, b in itertools.pairwise(group):
            circuit.cx(a, b)
        if kind == "mermin":
            for q, basis in zip(group, MERMIN_BASES[term], strict=True):
                if basis == "Y":
                    circuit.sdg(q)
                circuit.h(q)
        else:
            for q, angle in zip(group, CHSH_ANGLES[term], strict=True):
                circuit.ry(-angle, q)
    circuit.measure(measured, creg)
    return circuit


def pubs(
    plans: Sequence[WitnessPlan], transform: Callable[[Any], Any] = lambda c: c
) -> list[tuple[Any, None, int]]:
    """The sampler pubs of a batch, in plan order then circuit order, each with its
    own shots; ``transform`` maps a circuit to what runs (the backend's transpiler)."""
    return [
        (
            transform(witness_circuit(plan.kind, term, plan.qubits, plan.copies)),
            None,
            plan.shots_per_circuit,
        )
        for plan in plans
        for term in plan.settings
    ]


def _products(array: Any, plan: WitnessPlan) -> list[float]:
    """Per shot, the mean over the copies of the product of their outcomes (+1/-1)."""
    shots = np.asarray(array, dtype=np.uint8)
    group = len(plan.copies[0])
    width = group * len(plan.copies)
    if shots.ndim != 2 or shots.shape[0] < 1 or shots.shape[1] * 8 < width:
        raise ValueError("malformed witness bit array")
    bits = np.unpackbits(shots[:, ::-1], axis=1, bitorder="little")[:, :width].astype(np.int64)
    parity = bits.reshape(shots.shape[0], len(plan.copies), group).sum(axis=2) % 2
    products: list[float] = (1 - 2 * parity).mean(axis=1).tolist()
    return products


def evaluate(
    plans: Sequence[WitnessPlan],
    result: Any,
    offset: int,
    *,
    confidence: float,
    simulated: bool,
) -> tuple[Witness, ...]:
    """Score each plan from ``result[offset:]`` (pubs in :func:`pubs` order). A batch
    whose outcomes are missing or malformed is scored :func:`missing` (failed)."""
    witnesses = []
    at = offset
    for plan in plans:
        try:
            outcomes = [
                _products(getattr(result[at + i].data, CREG).array, plan)
                for i in range(len(plan.settings))
            ]
        except Exception:
            witnesses.append(missing(plan, simulated=simulated))
        else:
            witnesses.append(score(plan, outcomes, confidence=confidence, simulated=simulated))
        at += len(plan.settings)
    return tuple(witnesses)
