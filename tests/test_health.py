"""Behaviour of the SP 800-90B health tests and the per-source monitor."""

from __future__ import annotations

import json
import math
import os
import threading
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest

from quantumrng.errors import HealthTestFailure, Unavailable
from quantumrng.health import (
    HealthMonitor,
    adaptive_proportion_test,
    apt_cutoff,
    bias_cutoff,
    is_biased,
    mcv_min_entropy,
    rct_cutoff,
    repetition_count_test,
)
from quantumrng.provenance import Provenance
from quantumrng.sources.base import Harvest


def make_harvest(
    bits: npt.ArrayLike,
    h: float = 1.0,
    creditable: bool = True,
    source: str = "os",
    harvest_id: str = "t",
) -> Harvest:
    """Pack a (samples, width) matrix of 0/1 into a harvest."""
    matrix = np.asarray(bits, dtype=np.uint8)
    return Harvest(
        data=np.packbits(matrix).tobytes(),
        width=matrix.shape[1],
        samples=matrix.shape[0],
        provenance=Provenance(source=source, harvest_id=harvest_id, harvested_at=0.0),
        assessed_entropy=h,
        creditable=creditable,
    )


def fair_bits(samples: int, width: int, seed: int = 1) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 2, (samples, width), dtype=np.uint8)


def urandom_bits(samples: int, width: int) -> npt.NDArray[np.uint8]:
    raw = np.frombuffer(os.urandom((samples * width + 7) // 8), dtype=np.uint8)
    return np.unpackbits(raw, count=samples * width).reshape(samples, width)


# --- cutoffs ----------------------------------------------------------------


@pytest.mark.parametrize(("h", "cutoff"), [(1.0, 21), (0.5, 41), (0.25, 81), (0.2, 101)])
def test_rct_cutoff_is_one_plus_ceil_alpha_over_h(h: float, cutoff: int) -> None:
    assert rct_cutoff(h) == cutoff == 1 + math.ceil(20 / h)


def test_rct_cutoff_with_other_alpha() -> None:
    assert rct_cutoff(1.0, alpha_exp=40) == 41
    assert rct_cutoff(0.3, alpha_exp=30) == 1 + 100


# Binary data, W = 1024, alpha = 2^-20 (SP 800-90B §4.4.2, Table 2), each
# value C = 1 + CRITBINOM(1024, 2^-H, 1 - 2^-20); H = 8 with W = 512 gives
# 13, the value NIST's non-binary column and vendor datasheets (Nordic
# nRF54 TRNG, PROPTESTCUTOFF reset value) give.
APT_TABLE = [
    (0.2, 1024, 941),
    (0.4, 1024, 840),
    (0.5, 1024, 793),
    (0.6, 1024, 748),
    (0.8, 1024, 664),
    (1.0, 1024, 589),
    (1.0, 512, 311),
    (8.0, 512, 13),
]


@pytest.mark.parametrize(("h", "window", "cutoff"), APT_TABLE)
def test_apt_cutoff_matches_table(h: float, window: int, cutoff: int) -> None:
    assert apt_cutoff(h, window) == cutoff


def test_apt_cutoff_h1_derivation_is_exact() -> None:
    """For H = 1, p = 1/2 and P[X >= c] = sum_{k>=c} comb(1024, k) / 2^1024 exactly.

    C is the smallest c with that tail <= 2^-20: the tail at 589 is within
    alpha and the tail at 588 is not.
    """
    alpha = Fraction(1, 2**20)

    def tail(c: int) -> Fraction:
        return Fraction(sum(math.comb(1024, k) for k in range(c, 1025)), 2**1024)

    assert tail(589) <= alpha < tail(588)
    assert apt_cutoff(1.0) == 589


def test_apt_cutoff_agrees_with_scipy_binomial_tail() -> None:
    stats = pytest.importorskip("scipy.stats")
    for h, window, cutoff in APT_TABLE:
        p = 2.0**-h
        assert stats.binom.sf(cutoff - 1, window, p) <= 2.0**-20
        assert stats.binom.sf(cutoff - 2, window, p) > 2.0**-20


def test_apt_cutoff_for_tiny_entropy_never_fails_a_window() -> None:
    assert apt_cutoff(0.001, 64) == 65


@pytest.mark.parametrize("h", [0.0, -1.0, math.nan, math.inf])
def test_cutoffs_reject_bad_entropy(h: float) -> None:
    with pytest.raises(ValueError):
        rct_cutoff(h)
    with pytest.raises(ValueError):
        apt_cutoff(h)
    with pytest.raises(ValueError):
        bias_cutoff(1024, h)


def test_bias_cutoff_is_normal_quantile_at_half_alpha() -> None:
    # z = Phi^-1(1 - 2^-21) = 4.90096...; 2048 + 4.90096 * 32 = 2204.83
    assert bias_cutoff(4096, 1.0) == 2205
    # p = 2^-0.5 = 0.70711; 1024 p + z sqrt(1024 p (1 - p)) = 724.08 + 71.41
    assert bias_cutoff(1024, 0.5) == 796


# --- repetition count test ----------------------------------------------------


def test_rct_stuck_stream_fails_where_run_reaches_cutoff() -> None:
    result = repetition_count_test(np.zeros(100, dtype=np.uint8), 21)
    assert result.failed
    assert result.index == 20
    assert result.run == (0, 100)


def test_rct_run_one_short_of_cutoff_passes() -> None:
    stream = np.array([1] + [0] * 20 + [1], dtype=np.uint8)
    assert not repetition_count_test(stream, 21).failed
    assert repetition_count_test(stream, 20).index == 20


def test_rct_alternating_stream_passes() -> None:
    result = repetition_count_test(np.tile([0, 1], 500_000).astype(np.uint8), 2)
    assert not result.failed
    assert result.run == (1, 1)


def test_rct_continues_carried_run() -> None:
    tail = repetition_count_test(np.array([1, 0, 0, 0, 0, 0], dtype=np.uint8), 8)
    assert tail.run == (0, 5) and not tail.failed
    continued = repetition_count_test(np.array([0, 0, 0, 1], dtype=np.uint8), 8, tail.run)
    assert continued.failed and continued.index == 2
    other_value = repetition_count_test(np.array([1, 1, 1, 0], dtype=np.uint8), 8, tail.run)
    assert not other_value.failed


def test_rct_empty_stream_keeps_run() -> None:
    result = repetition_count_test(np.array([], dtype=np.uint8), 5, (1, 3))
    assert not result.failed and result.run == (1, 3)


def test_rct_finds_one_run_in_a_million_bits() -> None:
    stream = np.tile(np.array([0, 0, 1], dtype=np.uint8), 400_000)
    result = repetition_count_test(stream, 3)
    assert not result.failed
    stream[600_002] = 0
    assert repetition_count_test(stream, 3).index == 600_002


# --- adaptive proportion test ------------------------------------------------


def test_apt_fails_repeating_pattern_that_rct_passes() -> None:
    stream = np.tile(np.array([1, 1, 1, 0], dtype=np.uint8), 1024)
    result = adaptive_proportion_test(stream, apt_cutoff(1.0))
    assert result.failed
    # the window's 589th one: 3 ones per 4 samples, so sample 4 * 196 + 0
    assert result.index == 784
    assert not repetition_count_test(stream, rct_cutoff(1.0)).failed


def test_apt_counts_the_first_sample_of_each_window() -> None:
    stream = np.array([1, 0, 0, 1, 0, 0, 0, 1], dtype=np.uint8)
    # second window: reference 0 and two more 0s make B = 3
    assert adaptive_proportion_test(stream, 3, window=4).index == 6
    assert not adaptive_proportion_test(stream, 4, window=4).failed


def test_apt_unfinished_window_is_carried() -> None:
    stream = np.array([1, 0, 1, 1, 1, 0, 1, 1], dtype=np.uint8)
    whole = adaptive_proportion_test(stream, 6, window=8)
    assert whole.failed and whole.index == 7
    first = adaptive_proportion_test(stream[:5], 6, window=8)
    assert not first.failed and first.window == (1, 4, 5)
    second = adaptive_proportion_test(stream[5:], 6, window=8, window_in=first.window)
    assert second.failed and second.index == 2
    assert second.window == (0, 0, 0)


def test_apt_fair_stream_passes() -> None:
    assert not adaptive_proportion_test(fair_bits(1 << 20, 1)[:, 0], apt_cutoff(1.0)).failed


# --- MCV estimate -----------------------------------------------------------


def test_mcv_hand_computed() -> None:
    """600 ones in 1024: p_hat = 0.5859375, p_hat (1 - p_hat) = 0.24261474609375,
    sqrt(that / 1023) = 0.0154000021, p_u = 0.5859375 + 2.576 * 0.0154000021
    = 0.6256079054, H = -log2(p_u) = 0.6766693517."""
    stream = np.zeros(1024, dtype=np.uint8)
    stream[:600] = 1
    assert mcv_min_entropy(stream) == pytest.approx(0.6766693517, abs=1e-9)


def test_mcv_non_binary_and_degenerate() -> None:
    # counts 2, 1, 1 of L = 4: p_u = 1/2 + 2.576 sqrt(1/4 / 3) = 1.2436 -> 1 -> H = 0
    assert mcv_min_entropy([0, 0, 1, 2]) == 0.0
    assert mcv_min_entropy(np.zeros(50, dtype=np.uint8)) == 0.0
    with pytest.raises(ValueError):
        mcv_min_entropy([1])


# --- bias -------------------------------------------------------------------


def test_biased_stream_caught() -> None:
    rng = np.random.default_rng(7)
    stream = (rng.random(4096) < 0.8).astype(np.uint8)
    assert is_biased(stream, bias_cutoff(4096, 1.0))
    assert not is_biased(fair_bits(4096, 1)[:, 0], bias_cutoff(4096, 1.0))


def test_bias_allowed_by_lower_assessed_entropy() -> None:
    rng = np.random.default_rng(7)
    stream = (rng.random(4096) < 0.6).astype(np.uint8)
    assert is_biased(stream, bias_cutoff(4096, 1.0))
    assert not is_biased(stream, bias_cutoff(4096, 0.5))


# --- monitor ----------------------------------------------------------------


def test_monitor_fair_urandom_harvest_passes_and_credits_the_assessed_credit() -> None:
    monitor = HealthMonitor()
    report = monitor.check(make_harvest(urandom_bits(4096, 8), h=0.5), credit=[0.5] * 8)
    assert report.passed and report.failures == [] and report.startup
    assert monitor.ready and report.state == "ok"
    assert all(0.8 < m <= 1.0 for m in report.min_entropy)  # 4096 samples: UCB costs ~0.1
    assert all(0.45 < f < 0.55 for f in report.ones_fraction)
    assert report.credit_per_stream == [0.5] * 8
    assert report.credited_bits == 4096 * 8 * 0.5


def test_monitor_credits_nothing_without_an_assessment() -> None:
    report = HealthMonitor().check(make_harvest(fair_bits(4096, 4), h=1.0))
    assert report.passed
    assert report.credit_per_stream == [0.0] * 4 and report.credited_bits == 0.0


def test_monitor_credit_is_the_assessment_not_one_harvests_mcv() -> None:
    credit = [0.9, 0.8, 0.7, 0.95]
    report = HealthMonitor().check(make_harvest(fair_bits(4096, 4), h=1.0), credit=credit)
    assert report.credit_per_stream == credit
    assert report.credited_bits == pytest.approx(4096 * sum(credit))
    with pytest.raises(ValueError, match="one credit per stream"):
        HealthMonitor().check(make_harvest(fair_bits(4096, 4)), credit=[1.0])


def test_monitor_simulator_gets_zero_credit() -> None:
    report = HealthMonitor().check(
        make_harvest(fair_bits(2048, 4), creditable=False), credit=[1.0] * 4
    )
    assert report.passed
    assert report.credit_per_stream == [0.0] * 4
    assert report.credited_bits == 0.0


def test_monitor_stuck_stream_fails_rct_apt_and_bias() -> None:
    bits = fair_bits(2048, 3)
    bits[:, 1] = 1
    monitor = HealthMonitor()
    report = monitor.check(make_harvest(bits))
    assert not report.passed
    assert report.failures == [("rct", 1), ("apt", 1), ("bias", 1)]
    assert report.credit_per_stream == [0.0, 0.0, 0.0]
    assert report.min_entropy[1] == 0.0
    assert not monitor.ready


def test_monitor_biased_stream_fails() -> None:
    bits = fair_bits(4096, 2)
    bits[:, 0] = np.random.default_rng(3).random(4096) < 0.8
    report = HealthMonitor().check(make_harvest(bits, h=1.0))
    assert not report.passed
    assert ("bias", 0) in report.failures
    assert all(stream == 0 for _, stream in report.failures)


def test_startup_needs_enough_samples() -> None:
    monitor = HealthMonitor()
    short = monitor.check(make_harvest(fair_bits(1023, 2)))
    assert not short.passed and short.startup
    assert short.failures == [("startup", 0), ("startup", 1)]
    assert not monitor.ready
    full = monitor.check(make_harvest(fair_bits(1024, 2, seed=2)))
    assert full.passed and full.startup and monitor.ready
    later = monitor.check(make_harvest(fair_bits(100, 2, seed=3)))
    assert later.passed and not later.startup


def test_startup_fails_on_bad_first_harvest_then_recovers() -> None:
    monitor = HealthMonitor()
    assert not monitor.check(make_harvest(np.zeros((1024, 2), dtype=np.uint8))).passed
    assert not monitor.ready
    assert monitor.check(make_harvest(fair_bits(1024, 2))).startup
    assert monitor.ready


def test_rct_continues_across_harvests() -> None:
    first = fair_bits(2048, 2, seed=11)
    first[-16, 0] = 1
    first[-15:, 0] = 0  # harvest ends in a run of exactly 15 zeros
    second = fair_bits(2048, 2, seed=12)
    second[:10, 0] = 0  # continues it to 25 >= 21
    second[10, 0] = 1

    monitor = HealthMonitor()
    assert monitor.check(make_harvest(first)).passed
    report = monitor.check(make_harvest(second))
    assert report.failures == [("rct", 0)]

    broken = second.copy()
    broken[0, 0] = 1
    control = HealthMonitor()
    assert control.check(make_harvest(first)).passed
    assert control.check(make_harvest(broken)).passed
    assert HealthMonitor().check(make_harvest(second)).passed


def test_failed_harvest_restarts_carried_state() -> None:
    first = fair_bits(2048, 1, seed=11)
    first[-1, 0] = 0
    stuck = np.zeros((64, 1), dtype=np.uint8)
    after = fair_bits(1024, 1, seed=13)
    after[:5, 0] = 0
    after[5, 0] = 1

    monitor = HealthMonitor()
    assert monitor.check(make_harvest(first)).passed
    assert ("rct", 0) in monitor.check(make_harvest(stuck)).failures
    assert monitor.check(make_harvest(after)).passed


def test_width_change_restarts_startup() -> None:
    monitor = HealthMonitor()
    assert monitor.check(make_harvest(fair_bits(1024, 2))).passed
    report = monitor.check(make_harvest(fair_bits(100, 3)))
    assert report.startup and not report.passed and not monitor.ready


def test_assess_raises_with_test_and_stream_only() -> None:
    bits = fair_bits(2048, 4)
    bits[:, 2] = 0
    monitor = HealthMonitor()
    with pytest.raises(HealthTestFailure) as info:
        monitor.assess(make_harvest(bits))
    message = str(info.value)
    assert "'rct'" in message and "stream 2" in message and "'os'" in message
    assert isinstance(info.value, Unavailable) and info.value.status == 503
    assert len(message) < 120
    ok = monitor.assess(make_harvest(fair_bits(2048, 4, seed=5)))
    assert ok.passed


def test_snapshot_counts_and_is_plain() -> None:
    monitor = HealthMonitor()
    assert monitor.snapshot()["cutoffs"] is None
    bits = fair_bits(2048, 2)
    monitor.check(make_harvest(bits, h=0.5))
    bad = bits.copy()
    bad[:, 0] = 1
    monitor.check(make_harvest(bad, h=0.5))
    snap = monitor.snapshot()
    json.dumps(snap)
    assert snap["ready"] is True
    assert snap["harvests_checked"] == 2 and snap["harvests_dropped"] == 1
    assert snap["failures"] == {"startup": 0, "rct": 1, "apt": 1, "bias": 1, "repeat": 0}
    assert snap["streams"] == 2 and snap["samples_accepted"] == 2048
    assert snap["ones_fraction"] == [float(bits[:, i].mean()) for i in range(2)]
    assert snap["last_ones_fraction"][0] == 1.0
    assert snap["cutoffs"]["rct"] == 41 and snap["cutoffs"]["apt"] == 793
    assert not any(isinstance(v, bytes | bytearray) for v in snap.values())


def test_monitor_is_thread_safe() -> None:
    monitor = HealthMonitor()
    harvests = [make_harvest(fair_bits(1024, 4, seed=s), h=0.5) for s in range(8)]
    threads = [
        threading.Thread(target=lambda h=h: [monitor.check(h) for _ in range(5)]) for h in harvests
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = monitor.snapshot()
    assert snap["harvests_checked"] == 40
    assert snap["harvests_dropped"] == 0
    assert snap["samples_accepted"] == 40 * 1024


# --- failure states (SP 800-90B §4.3) -----------------------------------------


def stuck_bits(samples: int, width: int) -> npt.NDArray[np.uint8]:
    bits = fair_bits(samples, width)
    bits[:, width - 1] = 0
    return bits


def test_one_failed_harvest_is_intermittent_and_the_next_pass_recovers() -> None:
    monitor = HealthMonitor(persistent_after=3)
    assert monitor.check(make_harvest(fair_bits(2048, 3), harvest_id="a")).state == "ok"
    failed = monitor.check(make_harvest(stuck_bits(2048, 3), harvest_id="b"))
    assert not failed.passed and failed.state == "intermittent" and failed.quarantine == ()
    assert monitor.ready  # an intermittent failure does not stop the source
    assert monitor.check(make_harvest(fair_bits(2048, 3, 2), harvest_id="c")).state == "ok"
    assert monitor.persistent_failure is None


def test_failures_in_a_row_become_persistent_and_quarantine_the_unconfirmed() -> None:
    monitor = HealthMonitor(persistent_after=3)
    for hid, seed in (("p1", 1), ("p2", 2)):
        assert monitor.check(make_harvest(fair_bits(2048, 3, seed), harvest_id=hid)).passed
    assert monitor.check(make_harvest(stuck_bits(2048, 3), harvest_id="f1")).state == (
        "intermittent"
    )
    # a pass right after a failure confirms nothing: p2's tail was never completed
    assert monitor.check(make_harvest(fair_bits(2048, 3, 3), harvest_id="p3")).passed
    monitor.check(make_harvest(stuck_bits(2048, 3), harvest_id="f2"))
    monitor.check(make_harvest(stuck_bits(2048, 3), harvest_id="f3"))
    last = monitor.check(make_harvest(stuck_bits(2048, 3), harvest_id="f4"))
    assert last.state == "persistent"
    assert last.quarantine == ("p2", "p3")  # p1 was confirmed by p2
    assert monitor.persistent_failure == ("rct", 2)
    assert not monitor.ready
    assert monitor.snapshot()["persistent_failure"] == {"test": "rct", "stream": 2}


def test_a_persistent_failure_fails_every_harvest_until_reset_and_a_new_startup() -> None:
    monitor = HealthMonitor(persistent_after=2)
    monitor.check(make_harvest(stuck_bits(2048, 2)))
    assert monitor.check(make_harvest(stuck_bits(2048, 2))).state == "persistent"
    good = make_harvest(fair_bits(2048, 2), harvest_id="g")
    refused = monitor.check(good, credit=[1.0, 1.0])
    assert not refused.passed and refused.credited_bits == 0.0 and refused.state == "persistent"
    monitor.reset()
    assert monitor.state == "startup" and not monitor.ready
    assert not monitor.check(make_harvest(fair_bits(1000, 2))).passed  # start-up needs 1024
    assert monitor.check(good).passed and monitor.state == "ok"


def test_a_source_that_only_fails_never_becomes_ready() -> None:
    monitor = HealthMonitor(persistent_after=3)
    zeros = np.zeros((4096, 8), dtype=np.uint8)
    states = [monitor.check(make_harvest(zeros, harvest_id=f"z{i}")).state for i in range(5)]
    assert states == ["startup", "startup", "persistent", "persistent", "persistent"]
    assert not monitor.ready
