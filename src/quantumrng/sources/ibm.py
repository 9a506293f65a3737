"""The ``ibm`` source: the Hadamard circuit measured on IBM Quantum hardware.

Runs through ``qiskit-ibm-runtime`` (``SamplerV2`` in job mode), imported on
the first harvest. Credentials, in order: the environment variable
``QISKIT_IBM_TOKEN``, the prototype's YAML file (``ibm_secrets``, key
``ibm_api_key``), else the account saved with
``QiskitRuntimeService.save_account``. Provider errors are translated in one
table (:func:`translate_error`) into one-line errors that never carry the
token; network failures and queue timeouts are retried with exponential
backoff and jitter, everything else fails at once (fail closed).

Each job also runs the physics witnesses (:mod:`quantumrng.witness`: Mermin
on GHZ triples, CHSH on Bell pairs) on the qubits the harvest measured,
with ``witness_share`` of the job's shots at most. Their settings are drawn
from fresh local entropy just before submission, and their commitments go
with the job as tags (``qrng-witness:<kind>:<sha256>``), so IBM records them
before any result exists.

Every pub of the job takes the job's one shot count ``s`` (the runtime
deprecates per-pub shots since 0.48): the witnesses bind their settings,
``s`` shots each, and the harvest circuit carries one parameter (an Rz
before measurement, which leaves Z outcomes alone) bound to 0 in ``B``
bindings, so the harvest gets ``B * s`` shots (:func:`job_shape`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from quantumrng.config import Settings
from quantumrng.errors import (
    ConfigError,
    SourceAuthError,
    SourceError,
    SourceNetworkError,
    SourceTimeout,
)
from quantumrng.sources import _witness
from quantumrng.sources._common import CREG, packed_columns, stamp
from quantumrng.sources.base import Harvest
from quantumrng.witness import JobShape, WitnessPlan, fresh_plan, job_shape

__all__ = [
    "SECRETS_KEY",
    "TOKEN_ENV",
    "IBMSource",
    "harvest_circuit",
    "resolve_token",
    "translate_error",
]

TOKEN_ENV = "QISKIT_IBM_TOKEN"  # noqa: S105 - a variable name, not a secret
SECRETS_KEY = "ibm_api_key"
_BACKOFF_CAP = 300.0  # seconds: the longest single wait between two attempts
_CHAIN_LIMIT = 16  # exception links followed through __cause__ / __context__
_SUMMARY_CHARS = 160  # characters of a provider message kept in ours

_log = logging.getLogger(__name__)

NO_CREDENTIALS = (
    f"no IBM Quantum credentials: set {TOKEN_ENV}, point ibm_secrets at a YAML file "
    f"with {SECRETS_KEY}, or save an account with QiskitRuntimeService.save_account"
)


class _Secret:
    """A token that never shows itself in a repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def reveal(self) -> str:
        return self._value


def resolve_token(secrets_file: Path | None, environ: Mapping[str, str]) -> str | None:
    """Return the API token from ``QISKIT_IBM_TOKEN`` or the prototype's YAML file.

    None means no token was given: use the saved Qiskit account. A secrets
    file that is set but unreadable or lacks the key raises
    :class:`SourceAuthError` rather than falling through silently.
    """
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    if secrets_file is None:
        return None
    import yaml

    try:
        text = Path(secrets_file).read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or "unreadable"
        raise SourceAuthError(f"cannot read IBM secrets file {secrets_file}: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        # The parser's message quotes the offending line, which may hold the token.
        raise SourceAuthError(f"IBM secrets file {secrets_file} is not valid YAML") from None
    value = data.get(SECRETS_KEY) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise SourceAuthError(
            f"IBM secrets file {secrets_file} has no string value for {SECRETS_KEY}"
        )
    return value.strip()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    link: BaseException | None = exc
    for _ in range(_CHAIN_LIMIT):
        if link is None:
            return
        yield link
        link = link.__cause__ or link.__context__


def _summary(exc: BaseException, secret: _Secret | None) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if secret is not None and secret.reveal():
        text = text.replace(secret.reveal(), "<secret>")
    if len(text) > _SUMMARY_CHARS:
        text = text[: _SUMMARY_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def translate_error(exc: BaseException, secret: _Secret | None = None) -> SourceError:
    """Map an exception of Qiskit, the runtime or the network to a :class:`SourceError`.

    The one translation table of this source; the first link of the
    exception chain that matches decides. Messages name the exception type
    and never the token.
    """
    import requests
    from ibm_cloud_sdk_core import ApiException
    from qiskit.providers import JobTimeoutError, QiskitBackendNotFoundError
    from qiskit_ibm_runtime.accounts.exceptions import AccountNotFoundError, AccountsError
    from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

    network = (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout)
    for link in _chain(exc):
        if isinstance(link, AccountNotFoundError):
            return SourceAuthError(NO_CREDENTIALS)
        if isinstance(link, IBMNotAuthorizedError | AccountsError):
            return SourceAuthError(f"IBM Quantum rejected the credentials ({type(link).__name__})")
        status = getattr(link, "status_code", None)
        if isinstance(status, int):
            # IAM answers 400 to an unknown API key.
            if status in (401, 403) or (status == 400 and isinstance(link, ApiException)):
                return SourceAuthError(f"IBM Quantum rejected the credentials (HTTP {status})")
            if status in (408, 429) or status >= 500:
                return SourceNetworkError(f"IBM Quantum is unavailable (HTTP {status})")
        if isinstance(link, JobTimeoutError):
            return SourceTimeout(f"IBM Quantum job timed out ({type(link).__name__})")
        if isinstance(link, network):
            return SourceNetworkError(f"cannot reach IBM Quantum ({type(link).__name__})")
        if isinstance(link, QiskitBackendNotFoundError):
            return SourceError(f"no IBM Quantum backend found ({_summary(link, secret)})")
    return SourceError(f"IBM Quantum harvest failed ({_summary(exc, secret)})")


def harvest_circuit(qubits: int) -> Any:
    """H on every qubit, Rz(``theta``) on qubit 0, then measure qubit ``i`` into bit ``i``.

    The Rz is diagonal, so it changes no Z-basis outcome; its parameter lets
    the harvest run as ``B`` bindings of the job's one shot count.
    ``metadata`` marks it as the harvest.
    """
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
    from qiskit.circuit import Parameter

    qreg = QuantumRegister(qubits, "q")
    creg = ClassicalRegister(qubits, CREG)
    circuit = QuantumCircuit(qreg, creg, name=f"hadamard{qubits}", metadata={"harvest": qubits})
    circuit.h(qreg)
    circuit.rz(Parameter("theta"), qreg[0])
    circuit.measure(qreg, creg)
    return circuit


def _harvest_pub(circuit: Any, shape: JobShape) -> tuple[Any, Any]:
    """The harvest pub: ``shape.harvest_bindings`` bindings of ``theta = 0``."""
    return circuit, np.zeros((shape.harvest_bindings, circuit.num_parameters))


def _max_shots(backend: Any) -> int | None:
    try:
        value = backend.configuration().max_shots
    except Exception:
        return None
    return value if isinstance(value, int) and value > 0 else None


class IBMSource:
    """Measure H on ``qubits`` qubits of an IBM Quantum backend per harvest.

    ``service`` replaces the ``QiskitRuntimeService`` (tests pass a fake);
    ``retries`` transient failures are retried, waiting about
    ``backoff * 2**n`` seconds (jittered) before retry ``n``; ``sleep`` is
    injectable for tests. ``entropy`` (default ``os.urandom``) draws the
    witness settings; ``witness=False`` runs none (benchmarks).
    """

    kind = "ibm"

    def __init__(
        self,
        settings: Settings,
        *,
        service: Any = None,
        retries: int = 3,
        backoff: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        witness: bool = True,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if retries < 0 or backoff < 0:
            raise ConfigError("retries and backoff must not be negative")
        self.qubits = settings.qubits
        self.shots = settings.shots
        self.backend_name = settings.ibm_backend
        self.timeout = settings.ibm_timeout
        self.entropy = settings.ibm_entropy
        self.witness_share = settings.witness_share if witness else 0.0
        self.witness_confidence = settings.witness_confidence
        self._witness_entropy = entropy
        self.retries = retries
        self.backoff = backoff
        self._channel = settings.ibm_channel
        self._instance = settings.ibm_instance
        self._secrets_file = settings.ibm_secrets
        self._service = service
        self._sleep = sleep
        self._secret: _Secret | None = None
        self._backend: Any = None
        self._circuit: Any = None
        self._witness_manager: Any = None
        self._witness_circuits: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"IBMSource(backend={self.backend_name or 'least_busy'!r}, "
            f"qubits={self.qubits}, shots={self.shots})"
        )

    def info(self) -> dict[str, Any]:
        """Return what status pages show about this source (no credentials)."""
        backend = self._backend
        return {
            "kind": self.kind,
            "backend": backend.name if backend is not None else self.backend_name,
            "selection": "named" if self.backend_name else "least_busy",
            "channel": self._channel,
            "qubits": self.qubits,
            "shots": self.shots,
            "timeout": self.timeout,
            "retries": self.retries,
            "assessed_entropy": self.entropy,
            "creditable": True,
            "witness_share": self.witness_share,
            "witness_confidence": self.witness_confidence,
        }

    def harvest(self) -> Harvest:
        """Run one job, retrying network failures and queue timeouts with backoff."""
        with self._lock:
            attempt = 0
            while True:
                try:
                    return self._harvest_once()
                except (SourceNetworkError, SourceTimeout) as err:
                    if attempt >= self.retries:
                        raise
                    delay = self._delay(attempt)
                    attempt += 1
                    _log.warning(
                        "IBM harvest failed: %s; retry %d of %d in %.1f s",
                        err.message,
                        attempt,
                        self.retries,
                        delay,
                    )
                    self._sleep(delay)

    def _delay(self, attempt: int) -> float:
        base = min(self.backoff * 2.0**attempt, _BACKOFF_CAP)
        return base * (0.5 + random.random() / 2)  # jitter: spread retries of many nodes

    def _harvest_once(self) -> Harvest:
        try:
            from qiskit_ibm_runtime import SamplerV2
        except ImportError:
            raise SourceError(
                "the ibm source needs qiskit-ibm-runtime: pip install 'quantumrng[ibm]'"
            ) from None
        try:
            backend, circuit = self._target()
            shots = min(self.shots, _max_shots(backend) or self.shots)
            plans = self._witness_plans(shots)
            shape = job_shape(plans, shots)
            _log.debug(
                "IBM job: %d x %d harvest shots, %d witness settings, witness share %.3f",
                shape.harvest_bindings,
                shape.shots_per_binding,
                shape.witness_settings,
                shape.witness_share,
            )
            witness_pubs = _witness.pubs(plans, self._witness_circuit)
            with warnings.catch_warnings():
                # Deprecated in 0.50 for the client-side executor Sampler; same results.
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                sampler = SamplerV2(mode=backend)
            _tag(sampler, plans)
            job = sampler.run(
                [_harvest_pub(circuit, shape), *witness_pubs], shots=shape.shots_per_binding
            )
            job_id = str(job.job_id())
        except SourceError:
            self._forget()
            raise
        except Exception as exc:
            self._forget()
            raise translate_error(exc, self._secret) from None
        try:
            result = self._await(job)
            array = getattr(result[0].data, CREG).array
        except Exception as exc:
            self._forget()
            err = translate_error(exc, self._secret)
            if isinstance(err, SourceTimeout):
                _cancel(job)
                err = SourceTimeout(
                    f"IBM Quantum job {job_id} on {backend.name} did not finish "
                    f"within {self.timeout:g} s; cancelled"
                )
            raise err from None
        if (
            array.ndim != 3
            or array.shape[0] < 1
            or array.shape[1] < 1
            or array.shape[2] * 8 < self.qubits
        ):
            raise SourceError(f"IBM Quantum job {job_id} returned a malformed bit array")
        array = array.reshape(-1, array.shape[2])  # bindings x shots -> samples
        samples = int(array.shape[0])
        witness = _witness.evaluate(
            plans, result, 1, confidence=self.witness_confidence, simulated=False
        )
        provenance = stamp(
            self.kind, backend=backend.name, job_id=job_id, qubits=self.qubits, shots=samples
        )
        return Harvest(
            data=packed_columns(array, self.qubits),
            width=self.qubits,
            samples=samples,
            provenance=replace(provenance, witness=witness),
            assessed_entropy=self.entropy,
            creditable=True,
            configuration=self._configuration(backend),
        )

    def _witness_plans(self, shots: int) -> tuple[WitnessPlan, ...]:
        """This job's witness settings, drawn now from fresh local entropy."""
        if not self.witness_share:
            return ()
        plans = fresh_plan(
            qubits=self.qubits,
            job_shots=shots,
            share=self.witness_share,
            entropy=self._witness_entropy,
        )
        for plan in plans:
            _log.info("IBM witness %s committed: %s", plan.kind, plan.commitment)
        return plans

    def _witness_circuit(self, circuit: Any) -> Any:
        """A witness circuit transpiled onto the harvest's physical qubits, once per
        kind and backend."""
        key = (circuit.name, circuit.num_qubits, circuit.num_clbits)
        done = self._witness_circuits.get(key)
        if done is None:
            done = self._witness_circuits[key] = self._witness_manager.run(circuit)
        return done

    def _configuration(self, backend: Any) -> str:
        """The physical qubits measured and the backend's calibration time: what the
        entropy assessment of this source depends on besides the backend's name."""
        try:
            layout = list(self._circuit.layout.final_index_layout())[: self.qubits]
        except Exception:
            layout = []
        calibration = ""
        try:
            properties = backend.properties()
            stamp_ = getattr(properties, "last_update_date", None)
            calibration = "" if stamp_ is None else str(stamp_)
        except Exception:
            calibration = ""
        return f"layout={','.join(map(str, layout))};calibration={calibration}"

    def _await(self, job: Any) -> Any:
        """Wait at most ``timeout`` seconds, then fetch the result.

        Equivalent to ``job.result(timeout=...)`` on a runtime job; local-mode
        jobs (fake backends) run synchronously and take no timeout.
        """
        wait = getattr(job, "wait_for_final_state", None)
        if callable(wait):
            wait(timeout=self.timeout)
        return job.result()

    def _connect(self) -> Any:
        if self._service is None:
            from qiskit_ibm_runtime import QiskitRuntimeService

            token = resolve_token(self._secrets_file, os.environ)
            self._secret = _Secret(token) if token else None
            kwargs: dict[str, Any] = {}
            if self._channel:
                kwargs["channel"] = self._channel
            if self._instance:
                kwargs["instance"] = self._instance
            if token:
                kwargs["token"] = token
            self._service = QiskitRuntimeService(**kwargs)
        return self._service

    def _target(self) -> tuple[Any, Any]:
        """Return the backend and the circuit transpiled for it, resolved once."""
        if self._backend is None:
            service = self._connect()
            if self.backend_name:
                backend = service.backend(self.backend_name)
            else:
                backend = service.least_busy(
                    operational=True, simulator=False, min_num_qubits=self.qubits
                )
            if backend.num_qubits < self.qubits:
                raise SourceError(
                    f"IBM backend {backend.name} has {backend.num_qubits} qubits, "
                    f"fewer than the {self.qubits} asked for"
                )
            from qiskit.transpiler import generate_preset_pass_manager

            manager = generate_preset_pass_manager(optimization_level=1, backend=backend)
            self._circuit = manager.run(harvest_circuit(self.qubits))
            # the witnesses go on the physical qubits the harvest measured
            placed = self._circuit.layout
            layout = None if placed is None else list(placed.final_index_layout())[: self.qubits]
            self._witness_manager = generate_preset_pass_manager(
                optimization_level=1, backend=backend, initial_layout=layout
            )
            self._witness_circuits = {}
            self._backend = backend
        return self._backend, self._circuit

    def _forget(self) -> None:
        """Drop the chosen backend so the next attempt picks one afresh."""
        self._backend = None
        self._circuit = None
        self._witness_manager = None
        self._witness_circuits = {}


def _tag(sampler: Any, plans: tuple[WitnessPlan, ...]) -> None:
    """Send the witness commitments with the job, so IBM stores them at submission."""
    if not plans:
        return
    with contextlib.suppress(AttributeError):  # a sampler without runtime options
        sampler.options.environment.job_tags = [
            f"qrng-witness:{plan.kind}:{plan.commitment}" for plan in plans
        ]


def _cancel(job: Any) -> None:
    try:
        job.cancel()
    except Exception:
        _log.warning("could not cancel a timed-out IBM Quantum job")
