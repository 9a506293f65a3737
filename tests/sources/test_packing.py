"""Bit layout of a harvest: Qiskit's BitArray repacked so column i is classical bit i."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from qiskit.primitives.containers import BitArray

from quantumrng.sources._common import hadamard_circuit, packed_columns, stamp
from quantumrng.sources.base import Harvest


def test_known_answer_two_bytes() -> None:
    # Qiskit bitstring '0001110010000101' (bit 15 ... bit 0) is stored as [28, 133];
    # columns 0..15 read it right to left: 1010000100111000 -> 0xA1 0x38.
    assert packed_columns(np.array([[28, 133]], dtype=np.uint8), 16) == b"\xa1\x38"


def test_known_answer_partial_byte_rows_run_together() -> None:
    # Two shots of 3 bits: bit0=1 (b001), then bit2=1 (b100) -> columns 100 001, padded.
    array = np.array([[0b001], [0b100]], dtype=np.uint8)
    assert packed_columns(array, 3) == bytes([0b10000100])


@given(
    st.integers(1, 40).flatmap(
        lambda width: st.tuples(
            st.just(width),
            hnp.arrays(np.uint8, st.tuples(st.integers(1, 20), st.just((width + 7) // 8))),
        )
    )
)
def test_columns_match_qiskit_bitstrings(case: tuple[int, np.ndarray]) -> None:
    width, raw = case
    raw = raw.copy()
    raw[:, 0] &= (1 << (width - 8 * (raw.shape[1] - 1))) - 1  # Qiskit zeroes the padding
    bitstrings = BitArray(raw, width).get_bitstrings()
    harvest = Harvest(
        data=packed_columns(raw, width),
        width=width,
        samples=raw.shape[0],
        provenance=stamp("simulator"),
        assessed_entropy=1.0,
        creditable=False,
    )
    expected = np.array([[int(c) for c in reversed(s)] for s in bitstrings], dtype=np.uint8)
    assert np.array_equal(harvest.bits(), expected)


def test_real_aer_run_puts_qubit_i_in_column_i() -> None:
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
    from qiskit_aer.primitives import SamplerV2

    ones = {0, 3, 9, 10}
    qreg, creg = QuantumRegister(12), ClassicalRegister(12, "bits")
    circuit = QuantumCircuit(qreg, creg)
    for i in sorted(ones):
        circuit.x(qreg[i])
    circuit.measure(qreg, creg)
    array = SamplerV2(seed=1).run([circuit], shots=5).result()[0].data.bits.array
    bits = np.unpackbits(np.frombuffer(packed_columns(array, 12), np.uint8), count=60)
    assert bits.reshape(5, 12).tolist() == [[int(i in ones) for i in range(12)]] * 5


@pytest.mark.parametrize(("shape", "width"), [((4,), 8), ((4, 1), 9), ((4, 1), 0), ((2, 2, 2), 8)])
def test_rejects_arrays_that_do_not_hold_width_bits(shape: tuple[int, ...], width: int) -> None:
    with pytest.raises(ValueError):
        packed_columns(np.zeros(shape, dtype=np.uint8), width)


def test_hadamard_circuit_is_cached_and_measures_every_qubit() -> None:
    circuit = hadamard_circuit(7)
    assert circuit is hadamard_circuit(7)
    ops = circuit.count_ops()
    assert ops["h"] == 7
    assert ops["measure"] == 7
    assert [c.name for c in circuit.cregs] == ["bits"]


def test_stamp_is_fresh_each_time() -> None:
    a, b = stamp("os", backend="getrandom"), stamp("os", backend="getrandom")
    assert a.harvest_id != b.harvest_id
    assert len(a.harvest_id) == 32
    int(a.harvest_id, 16)
    assert a.harvested_at <= b.harvested_at
