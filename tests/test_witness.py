"""Physics witnesses: settings, commitments, the estimator, and what they decide."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.cli.pool import _witness_text
from quantumrng.harvester import Harvester
from quantumrng.pool._common import dump_provenance, load_provenance
from quantumrng.pool.base import Pool
from quantumrng.provenance import Provenance
from quantumrng.server.service import source_json
from quantumrng.sources._common import NOMINAL_ENTROPY
from quantumrng.sources.base import Harvest
from quantumrng.witness import (
    ENTROPY_BYTES,
    KINDS,
    Witness,
    WitnessPlan,
    classical_p_value,
    draw_plan,
    draw_settings,
    fresh_plan,
    harvest_status,
    job_shape,
    missing,
    score,
)

entropy_bytes = st.binary(min_size=ENTROPY_BYTES, max_size=ENTROPY_BYTES)


def _plan(kind: str = "mermin", shots_per_circuit: int = 50, qubits: int = 3) -> WitnessPlan:
    entropy = bytes(range(ENTROPY_BYTES))
    return WitnessPlan(kind, draw_settings(entropy, kind), shots_per_circuit, qubits, b"n" * 16)


# --- settings and commitments ------------------------------------------------------------


@given(entropy_bytes, st.sampled_from(sorted(KINDS)))
def test_every_term_is_measured_equally_often_in_a_random_order(entropy: bytes, kind: str) -> None:
    drawn = draw_settings(entropy, kind)
    assert Counter(drawn) == {t: KINDS[kind].circuits // 4 for t in range(4)}
    assert draw_settings(entropy, kind) == drawn  # a function of the entropy alone


def test_chsh_gets_twice_the_settings_of_mermin() -> None:
    assert (KINDS["mermin"].circuits, KINDS["chsh"].circuits) == (8, 16)


def test_orders_are_spread_over_the_possible_shuffles() -> None:
    orders = Counter(draw_settings(random.Random(i).randbytes(32), "mermin") for i in range(5000))
    assert len(orders) > 1500  # 2520 possible; a biased shuffle reaches far fewer
    assert max(orders.values()) < 12


@given(entropy_bytes)
@settings(max_examples=50)
def test_the_commitment_opens_with_the_recorded_settings_and_nothing_else(entropy: bytes) -> None:
    for plan in draw_plan(entropy, qubits=5, job_shots=4096, share=0.1):
        outcomes = [[1.0] * plan.shots_per_circuit] * len(plan.settings)
        record = score(plan, outcomes, confidence=0.99)
        assert record.settings_commitment == plan.commitment
        assert record.opens()
        other = "".join(reversed(record.settings))
        if other != record.settings:
            assert not replace(record, settings=other).opens()
        assert not replace(record, nonce="00" * 16).opens()
        assert not replace(record, shots=record.shots + len(record.settings)).opens()
        assert not replace(record, qubits=record.qubits + 1).opens()


def test_fresh_plans_draw_new_local_entropy_each_time() -> None:
    drawn: list[bytes] = []

    def entropy(n: int) -> bytes:
        drawn.append(random.Random(len(drawn)).randbytes(n))
        return drawn[-1]

    first = fresh_plan(qubits=3, job_shots=4096, share=0.1, entropy=entropy)
    second = fresh_plan(qubits=3, job_shots=4096, share=0.1, entropy=entropy)
    assert [len(e) for e in drawn] == [ENTROPY_BYTES, ENTROPY_BYTES]
    assert first == draw_plan(drawn[0], qubits=3, job_shots=4096, share=0.1)
    assert [p.commitment for p in first] != [p.commitment for p in second]


@given(
    st.integers(1, 10**6),
    st.floats(0.001, 0.5),
    st.integers(1, 20),
)
def test_every_pub_takes_one_shot_count_and_the_witnesses_stay_within_their_share(
    shots: int, share: float, qubits: int
) -> None:
    plans = draw_plan(bytes(32), qubits=qubits, job_shots=shots, share=share)
    shape = job_shape(plans, shots)
    assert {p.shots_per_circuit for p in plans} <= {shape.shots_per_binding}
    assert shape.witness_shots == sum(p.shots for p in plans)
    assert shape.witness_share <= share
    assert shape.witness_shots / (shape.witness_shots + shape.harvest_shots) <= share
    # the job is ``shots`` rounded up to whole bindings
    total = shape.harvest_shots + shape.witness_shots
    assert shots <= total < shots + shape.shots_per_binding
    if plans:
        assert shape.witness_settings == sum(KINDS[p.kind].circuits for p in plans)


def test_the_job_shape_of_a_default_harvest() -> None:
    plans = draw_plan(bytes(32), qubits=5, job_shots=4096, share=0.1)
    shape = job_shape(plans, 4096)
    # 409 shots for 8 Mermin and 16 CHSH settings: 17 each; 4096 - 408 -> 217 bindings of 17
    assert (shape.shots_per_binding, shape.witness_settings) == (17, 24)
    assert (shape.harvest_bindings, shape.harvest_shots) == (217, 3689)
    assert shape.witness_share == pytest.approx(24 / 241)
    assert job_shape((), 4096) == type(shape)(4096, 1, 0)


def test_a_harvest_too_narrow_or_too_small_carries_no_witness() -> None:
    assert draw_plan(bytes(32), qubits=1, job_shots=10**6, share=0.1) == ()
    assert [p.kind for p in draw_plan(bytes(32), qubits=2, job_shots=4096, share=0.1)] == ["chsh"]
    assert draw_plan(bytes(32), qubits=16, job_shots=10, share=0.1) == ()
    assert draw_plan(bytes(32), qubits=16, job_shots=239, share=0.1) == ()
    assert draw_plan(bytes(32), qubits=16, job_shots=240, share=0.1) != ()


def test_copies_lie_on_disjoint_qubits_of_the_harvest() -> None:
    (mermin, chsh) = draw_plan(bytes(32), qubits=16, job_shots=4096, share=0.1)
    assert mermin.copies == tuple((3 * i, 3 * i + 1, 3 * i + 2) for i in range(5))
    assert chsh.copies == tuple((2 * i, 2 * i + 1) for i in range(8))


# --- the estimator -----------------------------------------------------------------------


def _outcomes(plan: WitnessPlan, means: Sequence[float], seed: int = 0) -> list[list[float]]:
    """Per circuit, products of +-1 with the given mean per term."""
    rng = random.Random(seed)
    return [
        [1.0 if rng.random() < (1 + means[t]) / 2 else -1.0 for _ in range(plan.shots_per_circuit)]
        for t in plan.settings
    ]


def test_an_ideal_ghz_reaches_four_with_overwhelming_confidence() -> None:
    plan = _plan("mermin", 50)
    record = score(plan, _outcomes(plan, [1, -1, -1, -1]), confidence=0.99)
    assert (record.value, record.stderr, record.bound) == (4.0, 0.0, 2.0)
    assert record.p_classical == pytest.approx(math.exp(-400 * math.log(4 / 3)))
    assert record.status == "passed" and record.shots == 400


def test_the_value_and_standard_error_follow_the_counts() -> None:
    plan = _plan("chsh", 2000)
    e = 1 / math.sqrt(2)
    record = score(plan, _outcomes(plan, [e, e, e, -e], seed=3), confidence=0.99)
    assert abs(record.value - 2 * math.sqrt(2)) < 4 * record.stderr
    assert record.stderr == pytest.approx(math.sqrt(4 * (1 - 0.5) / 8000), rel=0.05)
    assert record.status == "passed"


def test_a_value_at_the_classical_bound_fails_whatever_the_shots() -> None:
    plan = _plan("chsh", 5000)
    record = score(plan, _outcomes(plan, [0.5, 0.5, 0.5, -0.5], seed=1), confidence=0.99)
    assert record.confidence < 0.99 and record.status == "failed"


def test_the_simulator_says_simulated_even_when_it_violates_the_bound() -> None:
    plan = _plan("mermin", 50)
    record = score(plan, _outcomes(plan, [1, -1, -1, -1]), confidence=0.99, simulated=True)
    assert record.value == 4.0 and record.status == "simulated"


def test_terms_are_trimmed_to_the_same_number_of_shots() -> None:
    plan = _plan("mermin", 10)
    outcomes = _outcomes(plan, [1, -1, -1, -1])
    outcomes[0] = outcomes[0][:4]
    record = score(plan, outcomes, confidence=0.99)
    assert record.value == 4.0
    assert record.p_classical == pytest.approx(math.exp(-4 * 14 * math.log(4 / 3)))


def test_missing_outcomes_are_no_evidence() -> None:
    record = missing(_plan())
    assert (record.value, record.confidence, record.status) == (0.0, 0.0, "failed")
    assert record.opens()


@given(st.floats(0.0, 1.0), st.integers(1, 10_000))
def test_the_classical_p_value_is_a_probability_and_falls_with_the_win_rate(
    rate: float, shots: int
) -> None:
    p = classical_p_value(rate, shots)
    assert 0.0 <= p <= 1.0
    assert p == 1.0 or rate > 0.75
    assert classical_p_value(min(1.0, rate + 0.01), shots) <= p
    assert classical_p_value(rate, shots + 100) <= p


def _lhv_mermin(plan: WitnessPlan, rng: random.Random) -> list[list[float]]:
    """A local hidden-variable model: per shot and copy, an X and a Y value for each qubit,
    fixed before the setting is known; optimal (M = 2) strategies in random disguise."""
    bases = ("XXX", "XYY", "YXY", "YYX")
    products = []
    for term in plan.settings:
        shots = []
        for _ in range(plan.shots_per_circuit):
            values = []
            for _copy in plan.copies:
                x, y = [1, 1, 1], [1, 1, -1]
                for q in rng.sample(range(3), 2 * rng.randrange(2)):  # flip two qubits or none
                    x[q], y[q] = -x[q], -y[q]
                product = 1
                for q, basis in enumerate(bases[term]):
                    product *= x[q] if basis == "X" else y[q]
                values.append(product)
            shots.append(sum(values) / len(values))
        products.append(shots)
    return products


@pytest.mark.parametrize("seed", range(5))
def test_a_local_hidden_variable_model_stays_at_the_bound_and_is_flagged(seed: int) -> None:
    plan = _plan("mermin", 200)
    record = score(plan, _lhv_mermin(plan, random.Random(seed)), confidence=0.99)
    assert record.value <= record.bound
    assert record.status == "failed" and record.p_classical == 1.0


def test_a_noisy_lhv_model_reaches_the_confidence_rarely() -> None:
    # p_classical is a valid p-value: a classical model that wins 3/4 of its games passes
    # at 0.9 confidence in at most about 10% of harvests.
    plan = _plan("chsh", 25)
    passed = 0
    for seed in range(300):
        rng = random.Random(seed)
        products = [
            [1.0 if rng.random() < 0.75 else -1.0 for _ in range(25)] for _ in plan.settings
        ]
        signs = [KINDS["chsh"].signs[t] for t in plan.settings]
        products = [[s * p for p in shots] for s, shots in zip(signs, products, strict=True)]
        passed += score(plan, products, confidence=0.9).status == "passed"
    assert passed <= 0.1 * 300


# --- provenance, answers, the harvest's verdict ------------------------------------------


def _witnessed(status: str, source: str = "ibm") -> Provenance:
    plan = _plan("mermin", 50)
    ideal = score(plan, _outcomes(plan, [1, -1, -1, -1]), confidence=0.99)
    record = ideal if status == "passed" else replace(ideal, status=status)
    return Provenance(source, uuid.uuid4().hex, time.time(), "fake", "job", 8, 4096, (record,))


def test_the_harvest_passes_only_when_every_witness_passed() -> None:
    passed, failed = _witnessed("passed").witness[0], _witnessed("failed").witness[0]
    assert harvest_status([passed, passed]) == "passed"
    assert harvest_status([passed, failed]) == "failed"
    assert harvest_status([replace(passed, status="simulated")]) == "simulated"
    assert harvest_status([]) is None


def test_a_provenance_with_a_witness_round_trips_through_the_pool_encoding() -> None:
    prov = _witnessed("passed")
    again = load_provenance(dump_provenance(prov), "test")
    assert again == prov and hash(again) == hash(prov)
    assert again.witness_status == "passed"


def test_a_provenance_without_a_witness_encodes_as_before() -> None:
    prov = Provenance("os", "h1", 1.0)
    assert dump_provenance(prov) == (
        '{"backend":null,"harvest_id":"h1","harvested_at":1.0,'
        '"job_id":null,"qubits":0,"shots":0,"source":"os"}'
    )


def test_every_answer_names_the_witness_of_each_harvest_behind_it() -> None:
    prov = _witnessed("passed")
    (harvest,) = source_json("ibm", [prov], 512)["harvests"]
    assert set(harvest["witness"]) == {
        "kind",
        "value",
        "bound",
        "stderr",
        "shots",
        "confidence",
        "settings_commitment",
        "status",
        "p_classical",
    }
    assert harvest["witness"]["status"] == "passed"
    (record,) = harvest["witnesses"]
    assert Witness.from_dict(record).opens()
    (plain,) = source_json("os", [Provenance("os", "h", 1.0)], 0)["harvests"]
    assert "witness" not in plain and "witnesses" not in plain


def test_the_witness_object_is_the_verdict_of_the_deciding_witness() -> None:
    passed, failed = _witnessed("passed").witness[0], _witnessed("failed").witness[0]
    weaker = replace(passed, kind="chsh", confidence=0.995, p_classical=0.005)
    both = Provenance("ibm", "h", 1.0, witness=(passed, failed)).to_dict()["witness"]
    assert (both["status"], both["kind"], both["value"]) == ("failed", failed.kind, failed.value)
    good = Provenance("ibm", "h", 1.0, witness=(passed, weaker)).to_dict()["witness"]
    assert (good["status"], good["kind"], good["confidence"]) == ("passed", "chsh", 0.995)


def test_qrng_pool_shows_each_witness() -> None:
    text = _witness_text([w.to_dict() for w in _witnessed("passed").witness])
    assert text == "; witness passed: mermin 4.00 +- 0.00 (bound 2, p_classical 1.1e-50, passed)"
    assert _witness_text([]) == ""


# --- the credit decision -----------------------------------------------------------------


class WitnessedSource:
    """An ``ibm``-kind source of fair bytes whose harvests carry a scripted witness verdict."""

    kind = "ibm"

    def __init__(self, statuses: list[str]) -> None:
        self.statuses = statuses
        self.calls = 0

    def info(self) -> dict[str, object]:
        return {"kind": self.kind, "backend": "scripted"}

    def harvest(self) -> Harvest:
        self.calls += 1
        status = self.statuses.pop(0) if self.statuses else "passed"
        prov = _witnessed(status)
        if status == "none":
            prov = replace(prov, witness=())
        data = random.Random(self.calls).randbytes(4096)
        return Harvest(data, 8, 4096, prov, NOMINAL_ENTROPY, creditable=True)


ASSESS_SAMPLES = 3 * 4096


def _assessed(pool: Pool, statuses: list[str], *, required: bool = True) -> Harvester:
    harvester = Harvester(
        WitnessedSource(["passed"] * 3 + statuses),
        pool,
        assessment_samples=ASSESS_SAMPLES,
        assess_in_subprocess=False,
        witness_required=required,
    )
    for _ in range(3):
        assert harvester.harvest_once() == []  # collected for the assessment
    return harvester


def test_a_quantum_harvest_whose_witness_failed_earns_no_credit(memory_pool: Pool) -> None:
    harvester = _assessed(memory_pool, ["passed", "failed", "none"])
    assert all(b.credited_bits == 512 for b in harvester.harvest_once())
    failed = harvester.harvest_once()
    assert failed and all(b.credited_bits == 0 for b in failed)
    assert failed[0].provenance.witness_status == "failed"
    assert all(b.credited_bits == 0 for b in harvester.harvest_once())  # no witness at all
    witness = harvester.snapshot()["witness"]
    assert witness == {"required": True, "last": None, "withheld": 2}


def test_without_witness_required_a_failed_witness_is_credited(memory_pool: Pool) -> None:
    harvester = _assessed(memory_pool, ["failed"], required=False)
    assert all(b.credited_bits == 512 for b in harvester.harvest_once())
    assert harvester.snapshot()["witness"]["last"] == "failed"


def test_a_failed_witness_is_not_collected_for_the_assessment(memory_pool: Pool) -> None:
    harvester = Harvester(
        WitnessedSource(["failed", "passed"]),
        memory_pool,
        assessment_samples=ASSESS_SAMPLES,
        assess_in_subprocess=False,
    )
    stored = harvester.harvest_once()
    assert stored and all(b.credited_bits == 0 for b in stored)
    assert harvester.snapshot()["assessment"]["samples_collected"] == 0
    assert harvester.harvest_once() == []
    assert harvester.snapshot()["assessment"]["samples_collected"] == 4096
