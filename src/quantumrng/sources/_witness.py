"""The witness circuits a quantum source runs beside its harvest, and their outcomes.

Private to :mod:`quantumrng.sources`. The statistics live in
:mod:`quantumrng.witness`; this module turns a :class:`WitnessPlan` into
Qiskit circuits (Qiskit imported inside the functions) and a sampler's bit
arrays back into products of outcomes.

Each kind is ONE parametrized circuit; its settings are parameter bindings,
so every pub of a job can take the job's single shot count.

- Mermin: GHZ (|000> + |111>)/sqrt 2, each qubit measured after Rz(-phi)
  and H: phi = 0 measures X, phi = pi/2 measures Y (Rz(-pi/2) H is S-dagger
  H up to a global phase), as the setting's term says: XXX, XYY, YXY, YYX.
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
import numpy.typing as npt

from quantumrng.sources._common import CREG
from quantumrng.witness import Witness, WitnessPlan, missing, score

__all__ = ["SETTING_VALUES", "evaluate", "parameter_values", "pubs", "witness_circuit"]

MERMIN_BASES = ("XXX", "XYY", "YXY", "YYX")
_PHASE = {"X": 0.0, "Y": math.pi / 2}
CHSH_ANGLES = ((0.0, math.pi / 4), (0.0, -math.pi / 4), (math.pi / 2, math.pi / 4),
               (math.pi / 2, -math.pi / 4))  # fmt: skip
#: Per kind, per term: the value of each position's parameter (positions in copy order).
SETTING_VALUES: dict[str, tuple[tuple[float, ...], ...]] = {
    "mermin": tuple(tuple(_PHASE[b] for b in bases) for bases in MERMIN_BASES),
    "chsh": CHSH_ANGLES,
}
_PARAMETER = {"mermin": "phi", "chsh": "angle"}


def parameter_names(kind: str) -> tuple[str, ...]:
    """The names of a kind's parameters, one per position of a copy."""
    width = len(SETTING_VALUES[kind][0])
    return tuple(f"{_PARAMETER[kind]}{i}" for i in range(width))


@functools.lru_cache(maxsize=64)
def witness_circuit(kind: str, qubits: int, copies: tuple[tuple[int, ...], ...]) -> Any:
    """The parametrized circuit of a kind on a ``qubits``-wide register (the harvest's),
    one copy of the witness state on each group of ``copies``, measured into ``bits``.

    Position ``i`` of every copy is measured in the basis set by parameter
    ``parameter_names(kind)[i]``. Cached; callers must not mutate it.
    ``metadata`` names the kind.
    """
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
    from qiskit.circuit import Parameter

    parameters = [Parameter(name) for name in parameter_names(kind)]
    measured = [q for group in copies for q in group]
    qreg = QuantumRegister(qubits, "q")
    creg = ClassicalRegister(len(measured), CREG)
    circuit = QuantumCircuit(qreg, creg, name=f"{kind}x{len(copies)}", metadata={"witness": kind})
    for group in copies:
        circuit.h(group[0])
        for a, b in itertools.pairwise(group):
            circuit.cx(a, b)
        for q, parameter in zip(group, parameters, strict=True):
            if kind == "mermin":
                circuit.rz(-parameter, q)
                circuit.h(q)
            else:
                circuit.ry(-parameter, q)
    circuit.measure(measured, creg)
    return circuit


def parameter_values(plan: WitnessPlan, circuit: Any) -> npt.NDArray[np.float64]:
    """The plan's settings as bindings of ``circuit`` (the kind's, possibly transpiled):
    shape (settings, parameters), columns in ``circuit.parameters`` order."""
    names = parameter_names(plan.kind)
    column = [names.index(p.name) for p in circuit.parameters]
    table = np.array(SETTING_VALUES[plan.kind], dtype=np.float64)
    return table[np.array(plan.settings, dtype=np.intp)][:, column]


def pubs(
    plans: Sequence[WitnessPlan], transform: Callable[[Any], Any] = lambda c: c
) -> list[tuple[Any, npt.NDArray[np.float64]]]:
    """The sampler pubs of a batch, one per plan in plan order, its bindings the plan's
    settings in order; no shots of their own (the job's apply to every binding).
    ``transform`` maps a circuit to what runs (the backend's transpiler)."""
    out = []
    for plan in plans:
        circuit = transform(witness_circuit(plan.kind, plan.qubits, plan.copies))
        out.append((circuit, parameter_values(plan, circuit)))
    return out


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
    """Score plan ``k`` from ``result[offset + k]`` (pubs in :func:`pubs` order), whose
    bit array has shape (settings, shots, bytes). A batch whose outcomes are missing
    or malformed is scored :func:`missing` (failed)."""
    witnesses = []
    for at, plan in enumerate(plans, start=offset):
        try:
            array = np.asarray(getattr(result[at].data, CREG).array)
            if array.ndim != 3 or array.shape[0] != len(plan.settings):
                raise ValueError("witness bit array does not match the plan's settings")
            outcomes = [_products(array[i], plan) for i in range(len(plan.settings))]
        except Exception:
            witnesses.append(missing(plan, simulated=simulated))
        else:
            witnesses.append(score(plan, outcomes, confidence=confidence, simulated=simulated))
    return tuple(witnesses)
