"""The simulator source: Aer sampling of the Hadamard circuit, never credited."""

from __future__ import annotations

import numpy as np
import pytest

from quantumrng.config import Settings
from quantumrng.errors import SourceError
from quantumrng.sources import SimulatorSource
from quantumrng.sources._common import NOMINAL_ENTROPY


def test_harvest_shape_provenance_and_no_credit() -> None:
    source = SimulatorSource(Settings(qubits=12, shots=1000))
    harvest = source.harvest()
    assert (harvest.width, harvest.samples, len(harvest.data)) == (12, 1000, 1500)
    assert harvest.creditable is False
    assert harvest.assessed_entropy == NOMINAL_ENTROPY
    prov = harvest.provenance
    assert (prov.source, prov.backend, prov.qubits, prov.shots) == (
        "simulator",
        "aer_simulator",
        12,
        1000,
    )
    assert prov.job_id is None
    assert prov.quantum is False


def test_every_column_is_unbiased() -> None:
    # 4096 fair bits per column: a mean outside 0.5 +- 5 sigma (0.039) fails with p < 1e-6.
    bits = SimulatorSource(Settings(qubits=16, shots=4096, simulator_seed=7)).harvest().bits()
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 5 * 0.5 / np.sqrt(4096))


def test_columns_are_not_copies_of_each_other() -> None:
    bits = SimulatorSource(Settings(qubits=8, shots=2048, simulator_seed=3)).harvest().bits()
    agreement = (bits[:, :, None] == bits[:, None, :]).mean(axis=0)
    off_diagonal = agreement[~np.eye(8, dtype=bool)]
    assert np.all(np.abs(off_diagonal - 0.5) < 0.06)


def test_fixed_seed_gives_a_reproducible_sequence_of_distinct_harvests() -> None:
    a = SimulatorSource(Settings(qubits=4, shots=256, simulator_seed=42))
    b = SimulatorSource(Settings(qubits=4, shots=256, simulator_seed=42))
    first, second = a.harvest().data, a.harvest().data
    assert [first, second] == [b.harvest().data, b.harvest().data]
    assert first != second


def test_unseeded_harvests_differ() -> None:
    source = SimulatorSource(Settings(qubits=16, shots=256))
    assert source.harvest().data != source.harvest().data


def test_single_qubit_single_shot() -> None:
    harvest = SimulatorSource(Settings(qubits=1, shots=1)).harvest()
    assert (harvest.width, harvest.samples, len(harvest.data)) == (1, 1, 1)
    assert harvest.data[0] & 0x7F == 0


def test_aer_failure_is_a_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import qiskit_aer.primitives

    class Broken:
        def __init__(self, **_: object) -> None:
            raise RuntimeError("simulator exploded")

    monkeypatch.setattr(qiskit_aer.primitives, "SamplerV2", Broken)
    with pytest.raises(SourceError, match="Aer simulation failed"):
        SimulatorSource(Settings()).harvest()


def test_info_names_the_backend_and_no_credit() -> None:
    info = SimulatorSource(Settings(qubits=5, shots=10)).info()
    assert info["kind"] == "simulator"
    assert info["backend"] == "aer_simulator"
    assert info["creditable"] is False
    assert (info["qubits"], info["shots"]) == (5, 10)
