"""Physics witnesses: evidence that a harvest's device is quantum (Mermin, CHSH).

Pure: drawing a batch of witness settings from given entropy, committing to
them, and scoring measured outcomes. The sources build and run the circuits
(:mod:`quantumrng.sources._witness`).

- **Mermin** (GHZ on 3 qubits): M = <XXX> - <XYY> - <YXY> - <YYX>; a local
  hidden-variable (LHV) model reaches at most 2, quantum mechanics 4
  (Mermin, PRL 65, 1838 (1990)).
- **CHSH** (a Bell pair): S = E(a,b) + E(a,b') + E(a',b) - E(a',b'); LHV at
  most 2, quantum 2*sqrt(2) (Clauser, Horne, Shimony, Holt, PRL 23, 880 (1969)).

Each setting of a batch (one parameter binding of the kind's circuit) measures
one term, drawn at random from fresh local entropy (each term equally often,
in random order), and a SHA-256
commitment over the settings and a nonce is recorded before the results
return, so a replayed or precomputed job cannot match them.

Both witnesses are games with four equally likely terms: a shot wins when
its product of outcomes has the term's sign. The win rate is
``1/2 + V/8``; an LHV model wins at most 3/4. With shots independent (no
memory), Hoeffding's inequality (1963, Theorem 1) bounds the probability
that a classical model reaches the observed win rate ``x`` in ``n`` shots by
``exp(-n KL(x || 3/4))``: that is ``p_classical``, and ``confidence`` is
``1 - p_classical``. Several copies in one shot (on disjoint qubits) count
as one shot whose score is their mean, so crosstalk between copies cannot
inflate the evidence.

Every pub of a job takes the same shots ``s`` (the runtime deprecates
per-pub shots): the witnesses get ``s`` shots per setting, CHSH twice as
many settings as Mermin (its gap is narrower), and the harvest ``B``
bindings of ``s`` shots (:func:`job_shape`), so the witness share of the
job stays at most ``witness_share``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KINDS",
    "STATUSES",
    "JobShape",
    "Witness",
    "WitnessKind",
    "WitnessPlan",
    "classical_p_value",
    "commitment",
    "draw_plan",
    "draw_settings",
    "fresh_plan",
    "harvest_status",
    "job_shape",
    "missing",
    "score",
    "verify_commitment",
]

STATUSES = ("passed", "failed", "simulated")
ENTROPY_BYTES = 32  # fresh local entropy per batch: settings and nonces derive from it
NONCE_BYTES = 16
_DOMAIN = b"quantumrng witness v1\x00"


@dataclass(frozen=True, slots=True)
class WitnessKind:
    """One Bell-type inequality: its terms' signs, classical bound and quantum maximum."""

    name: str
    group: int  # qubits per copy
    signs: tuple[int, ...]  # sign of each term in the witness value
    bound: float  # local hidden-variable maximum
    quantum: float  # quantum maximum
    circuits: int  # settings per batch, a multiple of the terms (CHSH needs more: narrower gap)
    max_copies: int  # copies per circuit, on disjoint qubits of the harvest


KINDS: dict[str, WitnessKind] = {
    # Mermin: 8!/(2!^4) = 2520 orders of its settings; CHSH: 16!/(4!^4), about 6.3e7
    "mermin": WitnessKind("mermin", 3, (1, -1, -1, -1), 2.0, 4.0, 8, 5),
    "chsh": WitnessKind("chsh", 2, (1, 1, 1, -1), 2.0, 2 * math.sqrt(2), 16, 8),
}


@dataclass(frozen=True, slots=True)
class Witness:
    """A witness measured in a harvest's job, as its provenance records it.

    ``settings`` (one term index per setting, in job order) and ``nonce``
    (hex) open ``settings_commitment``; ``shots`` counts this witness's
    shots; ``status`` is one of :data:`STATUSES`.
    """

    kind: str
    value: float
    bound: float
    stderr: float
    shots: int
    confidence: float
    p_classical: float
    settings_commitment: str
    status: str
    settings: str
    nonce: str
    qubits: int  # width of the harvest the copies were laid on

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of the fields."""
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Witness:
        """Rebuild a witness from :meth:`to_dict` output, ignoring unknown keys."""
        return cls(**{k: v for k, v in data.items() if k in cls.__slots__})

    @property
    def shots_per_circuit(self) -> int:
        """Shots of each setting of the batch (the job's shots per binding)."""
        return self.shots // len(self.settings) if self.settings else 0

    def opens(self) -> bool:
        """True when ``settings`` and ``nonce`` open ``settings_commitment``."""
        try:
            nonce = bytes.fromhex(self.nonce)
            settings = tuple(int(c) for c in self.settings)
        except ValueError:
            return False
        expected = commitment(self.kind, settings, self.shots_per_circuit, self.qubits, nonce)
        return verify_commitment(expected, self.settings_commitment)


@dataclass(frozen=True, slots=True)
class WitnessPlan:
    """The settings of one kind's pub for one harvest, drawn before submission."""

    kind: str
    settings: tuple[int, ...]  # term measured by each binding, in job order
    shots_per_circuit: int
    qubits: int
    nonce: bytes

    @property
    def copies(self) -> tuple[tuple[int, ...], ...]:
        """The harvest qubits each copy of the witness state is laid on."""
        spec = KINDS[self.kind]
        count = min(self.qubits // spec.group, spec.max_copies)
        return tuple(tuple(range(i * spec.group, (i + 1) * spec.group)) for i in range(count))

    @property
    def shots(self) -> int:
        """All shots of this kind's settings."""
        return self.shots_per_circuit * len(self.settings)

    @property
    def commitment(self) -> str:
        """SHA-256 over the canonical settings and the nonce, hex."""
        return commitment(self.kind, self.settings, self.shots_per_circuit, self.qubits, self.nonce)


def commitment(
    kind: str, settings: Sequence[int], shots_per_circuit: int, qubits: int, nonce: bytes
) -> str:
    """SHA-256 over a domain label, the settings as canonical JSON, and the nonce."""
    canonical = json.dumps(
        {
            "kind": kind,
            "qubits": qubits,
            "settings": list(settings),
            "shots_per_circuit": shots_per_circuit,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return hashlib.sha256(
        _DOMAIN + len(canonical).to_bytes(4, "big") + canonical + nonce
    ).hexdigest()


def verify_commitment(expected: str, recorded: str) -> bool:
    """Compare two commitments in constant time."""
    return hmac.compare_digest(expected.encode(), recorded.encode())


class _Stream:
    """Uniform integers from SHAKE-256 of the entropy (rejection sampling, no bias)."""

    def __init__(self, seed: bytes) -> None:
        self._bytes = hashlib.shake_256(seed).digest(4096)
        self._at = 0

    def below(self, n: int) -> int:
        limit = 256 - 256 % n
        while True:
            if self._at >= len(self._bytes):
                raise ValueError("witness entropy stream exhausted")
            b = self._bytes[self._at]
            self._at += 1
            if b < limit:
                return b % n


def draw_settings(entropy: bytes, kind: str, circuits: int | None = None) -> tuple[int, ...]:
    """A random order of the kind's terms, each ``circuits / terms`` times, from ``entropy``.

    ``circuits`` defaults to the kind's :attr:`WitnessKind.circuits`. Every
    term appears equally often, so the estimator always sees all of them;
    which setting measures which is a Fisher-Yates shuffle driven by
    SHAKE-256(entropy).
    """
    if circuits is None:
        circuits = KINDS[kind].circuits
    terms = len(KINDS[kind].signs)
    if circuits < terms or circuits % terms:
        raise ValueError("circuits must be a positive multiple of the number of terms")
    order = [t for t in range(terms) for _ in range(circuits // terms)]
    stream = _Stream(_DOMAIN + b"settings:" + kind.encode() + b"\x00" + entropy)
    for i in range(len(order) - 1, 0, -1):
        j = stream.below(i + 1)
        order[i], order[j] = order[j], order[i]
    return tuple(order)


def fitting_kinds(qubits: int) -> tuple[WitnessKind, ...]:
    """The kinds with room for one copy on a harvest of ``qubits``."""
    return tuple(spec for spec in KINDS.values() if qubits >= spec.group)


def shots_per_setting(shots: int, share: float, circuits: int) -> int:
    """Shots of every pub of a job of about ``shots`` that carries ``circuits`` witness
    settings: ``floor(share * shots / circuits)``, so those settings take at most
    ``share`` of the job (0 when they cannot each get a shot)."""
    if circuits < 1:
        return 0
    return math.floor(share * shots / circuits)


@dataclass(frozen=True, slots=True)
class JobShape:
    """One job's shots: every pub's binding takes ``shots_per_binding``; the harvest
    runs ``harvest_bindings`` bindings of it, the witnesses ``witness_settings``."""

    shots_per_binding: int
    harvest_bindings: int
    witness_settings: int

    @property
    def harvest_shots(self) -> int:
        return self.shots_per_binding * self.harvest_bindings

    @property
    def witness_shots(self) -> int:
        return self.shots_per_binding * self.witness_settings

    @property
    def witness_share(self) -> float:
        """The witnesses' share of the job's shots."""
        return self.witness_settings / (self.witness_settings + self.harvest_bindings)


def job_shape(plans: Sequence[WitnessPlan], shots: int) -> JobShape:
    """The shape of a job of about ``shots`` carrying ``plans`` (drawn for ``shots``).

    The harvest gets ``B = ceil((shots - W s) / s)`` bindings of the plans'
    ``s`` shots (``W`` settings), so the job has at least ``shots`` shots and
    less than ``shots + s``; without witnesses it is one binding of ``shots``.
    """
    if shots < 1:
        raise ValueError("a job needs at least one shot")
    if not plans:
        return JobShape(shots, 1, 0)
    per = plans[0].shots_per_circuit
    if per < 1 or any(p.shots_per_circuit != per for p in plans):
        raise ValueError("the plans of one job share one positive shot count")
    settings = sum(len(p.settings) for p in plans)
    bindings = max(1, -(-(shots - settings * per) // per))
    return JobShape(per, bindings, settings)


def draw_plan(
    entropy: bytes, *, qubits: int, job_shots: int, share: float
) -> tuple[WitnessPlan, ...]:
    """The witness batch for a job of ``qubits`` x about ``job_shots``, from ``entropy``.

    Every kind with room for a copy runs, each setting with the same
    :func:`shots_per_setting`; an empty batch means the harvest is too
    narrow, or the job too small to give every setting a shot within
    ``share``.
    """
    if len(entropy) < ENTROPY_BYTES:
        raise ValueError(f"witness entropy must be at least {ENTROPY_BYTES} bytes")
    kinds = fitting_kinds(qubits)
    per_setting = shots_per_setting(job_shots, share, sum(spec.circuits for spec in kinds))
    if per_setting < 1:
        return ()
    plans = []
    for spec in kinds:
        name = spec.name
        nonce = hashlib.sha256(_DOMAIN + b"nonce:" + name.encode() + b"\x00" + entropy).digest()
        plans.append(
            WitnessPlan(
                kind=name,
                settings=draw_settings(entropy, name),
                shots_per_circuit=per_setting,
                qubits=qubits,
                nonce=nonce[:NONCE_BYTES],
            )
        )
    return tuple(plans)


def fresh_plan(
    *,
    qubits: int,
    job_shots: int,
    share: float,
    entropy: Callable[[int], bytes] = os.urandom,
) -> tuple[WitnessPlan, ...]:
    """:func:`draw_plan` from fresh local entropy (the kernel's), never from a harvest."""
    return draw_plan(entropy(ENTROPY_BYTES), qubits=qubits, job_shots=job_shots, share=share)


def _kl(x: float, q: float) -> float:
    """Kullback-Leibler divergence of Bernoulli(x) from Bernoulli(q), nats."""
    total = 0.0
    if x > 0:
        total += x * math.log(x / q)
    if x < 1:
        total += (1 - x) * math.log((1 - x) / (1 - q))
    return total


def classical_p_value(win_rate: float, shots: int, classical_rate: float = 0.75) -> float:
    """Hoeffding's bound on the probability that a classical model reaches ``win_rate``
    in ``shots`` independent shots (1 when the rate is not above the classical one)."""
    if shots <= 0 or win_rate <= classical_rate:
        return 1.0
    return math.exp(-shots * _kl(min(win_rate, 1.0), classical_rate))


def score(
    plan: WitnessPlan,
    products: Sequence[Sequence[float]],
    *,
    confidence: float,
    simulated: bool = False,
) -> Witness:
    """Score a batch: ``products[i]`` holds, per shot of setting ``i``, the mean over its
    copies of the product of outcomes (each +1 or -1).

    Terms are trimmed to the same number of shots (the game needs each term
    equally often). ``status`` is ``simulated`` when ``simulated``, else
    ``passed`` when the value exceeds the bound with ``confidence``.
    """
    spec = KINDS[plan.kind]
    if len(products) != len(plan.settings):
        raise ValueError("need the outcomes of every setting of the plan")
    by_term: list[list[float]] = [[] for _ in spec.signs]
    for term, shots in zip(plan.settings, products, strict=True):
        by_term[term].extend(float(p) for p in shots)
    n = min(len(t) for t in by_term)
    if n == 0:
        return missing(plan, simulated=simulated)
    value = 0.0
    variance = 0.0
    for sign, outcomes in zip(spec.signs, by_term, strict=True):
        kept = outcomes[:n]
        mean = sum(kept) / n
        value += sign * mean
        spread = sum((p - mean) ** 2 for p in kept) / (n - 1) if n > 1 else 1.0
        variance += spread / n
    terms = len(spec.signs)
    win_rate = 0.5 + value / (2 * terms)
    classical_rate = 0.5 + spec.bound / (2 * terms)
    p = classical_p_value(win_rate, n * terms, classical_rate)
    return _record(plan, value, math.sqrt(variance), p, confidence, simulated)


def missing(plan: WitnessPlan, *, simulated: bool = False) -> Witness:
    """The record of a batch whose outcomes did not come back: no evidence, ``failed``."""
    return _record(plan, 0.0, 0.0, 1.0, 1.0, simulated)


def _record(
    plan: WitnessPlan,
    value: float,
    stderr: float,
    p: float,
    confidence: float,
    simulated: bool,
) -> Witness:
    spec = KINDS[plan.kind]
    reached = 1.0 - p
    if simulated:
        status = "simulated"
    elif value > spec.bound and reached >= confidence:
        status = "passed"
    else:
        status = "failed"
    return Witness(
        kind=plan.kind,
        value=value,
        bound=spec.bound,
        stderr=stderr,
        shots=plan.shots,
        confidence=reached,
        p_classical=p,
        settings_commitment=plan.commitment,
        status=status,
        settings="".join(map(str, plan.settings)),
        nonce=plan.nonce.hex(),
        qubits=plan.qubits,
    )


def harvest_status(witnesses: Sequence[Witness]) -> str | None:
    """A harvest's verdict: ``passed`` only when every witness passed; ``failed`` when
    one failed; ``simulated``; None when the harvest carried no witness."""
    statuses = {w.status for w in witnesses}
    if not statuses:
        return None
    if "failed" in statuses:
        return "failed"
    if "simulated" in statuses:
        return "simulated"
    return "passed"


def deciding(witnesses: Sequence[Witness]) -> Witness | None:
    """The witness that sets the harvest's verdict: the failed one with the largest
    ``p_classical`` if any failed, else the weakest evidence (smallest confidence)."""
    if not witnesses:
        return None
    failed = [w for w in witnesses if w.status == "failed"]
    if failed:
        return max(failed, key=lambda w: w.p_classical)
    return min(witnesses, key=lambda w: w.confidence)


def summary(witnesses: Sequence[Witness]) -> dict[str, Any] | None:
    """A harvest's ``witness`` object, the issue's fields
    ``{kind, value, bound, stderr, shots, confidence, settings_commitment, status}`` (and
    ``p_classical``) of :func:`deciding`'s witness, with the harvest's verdict as
    ``status``; the full records go beside it as ``witnesses``. None without witnesses."""
    decider = deciding(witnesses)
    if decider is None:
        return None
    return {
        "kind": decider.kind,
        "value": decider.value,
        "bound": decider.bound,
        "stderr": decider.stderr,
        "shots": decider.shots,
        "confidence": decider.confidence,
        "p_classical": decider.p_classical,
        "settings_commitment": decider.settings_commitment,
        "status": harvest_status(witnesses),
    }
