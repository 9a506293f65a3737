"""Witnesses in real jobs: the ideal simulator, a noisy fake backend, a classical device.

The IBM source runs against fake runtime services (no network): an ideal Aer
backend, ``FakeManilaV2`` (IBM's noise model of a 5-qubit device) and a
classical stand-in sampler that answers every witness circuit from a local
hidden-variable model.
"""

from __future__ import annotations

import math
import random
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
import qiskit_ibm_runtime
from qiskit.primitives import BitArray
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from quantumrng.config import Settings
from quantumrng.harvester import Harvester
from quantumrng.pool.base import Pool
from quantumrng.sources import IBMSource, SimulatorSource
from quantumrng.sources._witness import MERMIN_BASES, SETTING_VALUES, parameter_names
from quantumrng.witness import ENTROPY_BYTES, KINDS, draw_plan, job_shape
from tests.sources.test_ibm import FakeService


def _ibm(service: Any, entropy: Any = None, **changes: Any) -> IBMSource:
    values: dict[str, Any] = {"source": "ibm", "qubits": 3, "shots": 20000, "ibm_timeout": 30.0}
    values.update(changes)
    kwargs = {} if entropy is None else {"entropy": entropy}
    return IBMSource(Settings(**values), service=service, **kwargs)


def _by_kind(harvest: Any) -> dict[str, Any]:
    return {w.kind: w for w in harvest.provenance.witness}


def test_the_ideal_simulator_reaches_the_quantum_values_and_says_simulated() -> None:
    harvest = SimulatorSource(Settings(qubits=3, shots=40000)).harvest()
    mermin, chsh = _by_kind(harvest)["mermin"], _by_kind(harvest)["chsh"]
    assert (mermin.value, mermin.stderr) == (4.0, 0.0)
    assert abs(chsh.value - 2 * math.sqrt(2)) < 4 * chsh.stderr
    assert 0 < chsh.stderr < 0.1
    assert {w.status for w in (mermin, chsh)} == {"simulated"}
    assert harvest.provenance.witness_status == "simulated"
    assert harvest.samples == 40000 and harvest.creditable is False


def test_the_ideal_backend_through_the_ibm_source_passes() -> None:
    harvest = _ibm(FakeService(AerSimulator())).harvest()
    witness = _by_kind(harvest)
    assert witness["mermin"].value == 4.0
    assert abs(witness["chsh"].value - 2 * math.sqrt(2)) < 4 * witness["chsh"].stderr
    assert all(w.status == "passed" and w.confidence >= 0.99 for w in witness.values())
    assert harvest.provenance.witness_status == "passed"
    spent = sum(w.shots for w in witness.values())
    assert 0.09 < spent / (harvest.samples + spent) <= 0.1


def test_a_noisy_fake_backend_shows_a_reduced_value() -> None:
    harvest = _ibm(FakeService(FakeManilaV2()), qubits=5).harvest()
    for w in harvest.provenance.witness:
        assert w.value + 4 * w.stderr < KINDS[w.kind].quantum  # noise pulls it down
        assert w.value > w.bound  # still above what a classical model reaches
    assert harvest.provenance.witness_status in ("passed", "failed")


# --- a classical device -------------------------------------------------------------------


def _terms(circuit: Any, values: np.ndarray) -> list[int]:
    """The term each binding of a witness pub measures, read from its parameter values."""
    kind = circuit.metadata["witness"]
    names = [p.name for p in circuit.parameters]
    order = [names.index(name) for name in parameter_names(kind)]
    table = np.array(SETTING_VALUES[kind])
    return [int(np.argmin(np.abs(table - row[order]).sum(axis=1))) for row in values]


class ClassicalSampler:
    """Stands in for ``SamplerV2`` on a classical device: fair coins for the harvest, a
    local hidden-variable model for every witness binding (it reads each binding's
    setting, as a device reads the gates, but its values are fixed before)."""

    runs: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, mode: Any) -> None:
        self.mode = mode
        self.options = SimpleNamespace(environment=SimpleNamespace(job_tags=None))
        self.rng = random.Random(7)

    def run(self, pubs: list[Any], shots: int) -> Any:
        assert all(len(p) == 2 for p in pubs)  # no pub carries shots of its own
        ClassicalSampler.runs.append(
            {
                "tags": self.options.environment.job_tags,
                "shots": shots,
                "settings": [
                    (c.metadata["witness"], t)
                    for c, values in pubs
                    if "witness" in (c.metadata or {})
                    for t in _terms(c, values)
                ],
            }
        )
        results = [self._answer(c, np.asarray(values), shots) for c, values in pubs]
        return SimpleNamespace(job_id=lambda: "classical-1", result=lambda: results)

    def _answer(self, circuit: Any, values: np.ndarray, shots: int) -> Any:
        meta = circuit.metadata or {}
        width = circuit.num_clbits
        if "witness" not in meta:
            rng = np.random.default_rng(1)
            bits = rng.integers(0, 2, (len(values), shots, width)).astype(bool)
        else:
            bits = np.stack(
                [self._lhv(meta["witness"], t, shots, width) for t in _terms(circuit, values)]
            )
        array = BitArray.from_bool_array(bits, order="little").array
        return SimpleNamespace(data=SimpleNamespace(bits=SimpleNamespace(array=array)))

    def _lhv(self, kind: str, term: int, shots: int, width: int) -> np.ndarray:
        group = KINDS[kind].group
        out = np.zeros((shots, width), dtype=bool)
        for s in range(shots):
            for c in range(width // group):
                if kind == "chsh":  # A = B = lambda at every angle: S = 2
                    values = [self.rng.choice((1, -1))] * 2
                else:  # x = (1,1,1), y = (1,1,-1): M = 2, two qubits flipped at random
                    x, y = [1, 1, 1], [1, 1, -1]
                    for q in self.rng.sample(range(3), 2 * self.rng.randrange(2)):
                        x[q], y[q] = -x[q], -y[q]
                    values = [x[q] if b == "X" else y[q] for q, b in enumerate(MERMIN_BASES[term])]
                for q, v in enumerate(values):
                    out[s, c * group + q] = v < 0
        return out


@pytest.fixture
def classical(monkeypatch: pytest.MonkeyPatch) -> type[ClassicalSampler]:
    monkeypatch.setattr(qiskit_ibm_runtime, "SamplerV2", ClassicalSampler)
    monkeypatch.setattr(ClassicalSampler, "runs", [])
    return ClassicalSampler


def test_a_classical_device_stays_at_the_bound_and_is_flagged(
    classical: type[ClassicalSampler],
) -> None:
    harvest = _ibm(FakeService(FakeManilaV2()), qubits=5, shots=8000).harvest()
    assert harvest.provenance.witness
    for w in harvest.provenance.witness:
        assert w.value <= w.bound + 3 * max(w.stderr, 0.01)
        assert w.status == "failed"
    assert harvest.provenance.witness_status == "failed"


def test_a_classical_device_earns_no_credit(
    classical: type[ClassicalSampler], memory_pool: Pool
) -> None:
    source = _ibm(FakeService(FakeManilaV2()), qubits=5, shots=4000)
    harvester = Harvester(source, memory_pool, assess_in_subprocess=False)
    blocks = harvester.harvest_once()
    assert blocks and all(b.credited_bits == 0 for b in blocks)  # stored, never credited
    assert harvester.snapshot()["assessment"]["samples_collected"] == 0  # nor assessed
    assert harvester.snapshot()["witness"]["withheld"] == 1


def test_settings_come_from_fresh_local_entropy_and_are_committed_with_the_job(
    classical: type[ClassicalSampler],
) -> None:
    drawn: list[bytes] = []

    def entropy(n: int) -> bytes:
        drawn.append(bytes(random.Random(len(drawn)).randbytes(n)))
        return drawn[-1]

    source = _ibm(FakeService(FakeManilaV2()), qubits=5, shots=4000, entropy=entropy)
    first, second = source.harvest(), source.harvest()
    assert [len(e) for e in drawn] == [ENTROPY_BYTES, ENTROPY_BYTES]  # one draw per job
    for harvest, fresh, run in zip((first, second), drawn, classical.runs, strict=True):
        plans = draw_plan(fresh, qubits=5, job_shots=4000, share=0.1)
        witness = harvest.provenance.witness
        assert [w.settings_commitment for w in witness] == [p.commitment for p in plans]
        assert all(w.opens() for w in witness)
        # the bindings that ran measured exactly the committed settings, in order
        assert run["settings"] == [(p.kind, t) for p in plans for t in p.settings]
        assert run["shots"] == job_shape(plans, 4000).shots_per_binding
        assert run["tags"] == [f"qrng-witness:{p.kind}:{p.commitment}" for p in plans]
    assert first.provenance.witness != second.provenance.witness


def test_a_job_that_returns_no_witness_results_is_failed_not_credited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class HarvestOnly(ClassicalSampler):
        def run(self, pubs: list[Any], shots: int) -> Any:
            return super().run(pubs[:1], shots)  # a replayed job of the harvest alone

    monkeypatch.setattr(qiskit_ibm_runtime, "SamplerV2", HarvestOnly)
    harvest = _ibm(FakeService(FakeManilaV2()), qubits=5, shots=4000).harvest()
    assert (
        harvest.samples
        == job_shape(draw_plan(bytes(32), qubits=5, job_shots=4000, share=0.1), 4000).harvest_shots
    )
    assert [w.status for w in harvest.provenance.witness] == ["failed", "failed"]
    assert all(w.shots > 0 and w.confidence == 0.0 for w in harvest.provenance.witness)


def test_witness_results_that_miss_a_committed_setting_are_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class DropsASetting(ClassicalSampler):
        def run(self, pubs: list[Any], shots: int) -> Any:
            return super().run([pubs[0], *((c, v[:-1]) for c, v in pubs[1:])], shots)

    monkeypatch.setattr(qiskit_ibm_runtime, "SamplerV2", DropsASetting)
    harvest = _ibm(FakeService(FakeManilaV2()), qubits=5, shots=4000).harvest()
    assert [w.status for w in harvest.provenance.witness] == ["failed", "failed"]
    assert harvest.provenance.witness_status == "failed"
