"""Power-on self-tests: CTR_DRBG known answers, and the source's start-up test.

The known answers are NIST CAVP DRBGVS cases (CAVS 14.3), AES-256, one per
test mode and derivation-function setting:

- ``use df`` (``KNOWN_ANSWERS``): COUNT 0 of the 256-bit personalization and
  additional input sections of ``tests/vectors`` (no_reseed, pr_false,
  pr_true); the test suite runs all 720 AES-256 use-df cases of those files.
- ``no df`` (``KNOWN_ANSWERS_NO_DF``): the files in ``tests/vectors`` hold no
  ``no df`` section, so these are COUNT 0 of ``[AES-256 no df]`` (no
  personalization, no additional input) in NIST's ``CTR_DRBG.rsp`` of
  ``drbgvectors_no_reseed`` and ``drbgvectors_pr_false``, transcribed; the
  tests check them against a plain implementation of the standard as well.

:func:`power_on_selftest` runs them all once per process, before the engine's
first seeding (FIPS 140-3 style: no output until they pass; one failure and
every later call fails too). A forked child inherits the result and does not
run them again: it runs the very code that passed, in a copy of the same
memory, and the test exercises the implementation, not any state a fork could
change. ``qrng selftest`` (:func:`run_selftest`) runs them afresh.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from quantumrng import forksafe
from quantumrng.drbg import CtrDrbg
from quantumrng.errors import QuantumRNGError, SelfTestFailure

if TYPE_CHECKING:
    from quantumrng.config import Settings

__all__ = [
    "KNOWN_ANSWERS",
    "KNOWN_ANSWERS_NO_DF",
    "KnownAnswer",
    "PowerOnSelfTest",
    "known_answer_tests",
    "power_on_selftest",
    "run_selftest",
]

#: A known answer: (mode, EntropyInput, Nonce, PersonalizationString, steps, ReturnedBits);
#: a step is (EntropyInput for a reseed or "", AdditionalInput of the reseed, AdditionalInput
#: of generate). The second generate call's output is ReturnedBits.
KnownAnswer = tuple[str, str, str, str, tuple[tuple[str, str, str], ...], str]

#: ``[AES-256 use df]``, 256-bit personalization and additional input, COUNT 0.
KNOWN_ANSWERS: tuple[KnownAnswer, ...] = (
    (
        "no_reseed",
        "87b56e964eba227154724bb9484b812d3e2c0c43b3d17f6098d9526e16e6d0ef",
        "9bea6a7ff2358df142e6c23e2157fb83",
        "9860b432edd58d1ccbfeecbce99ffaee7d935a614860d4e965bd67041403096b",
        (
            ("", "", "99a5cc87924e8ea65a596f81fd17d63f5b4542fe6e8e1511b5d35c835dfadb0b"),
            ("", "", "9a8dec54734a34582a2332f3452e82313524c3e0dfb485faeac6ca5fc0ff504d"),
        ),
        "dbc6a2330b19b5cddd8cd6392ec1fb508678c805e87d1aca07ac265007632503"
        "044a00610c79d98375afa7ab4cca1a90989cbfe7c674af5d823ced11c47e9af6",
    ),
    (
        "pr_false",
        "174b46250051a9e3d80c56ae7163dafe7e54481a56cafd3b8625f99bbb29c442",
        "98ffd99c466e0e94a45da7e0e82dbc6b",
        "7095268e99938b3e042734b9176c9aa051f00a5f8d2a89ada214b89beef18ebf",
        (
            (
                "e88be1967c5503f65d23867bbc891bd679db03b4878663f6c877592df25f0d9a",
                "cdf6ad549e45b6aa5cd67d024931c33cd133d52d5ae500c3015020beb30da063",
                "c7228e90c62f896a09e11684530102f926ec90a3255f6c21b857883c75800143",
            ),
            ("", "", "76a94f224178fe4cbf9e2b8acc53c9dc3e50bb613aac8936601453cda3293b17"),
        ),
        "1a6d8dbd642076d13916e5e23038b60b26061f13dd4e006277e0268698ffb2c8"
        "7e453bae1251631ac90c701a9849d933995e8b0221fe9aca1985c546c2079027",
    ),
    (
        "pr_true",
        "534346a3e0baa65d7a51871b6d633a6f1efa9ff55dfde3212c95029adf2387d9",
        "0cbe99821509975d824fd826c47d2abc",
        "020d7340569e68d992e6e8ddfbead9f993c74d971e4339fe91074f87e9d7d777",
        (
            (
                "286091709d2e91bfef6654b8449d5e5564b6c2fe1f3e4e6e59fe776461bfb0dc",
                "f41040eff2a7010287c2a76d7867a66e61299be1e1247a6b22a64b829ada8624",
                "",
            ),
            (
                "e68e127b2e5b9d6539c26f7e78bec13314e37febdb7105d1d65f0bde23c87d38",
                "94efe68e2185646a17bb8a83268142a7b7a02786c1ee90ab8f7399ccf543de26",
                "",
            ),
        ),
        "da6389d151e3b2b332fbcc02b2cc5af4f69835e9fbbe19130f91cbf30a3c2458"
        "0ebfb4311b3487e9d6a61de9dc2842c107152158b0e75a932c38e5b8ddff10e6",
    ),
)


#: ``[AES-256 no df]``, no personalization or additional input, COUNT 0 (NIST CTR_DRBG.rsp).
KNOWN_ANSWERS_NO_DF: tuple[KnownAnswer, ...] = (
    (
        "no_reseed",
        "df5d73faa468649edda33b5cca79b0b05600419ccb7a879d"
        "dfec9db32ee494e5531b51de16a30f769262474c73bec010",
        "",
        "",
        (("", "", ""), ("", "", "")),
        "d1c07cd95af8a7f11012c84ce48bb8cb87189e99d40fccb1771c619bdf82ab22"
        "80b1dc2f2581f39164f7ac0c510494b3a43c41b7db17514c87b107ae793e01c5",
    ),
    (
        "pr_false",
        "e4bc23c5089a19d86f4119cb3fa08c0a4991e0a1def17e101e4c14d9c323460a"
        "7c2fb58e0b086c6c57b55f56cae25bad",
        "",
        "",
        (
            (
                "fd85a836bba85019881e8c6bad23c9061adc75477659acaea8e4a01dfe07a183"
                "2dad1c136f59d70f8653a5dc118663d6",
                "",
                "",
            ),
            ("", "", ""),
        ),
        "b2cb8905c05e5950ca31895096be29ea3d5a3b82b269495554eb80fe07de43e1"
        "93b9e7c3ece73b80e062b1c1f68202fbb1c52a040ea2478864295282234aaada",
    ),
)


def _known_answer(answer: KnownAnswer, *, derivation_function: bool) -> bool:
    """Run one known answer as DRBGVS does; True when the second generate matches (an
    error on the way is a failure too)."""
    _mode, entropy, nonce, pers, steps, expected = answer
    try:
        with CtrDrbg(
            bytes.fromhex(entropy),
            bytes.fromhex(nonce),
            bytes.fromhex(pers),
            derivation_function=derivation_function,
        ) as drbg:
            out = b""
            for reseed_entropy, reseed_input, generate_input in steps:
                if reseed_entropy:
                    drbg.reseed(bytes.fromhex(reseed_entropy), bytes.fromhex(reseed_input))
                out = drbg.generate(len(expected) // 2, bytes.fromhex(generate_input))
    except Exception:
        return False
    return out.hex() == expected


def known_answer_tests(
    use_df: tuple[KnownAnswer, ...] = KNOWN_ANSWERS,
    no_df: tuple[KnownAnswer, ...] = KNOWN_ANSWERS_NO_DF,
) -> list[tuple[str, bool, str]]:
    """Run the CTR_DRBG known answers; return (name, passed, detail), one per test mode.

    A mode's line covers its ``use df`` and ``no df`` answers and passes when
    all of them do; the detail names the settings run and any that failed.
    """
    results: dict[str, list[tuple[str, bool]]] = {}
    for answers, df, label in ((use_df, True, "use df"), (no_df, False, "no df")):
        for answer in answers:
            passed = _known_answer(answer, derivation_function=df)
            results.setdefault(answer[0], []).append((label, passed))
    lines = []
    for mode, runs in results.items():
        failed = [label for label, passed in runs if not passed]
        detail = " + ".join(label for label, _ in runs) + ", NIST CAVP DRBGVS 14.3"
        if failed:
            detail += "; failed: " + ", ".join(failed)
        lines.append((f"CTR_DRBG AES-256 KAT ({mode})", not failed, detail))
    return lines


class PowerOnSelfTest:
    """The known-answer tests, run at most once; their failure is remembered for good."""

    def __init__(
        self,
        use_df: tuple[KnownAnswer, ...] = KNOWN_ANSWERS,
        no_df: tuple[KnownAnswer, ...] = KNOWN_ANSWERS_NO_DF,
    ) -> None:
        self._answers = (use_df, no_df)
        self._lock = threading.Lock()
        self._failed: tuple[str, ...] | None = None  # None until run
        forksafe.register(self)

    @property
    def done(self) -> bool:
        """True once the tests have run (passed or not)."""
        return self._failed is not None

    def require(self) -> None:
        """Run the tests unless they ran; raise ``SelfTestFailure`` if any failed."""
        failed = self._failed
        if failed is None:
            with self._lock:
                if self._failed is None:
                    lines = known_answer_tests(*self._answers)
                    self._failed = tuple(name for name, passed, _ in lines if not passed)
                failed = self._failed
        if failed:
            raise SelfTestFailure(
                f"power-on self-test failed ({', '.join(failed)}): the DRBG serves nothing "
                "until the process restarts"
            )

    def after_fork_in_child(self) -> None:
        """Keep the result (the child runs the code that was tested); replace the lock,
        which a parent thread may hold (``forksafe``)."""
        self._lock = threading.Lock()


_POST = PowerOnSelfTest()


def power_on_selftest() -> None:
    """Run the CTR_DRBG known answers (use df and no df) once per process.

    Raises ``SelfTestFailure`` (503) if one failed, now and on every later call.
    """
    _POST.require()


def run_selftest(settings: Settings) -> Iterator[tuple[str, bool, str]]:
    """Yield (test name, passed, detail) for each self-test, in order."""
    yield from known_answer_tests()

    from quantumrng.health import HealthMonitor, summarize_failures
    from quantumrng.sources import open_source

    try:
        harvest = open_source(settings).harvest()
    except QuantumRNGError as exc:
        yield f"{settings.source} start-up test", False, exc.message
        return
    report = HealthMonitor().check(harvest)
    estimates = report.min_entropy
    detail = (
        f"{harvest.samples} samples x {harvest.width} streams, "
        f"min-entropy estimate {min(estimates):.3f}..{max(estimates):.3f} bits/bit"
    )
    if not report.passed:
        detail += "; failed: " + summarize_failures(report.failures)
    yield f"{settings.source} start-up health test", report.passed, detail
