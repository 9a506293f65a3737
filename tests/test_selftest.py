"""Power-on self-tests: the CTR_DRBG known answers (use df and no df), run once per process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quantumrng import selftest
from quantumrng.errors import SelfTestFailure
from quantumrng.selftest import (
    KNOWN_ANSWERS,
    KNOWN_ANSWERS_NO_DF,
    KnownAnswer,
    PowerOnSelfTest,
    known_answer_tests,
    power_on_selftest,
    run_selftest,
)

from .cavp import read_rsp
from .conftest import make_settings
from .test_drbg_reference import Reference

FILES = {
    "no_reseed": "drbgvectors_no_reseed.CTR_DRBG.rsp",
    "pr_false": "drbgvectors_pr_false.CTR_DRBG.rsp",
    "pr_true": "drbgvectors_pr_true.CTR_DRBG.rsp",
}


def broken(answers: tuple[KnownAnswer, ...], index: int = 0) -> tuple[KnownAnswer, ...]:
    """The same answers with the expected output of ``answers[index]`` off by one bit."""
    mode, entropy, nonce, pers, steps, expected = answers[index]
    flipped = f"{int(expected[-1], 16) ^ 1:x}"
    changed = (mode, entropy, nonce, pers, steps, expected[:-1] + flipped)
    return (*answers[:index], changed, *answers[index + 1 :])


@pytest.mark.parametrize("answer", KNOWN_ANSWERS, ids=[a[0] for a in KNOWN_ANSWERS])
def test_each_use_df_answer_is_a_record_of_the_cavp_files(answer: KnownAnswer) -> None:
    mode, entropy, nonce, pers, steps, expected = answer
    records = [
        r
        for r in read_rsp(FILES[mode])
        if r.section == "AES-256 use df" and r.one("EntropyInput").hex() == entropy
    ]
    assert len(records) == 1
    record = records[0]
    assert record.one("Nonce").hex() == nonce
    assert record.one("PersonalizationString").hex() == pers
    assert record.one("ReturnedBits").hex() == expected
    if mode == "pr_true":
        reseeds = list(
            zip(record.all("EntropyInputPR"), record.all("AdditionalInput"), strict=True)
        )
        assert [(e, a, "") for e, a in ((x.hex(), y.hex()) for x, y in reseeds)] == list(steps)
    else:
        generate_inputs = [a.hex() for a in record.all("AdditionalInput")]
        assert [step[2] for step in steps] == generate_inputs
        if mode == "pr_false":
            reseed = (
                record.one("EntropyInputReseed").hex(),
                record.one("AdditionalInputReseed").hex(),
            )
            assert steps[0][:2] == reseed


@pytest.mark.parametrize("answer", KNOWN_ANSWERS_NO_DF, ids=[a[0] for a in KNOWN_ANSWERS_NO_DF])
def test_each_no_df_answer_agrees_with_the_plain_reference(answer: KnownAnswer) -> None:
    """The no-df answers are transcribed (tests/vectors holds no no-df section): a plain
    implementation of the standard, itself checked against CAVP, gives the same output."""
    _mode, entropy, nonce, pers, steps, expected = answer
    ref = Reference(use_df=False)
    ref.instantiate(bytes.fromhex(entropy), bytes.fromhex(nonce), bytes.fromhex(pers))
    out = b""
    for reseed_entropy, reseed_input, generate_input in steps:
        if reseed_entropy:
            ref.reseed(bytes.fromhex(reseed_entropy), bytes.fromhex(reseed_input))
        out = ref.generate(len(expected) // 2, bytes.fromhex(generate_input))
    assert out.hex() == expected


def test_the_known_answers_pass_and_name_both_settings() -> None:
    lines = known_answer_tests()
    assert [name for name, _, _ in lines] == [
        "CTR_DRBG AES-256 KAT (no_reseed)",
        "CTR_DRBG AES-256 KAT (pr_false)",
        "CTR_DRBG AES-256 KAT (pr_true)",
    ]
    assert all(passed for _, passed, _ in lines)
    details = [detail for _, _, detail in lines]
    assert details[0].startswith("use df + no df") and details[1].startswith("use df + no df")
    assert details[2].startswith("use df")


@pytest.mark.parametrize("df", [True, False], ids=["use-df", "no-df"])
def test_a_wrong_answer_fails_its_mode_and_names_the_setting(df: bool) -> None:
    if df:
        lines = known_answer_tests(use_df=broken(KNOWN_ANSWERS, 1))
    else:
        lines = known_answer_tests(no_df=broken(KNOWN_ANSWERS_NO_DF, 1))
    results = {name.split("(")[1].rstrip(")"): (passed, detail) for name, passed, detail in lines}
    assert results["no_reseed"][0] and results["pr_true"][0]
    passed, detail = results["pr_false"]
    assert not passed
    assert detail.endswith("failed: use df" if df else "failed: no df")


def test_a_known_answer_that_raises_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_generate(*args: object, **kwargs: object) -> bytes:
        raise ValueError("broken")

    monkeypatch.setattr(selftest.CtrDrbg, "generate", broken_generate)
    assert not any(passed for _, passed, _ in known_answer_tests())
    post = PowerOnSelfTest()
    with pytest.raises(SelfTestFailure):
        post.require()
    assert post.done


def test_run_selftest_reports_the_known_answers_then_the_start_up_test(tmp_path: Path) -> None:
    lines = list(run_selftest(make_settings(tmp_path, pool="memory", source="os")))
    assert [name for name, _, _ in lines[:3]] == [name for name, _, _ in known_answer_tests()]
    assert len(lines) == 4 and "start-up" in lines[3][0]
    assert all(passed for _, passed, _ in lines[:3])


def test_the_power_on_self_test_runs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    real = selftest.known_answer_tests

    def counted(*args: tuple[KnownAnswer, ...]) -> list[tuple[str, bool, str]]:
        runs.append(1)
        return real(*args)

    monkeypatch.setattr(selftest, "known_answer_tests", counted)
    post = PowerOnSelfTest()
    assert not post.done
    for _ in range(3):
        post.require()
    assert post.done and runs == [1]


def test_a_failed_power_on_self_test_fails_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    post = PowerOnSelfTest(no_df=broken(KNOWN_ANSWERS_NO_DF))
    monkeypatch.setattr(selftest, "_POST", post)
    for _ in range(2):
        with pytest.raises(SelfTestFailure, match="no_reseed") as info:
            power_on_selftest()
    assert info.value.status == 503 and info.value.code == "self_test_failure"


def test_the_process_power_on_self_test_passes() -> None:
    power_on_selftest()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_keeps_the_result_and_a_usable_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    post = PowerOnSelfTest()
    post.require()
    runs: list[int] = []
    monkeypatch.setattr(selftest, "known_answer_tests", lambda *a: runs.append(1) or [])
    with post._lock:  # as if another thread were running the tests at fork time
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                post.require()
                with post._lock:
                    code = 0 if not runs else 2
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
