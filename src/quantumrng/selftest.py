"""Power-on self-tests: CTR_DRBG known answers and the source's start-up test.

The known answers are NIST CAVP DRBGVS cases (CAVS 14.3, AES-256 use df,
256-bit personalization and additional input), one per test mode; the test
suite runs all 720 AES-256 cases from the full response files.
"""

from __future__ import annotations

from collections.abc import Iterator

from quantumrng.config import Settings
from quantumrng.drbg import CtrDrbg
from quantumrng.errors import QuantumRNGError

__all__ = ["KNOWN_ANSWERS", "run_selftest"]

#: (mode, EntropyInput, Nonce, PersonalizationString, steps, ReturnedBits); a step is
#: (EntropyInput for a reseed or "", AdditionalInput of the reseed, AdditionalInput of generate).
KNOWN_ANSWERS: tuple[tuple[str, str, str, str, tuple[tuple[str, str, str], ...], str], ...] = (
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


def _known_answer(
    entropy: str, nonce: str, pers: str, steps: tuple[tuple[str, str, str], ...], expected: str
) -> bool:
    drbg = CtrDrbg(bytes.fromhex(entropy), bytes.fromhex(nonce), bytes.fromhex(pers))
    out = b""
    for reseed_entropy, reseed_input, generate_input in steps:
        if reseed_entropy:
            drbg.reseed(bytes.fromhex(reseed_entropy), bytes.fromhex(reseed_input))
        out = drbg.generate(len(expected) // 2, bytes.fromhex(generate_input))
    return out.hex() == expected


def run_selftest(settings: Settings) -> Iterator[tuple[str, bool, str]]:
    """Yield (test name, passed, detail) for each self-test, in order."""
    for mode, entropy, nonce, pers, steps, expected in KNOWN_ANSWERS:
        passed = _known_answer(entropy, nonce, pers, steps, expected)
        yield f"CTR_DRBG AES-256 KAT ({mode})", passed, "NIST CAVP DRBGVS 14.3"

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
