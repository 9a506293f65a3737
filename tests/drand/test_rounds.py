"""Rounds computed from the key: never before their time, the same in every process,
and a chained chain that links each round to the one before from the genesis seed,
restarting from its checkpoint file without trusting it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

import quantumrng.drand.rounds as rounds_module
from quantumrng.drand.chain import CHAINED, UNCHAINED_G1, message, secret_scalar, sign, verify
from quantumrng.drand.key import ChainSecret
from quantumrng.drand.rounds import DrandChain, RoundNotYet

GENESIS = 1_000_000
PERIOD = 3
SECRET = ChainSecret(secret_scalar(hashlib.sha512(b"rounds test key").digest()), GENESIS)


def clock_at(round_: int) -> Callable[[], float]:
    return lambda: GENESIS + (round_ - 1) * PERIOD + 0.5


def counting_signatures(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def counted(scheme: str, secret: object, msg: bytes) -> bytes:
        calls.append(1)
        return sign(scheme, secret, msg)  # type: ignore[arg-type]

    monkeypatch.setattr(rounds_module, "sign", counted)
    return calls


@pytest.mark.parametrize("scheme", [UNCHAINED_G1, CHAINED])
def test_a_round_is_never_signed_before_its_time(scheme: str) -> None:
    chain = DrandChain(scheme, PERIOD, SECRET, clock=clock_at(5))
    assert chain.current_round() == 5 and chain.next_round() == (6, GENESIS + 5 * PERIOD)
    chain.beacon(5)
    with pytest.raises(RoundNotYet):
        chain.beacon(6)
    with pytest.raises(ValueError):
        chain.beacon(0)


def test_unchained_rounds_are_the_same_in_every_process() -> None:
    one = DrandChain(UNCHAINED_G1, PERIOD, SECRET, clock=clock_at(50))
    other = DrandChain(UNCHAINED_G1, PERIOD, SECRET, clock=clock_at(60))
    assert one.hash == other.hash
    assert one.beacon(42) == other.beacon(42)
    assert one.beacon(42).signature == sign(UNCHAINED_G1, SECRET.secret, message(UNCHAINED_G1, 42))


def test_chained_rounds_link_from_the_genesis_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rounds_module, "CHECKPOINT_ROUNDS", 4)
    chain = DrandChain(CHAINED, PERIOD, SECRET, clock=clock_at(20))
    previous = chain.info.group_hash
    for n in range(1, 21):
        beacon = chain.beacon(n)
        assert beacon.previous_signature == previous
        assert verify(
            CHAINED, chain.info.public_key, message(CHAINED, n, previous), beacon.signature
        )
        previous = beacon.signature
    fresh = DrandChain(CHAINED, PERIOD, SECRET, clock=clock_at(20))
    assert fresh.beacon(17) == chain.beacon(17)  # walked in one go, or step by step


def test_a_restart_walks_from_the_checkpoint_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(rounds_module, "CHECKPOINT_ROUNDS", 8)
    first = DrandChain(CHAINED, PERIOD, SECRET, clock=clock_at(40), checkpoint_dir=tmp_path)
    expected = first.beacon(35)
    first.close()
    calls = counting_signatures(monkeypatch)
    second = DrandChain(CHAINED, PERIOD, SECRET, clock=clock_at(40), checkpoint_dir=tmp_path)
    assert second.beacon(35) == expected
    assert len(calls) == 3  # from round 32's checkpoint, not from genesis
    second.close()


def test_an_altered_checkpoint_file_costs_a_walk_never_a_wrong_round(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(rounds_module, "CHECKPOINT_ROUNDS", 8)
    first = DrandChain(CHAINED, PERIOD, SECRET, clock=clock_at(40), checkpoint_dir=tmp_path)
    expected = first.beacon(35)
    first.close()
    (path,) = tmp_path.glob("chained.*")
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), 97):
        data[i] ^= 1
    path.write_bytes(bytes(data))
    calls = counting_signatures(monkeypatch)
    second = DrandChain(CHAINED, PERIOD, SECRET, clock=clock_at(40), checkpoint_dir=tmp_path)
    assert second.beacon(35) == expected
    assert len(calls) == 35
