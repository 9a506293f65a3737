"""The ibm source against fake runtime services: no network, no account.

Harvests run on ``qiskit_ibm_runtime.fake_provider`` backends, which
``SamplerV2`` simulates locally with their (noisy, biased) noise model.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
import qiskit_ibm_runtime
import requests
from ibm_cloud_sdk_core import ApiException
from qiskit.providers import QiskitBackendNotFoundError
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.accounts import AccountNotFoundError
from qiskit_ibm_runtime.api.exceptions import RequestsApiError
from qiskit_ibm_runtime.exceptions import (
    IBMNotAuthorizedError,
    IBMRuntimeError,
    RuntimeJobFailureError,
    RuntimeJobTimeoutError,
)
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from quantumrng.config import Settings
from quantumrng.errors import (
    SourceAuthError,
    SourceError,
    SourceNetworkError,
    SourceTimeout,
)
from quantumrng.sources import IBMSource
from quantumrng.sources.ibm import TOKEN_ENV, harvest_circuit, resolve_token, translate_error
from quantumrng.witness import draw_plan, job_shape

TOKEN = "qrngtesttoken" + "0123456789abcdef" * 4


class FakeService:
    """Stands in for ``QiskitRuntimeService``: hands out one backend, or raises."""

    def __init__(self, backend: Any, failures: list[BaseException] | None = None) -> None:
        self._backend = backend
        self.failures = list(failures or [])
        self.calls: list[tuple[str, Any]] = []

    def _maybe_fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)

    def least_busy(self, **kwargs: Any) -> Any:
        self.calls.append(("least_busy", kwargs))
        self._maybe_fail()
        return self._backend

    def backend(self, name: str) -> Any:
        self.calls.append(("backend", name))
        self._maybe_fail()
        if name != self._backend.name:
            raise QiskitBackendNotFoundError("No backend matches the criteria.")
        return self._backend


class CappedManila(FakeManilaV2):  # type: ignore[misc]
    """FakeManila that allows only 300 shots per job."""

    def configuration(self) -> Any:
        conf = super().configuration()
        conf.max_shots = 300
        return conf


def _settings(**changes: Any) -> Settings:
    values: dict[str, Any] = {"source": "ibm", "qubits": 5, "shots": 1000, "ibm_timeout": 30.0}
    values.update(changes)
    return Settings(**values)


def _source(service: Any, sleeps: list[float] | None = None, **changes: Any) -> IBMSource:
    sleep: Callable[[float], None] = sleeps.append if sleeps is not None else _no_sleep
    return IBMSource(_settings(**changes), service=service, backoff=1.0, sleep=sleep)


def _harvest_shots(shots: int, qubits: int = 5, share: float = 0.1) -> int:
    """The harvest's shots in a job of ``shots`` that carries the witnesses."""
    plans = draw_plan(bytes(32), qubits=qubits, job_shots=shots, share=share)
    return job_shape(plans, shots).harvest_shots


def _no_sleep(_: float) -> None:
    raise AssertionError("no retry expected")


@pytest.fixture(scope="module")
def manila() -> Any:
    return FakeManilaV2()


@pytest.fixture
def no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)


# --- harvesting on a fake backend ----------------------------------------------------------


def test_harvest_on_least_busy_fake_backend(manila: Any) -> None:
    service = FakeService(manila)
    harvest = _source(service).harvest()
    assert service.calls == [
        ("least_busy", {"operational": True, "simulator": False, "min_num_qubits": 5})
    ]
    samples = _harvest_shots(1000)
    assert 900 <= samples < 1000
    assert (harvest.width, harvest.samples, len(harvest.data)) == (5, samples, samples * 5 // 8)
    prov = harvest.provenance
    assert (prov.source, prov.backend, prov.qubits, prov.shots) == (
        "ibm",
        "fake_manila",
        5,
        samples,
    )
    assert prov.job_id
    assert prov.quantum is True
    assert harvest.creditable is True
    assert harvest.assessed_entropy == 0.5
    bits = harvest.bits()
    assert 0 < bits.sum() < bits.size
    # Noisy hardware is biased, but every column still carries both values often.
    assert np.all((bits.mean(axis=0) > 0.3) & (bits.mean(axis=0) < 0.7))


def test_named_backend_and_cached_transpilation(manila: Any) -> None:
    service = FakeService(manila)
    source = _source(service, ibm_backend="fake_manila", ibm_entropy=0.3, qubits=3, shots=64)
    first, second = source.harvest(), source.harvest()
    assert service.calls == [("backend", "fake_manila")]
    assert first.provenance.job_id != second.provenance.job_id
    assert first.provenance.harvest_id != second.provenance.harvest_id
    assert first.assessed_entropy == 0.3
    assert first.width == 3
    assert source.info()["backend"] == "fake_manila"


def test_shots_are_capped_by_the_backend_maximum() -> None:
    harvest = _source(FakeService(CappedManila())).harvest()
    assert harvest.samples == harvest.provenance.shots == _harvest_shots(300)
    assert sum(w.shots for w in harvest.provenance.witness) + harvest.samples < 300 + 300 // 10


def test_without_witnesses_the_harvest_takes_every_shot(manila: Any) -> None:
    source = IBMSource(_settings(), service=FakeService(manila), witness=False)
    harvest = source.harvest()
    assert harvest.samples == harvest.provenance.shots == 1000
    assert harvest.provenance.witness == ()


def test_the_harvest_circuit_has_one_parameter_that_leaves_its_outcomes_alone() -> None:
    from qiskit.quantum_info import Statevector

    circuit = harvest_circuit(3)
    assert [p.name for p in circuit.parameters] == ["theta"]
    unmeasured = circuit.remove_final_measurements(inplace=False)
    probabilities = [
        Statevector(unmeasured.assign_parameters([theta])).probabilities()
        for theta in (0.0, 1.0, np.pi)
    ]
    assert all(np.allclose(p, 1 / 8) for p in probabilities)


def test_the_job_mixes_no_shot_counts_so_the_runtime_does_not_warn(manila: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        harvest = _source(FakeService(manila)).harvest()
    assert harvest.provenance.witness  # the witnesses ran in the job
    assert not [w for w in caught if "shots" in str(w.message)]
    # the check can fail: the same recorder catches the runtime's warning on mixed shots
    from qiskit_ibm_runtime import SamplerV2

    circuit = harvest_circuit(5).assign_parameters([0.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SamplerV2(mode=AerSimulator()).run([(circuit, None, 4), (circuit, None, 8)])
    assert [w for w in caught if "shots" in str(w.message)]


def test_unknown_backend_name_is_a_source_error(manila: Any) -> None:
    with pytest.raises(SourceError, match="no IBM Quantum backend") as info:
        _source(FakeService(manila), ibm_backend="ibm_nowhere").harvest()
    assert type(info.value) is SourceError


def test_backend_too_small(manila: Any) -> None:
    with pytest.raises(SourceError, match="has 5 qubits, fewer than the 6"):
        _source(FakeService(manila), qubits=6).harvest()


# --- a scripted sampler for timeouts ------------------------------------------------------


AER = "aer"  # a scripted job whose result Aer computes from the job's pubs


class ScriptedJob:
    def __init__(self, wait_error: BaseException | None, result: Any = None) -> None:
        self.wait_error = wait_error
        self._result = result
        self.waited: list[float | None] = []
        self.cancelled = False

    def job_id(self) -> str:
        return "job-123"

    def wait_for_final_state(self, timeout: float | None = None) -> None:
        self.waited.append(timeout)
        if self.wait_error is not None:
            raise self.wait_error

    def result(self) -> Any:
        return self._result

    def cancel(self) -> None:
        self.cancelled = True
        raise IBMRuntimeError("Failed to cancel job")  # cancelling is best effort


def _script_sampler(monkeypatch: pytest.MonkeyPatch, jobs: list[ScriptedJob]) -> None:
    class ScriptedSampler:
        def __init__(self, mode: Any) -> None:
            self.mode = mode

        def run(self, pubs: list[Any], shots: int) -> ScriptedJob:
            from qiskit_aer.primitives import SamplerV2 as AerSampler

            job = jobs.pop(0)
            if isinstance(job._result, str) and job._result == AER:
                job._result = AerSampler(seed=5).run(pubs, shots=shots).result()
            return job

    monkeypatch.setattr(qiskit_ibm_runtime, "SamplerV2", ScriptedSampler)


def test_queue_timeout_cancels_and_retries(manila: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [ScriptedJob(RuntimeJobTimeoutError("Timed out")) for _ in range(3)]
    _script_sampler(monkeypatch, list(jobs))
    sleeps: list[float] = []
    source = IBMSource(_settings(), service=FakeService(manila), retries=2, sleep=sleeps.append)
    with pytest.raises(
        SourceTimeout, match=r"job job-123 on fake_manila did not finish within 30 s"
    ):
        source.harvest()
    assert [job.waited for job in jobs] == [[30.0]] * 3
    assert all(job.cancelled for job in jobs)
    assert len(sleeps) == 2


def test_timeout_then_success(manila: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _script_sampler(monkeypatch, [ScriptedJob(RuntimeJobTimeoutError("t")), ScriptedJob(None, AER)])
    sleeps: list[float] = []
    harvest = _source(FakeService(manila), sleeps).harvest()
    assert harvest.samples == _harvest_shots(1000)
    mermin = harvest.provenance.witness[0]
    assert (mermin.kind, mermin.value) == ("mermin", 4.0)  # Aer is ideal: the pubs ran
    assert harvest.provenance.job_id == "job-123"
    assert len(sleeps) == 1


# --- error translation and retries --------------------------------------------------------


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (IBMNotAuthorizedError("401 Client Error"), SourceAuthError),
        (AccountNotFoundError("No default account found."), SourceAuthError),
        (RequestsApiError("Forbidden", 403), SourceAuthError),
        (ApiException(400, message="Provided API key could not be found."), SourceAuthError),
        (requests.ConnectionError("Max retries exceeded"), SourceNetworkError),
        (requests.ReadTimeout("read timed out"), SourceNetworkError),
        (ConnectionResetError(104, "Connection reset by peer"), SourceNetworkError),
        (RequestsApiError("Service Unavailable", 503), SourceNetworkError),
        (RequestsApiError("Too Many Requests", 429), SourceNetworkError),
        (
            _chained(IBMRuntimeError("Failed to run program"), requests.ConnectionError("refused")),
            SourceNetworkError,
        ),
        (RuntimeJobTimeoutError("Timed out waiting for job"), SourceTimeout),
        (RuntimeJobFailureError("Unable to retrieve job result."), SourceError),
        (QiskitBackendNotFoundError("No backend matches"), SourceError),
        (ValueError("something else"), SourceError),
    ],
)
def test_translation_table(exc: BaseException, expected: type[SourceError]) -> None:
    err = translate_error(exc)
    assert type(err) is expected
    assert "\n" not in err.message


@pytest.mark.parametrize(
    "failure",
    [requests.ConnectionError("down"), RequestsApiError("Bad Gateway", 502)],
)
def test_network_errors_are_retried_with_growing_jittered_backoff(
    manila: Any, failure: BaseException
) -> None:
    sleeps: list[float] = []
    service = FakeService(manila, failures=[failure] * 3)
    harvest = IBMSource(
        _settings(), service=service, retries=3, backoff=2.0, sleep=sleeps.append
    ).harvest()
    assert harvest.samples == _harvest_shots(1000)
    assert len(service.calls) == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        assert 2.0 * 2**attempt * 0.5 <= delay <= 2.0 * 2**attempt


def test_retries_are_bounded(manila: Any) -> None:
    sleeps: list[float] = []
    service = FakeService(manila, failures=[requests.ConnectionError("down")] * 10)
    source = IBMSource(_settings(), service=service, retries=2, backoff=0.5, sleep=sleeps.append)
    with pytest.raises(SourceNetworkError, match="cannot reach IBM Quantum") as info:
        source.harvest()
    assert len(service.calls) == 3
    assert len(sleeps) == 2
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


@pytest.mark.parametrize(
    "failure",
    [
        IBMNotAuthorizedError("401"),
        RuntimeJobFailureError("Unable to retrieve job result."),
        QiskitBackendNotFoundError("none"),
    ],
)
def test_permanent_errors_are_not_retried(manila: Any, failure: BaseException) -> None:
    service = FakeService(manila, failures=[failure])
    with pytest.raises(SourceError) as info:
        _source(service).harvest()
    assert not isinstance(info.value, SourceNetworkError | SourceTimeout)
    assert len(service.calls) == 1


def test_failed_attempt_picks_the_backend_afresh(
    manila: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = FakeService(manila)
    source = _source(service, [])
    source.harvest()
    _script_sampler(monkeypatch, [ScriptedJob(None, None)])
    with pytest.raises(SourceError):
        source.harvest()  # a result of None is malformed
    monkeypatch.undo()
    source.harvest()
    assert [name for name, _ in service.calls] == ["least_busy", "least_busy"]


def _bits(shape: tuple[int, ...]) -> Any:
    return SimpleNamespace(
        data=SimpleNamespace(bits=SimpleNamespace(array=np.zeros(shape, np.uint8)))
    )


@pytest.mark.parametrize(
    "shape",
    [(1000, 1), (3, 0, 1), (0, 5, 1), (3, 5, 0), (3, 5)],
    ids=["unbound shots", "no shots", "no bindings", "too narrow", "flat"],
)
def test_a_malformed_harvest_bit_array_is_a_source_error(
    manila: Any, monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...]
) -> None:
    _script_sampler(monkeypatch, [ScriptedJob(None, [_bits(shape)])])
    with pytest.raises(SourceError, match="job job-123 returned a malformed bit array"):
        _source(FakeService(manila)).harvest()


# --- credentials --------------------------------------------------------------------------


def test_env_token_wins_over_the_secrets_file(tmp_path: Path) -> None:
    secrets = tmp_path / "ibm_secrets.yml"
    secrets.write_text("ibm_api_key: from-file\n")
    assert resolve_token(secrets, {TOKEN_ENV: " from-env "}) == "from-env"


def test_secrets_file_in_the_prototype_format(tmp_path: Path) -> None:
    secrets = tmp_path / "ibm_secrets.yml"
    secrets.write_text(f"ibm_api_key: {TOKEN}\n")
    assert resolve_token(secrets, {TOKEN_ENV: "  "}) == TOKEN


def test_no_token_means_the_saved_account() -> None:
    assert resolve_token(None, {}) is None


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "cannot read IBM secrets file"),
        (f"ibm_api_key: [{TOKEN}\n", "not valid YAML"),
        ("other_key: x\n", "no string value for ibm_api_key"),
        ("- a list\n", "no string value for ibm_api_key"),
        ("ibm_api_key: 12345\n", "no string value for ibm_api_key"),
    ],
)
def test_bad_secrets_file_is_an_auth_error(tmp_path: Path, content: str | None, match: str) -> None:
    secrets = tmp_path / "ibm_secrets.yml"
    if content is not None:
        secrets.write_text(content)
    with pytest.raises(SourceAuthError, match=match) as info:
        resolve_token(secrets, {})
    assert TOKEN not in info.value.message


class RecordingService(FakeService):
    """A fake ``QiskitRuntimeService`` class that remembers how it was built."""

    built: ClassVar[list[dict[str, Any]]] = []
    backend_obj: Any = None
    failures_next: ClassVar[list[BaseException]] = []

    def __init__(self, **kwargs: Any) -> None:
        RecordingService.built.append(kwargs)
        super().__init__(RecordingService.backend_obj, RecordingService.failures_next)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch, manila: Any) -> type[RecordingService]:
    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", RecordingService)
    monkeypatch.setattr(RecordingService, "built", [])
    monkeypatch.setattr(RecordingService, "backend_obj", manila)
    monkeypatch.setattr(RecordingService, "failures_next", [])
    return RecordingService


def test_service_built_with_env_token_channel_and_instance(
    recording: type[RecordingService], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    source = IBMSource(
        _settings(ibm_channel="ibm_quantum_platform", ibm_instance="crn:v1:test", shots=50)
    )
    source.harvest()
    source.harvest()
    assert recording.built == [
        {"channel": "ibm_quantum_platform", "instance": "crn:v1:test", "token": TOKEN}
    ]


def test_service_built_from_secrets_file(
    recording: type[RecordingService], tmp_path: Path, no_env_token: None
) -> None:
    secrets = tmp_path / "ibm_secrets.yml"
    secrets.write_text(f"ibm_api_key: {TOKEN}\n")
    IBMSource(_settings(ibm_secrets=secrets, shots=50)).harvest()
    assert recording.built == [{"token": TOKEN}]


def test_without_token_the_saved_account_is_used(
    recording: type[RecordingService], no_env_token: None
) -> None:
    IBMSource(_settings(shots=50)).harvest()
    assert recording.built == [{}]


def test_no_saved_account_says_how_to_configure(
    monkeypatch: pytest.MonkeyPatch, no_env_token: None
) -> None:
    def no_account(**_: Any) -> Any:
        raise AccountNotFoundError("Unable to find account.")

    monkeypatch.setattr(qiskit_ibm_runtime, "QiskitRuntimeService", no_account)
    source = IBMSource(_settings(), sleep=_no_sleep)
    with pytest.raises(SourceAuthError, match=f"set {TOKEN_ENV}.*save_account"):
        source.harvest()


def test_token_never_in_errors_logs_or_reprs(
    recording: type[RecordingService],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    recording.failures_next = [
        requests.ConnectionError(f"https://api.example/?token={TOKEN}"),
        RuntimeJobFailureError(f"Unable to retrieve job result. token={TOKEN} rejected"),
    ]
    sleeps: list[float] = []
    source = IBMSource(_settings(), sleep=sleeps.append)
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as info:
        source.harvest()
    err = info.value
    assert "RuntimeJobFailureError" in err.message
    assert "<secret>" in err.message
    texts = [err.message, str(err), repr(err), repr(source), str(source.info()), caplog.text]
    assert all(TOKEN not in text for text in texts)
    assert err.__cause__ is None
    assert len(sleeps) == 1


def test_auth_errors_do_not_echo_the_provider_message(manila: Any) -> None:
    service = FakeService(manila, failures=[IBMNotAuthorizedError(f"bad key {TOKEN}")])
    with pytest.raises(SourceAuthError) as info:
        _source(service).harvest()
    assert TOKEN not in info.value.message


def test_info_has_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    info = IBMSource(_settings(ibm_secrets=tmp_path / "s.yml")).info()
    assert info["kind"] == "ibm"
    assert info["selection"] == "least_busy"
    assert info["creditable"] is True
    assert TOKEN not in str(info)
