"""The library front end: token_* functions and QuantumRandom."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import quantumrng
from quantumrng import library
from quantumrng.engine import Engine
from quantumrng.pool.base import Pool
from tests.blocks import make_blocks


@pytest.fixture
def engine(memory_pool: Pool, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    memory_pool.put(make_blocks(2))
    eng = Engine(memory_pool, source="os")
    monkeypatch.setattr(library, "_engine", eng)
    yield eng


def test_public_surface_is_sorted_and_complete() -> None:
    assert quantumrng.__all__ == sorted(quantumrng.__all__)
    for name in quantumrng.__all__:
        assert hasattr(quantumrng, name)


def test_tokens(engine: Engine) -> None:
    assert len(quantumrng.token_bytes()) == 32
    assert len(quantumrng.token_bytes(5)) == 5
    assert len(quantumrng.token_hex(8)) == 16
    assert "=" not in quantumrng.token_urlsafe(10)
    assert quantumrng.token_bytes(16) != quantumrng.token_bytes(16)


def test_randbelow_and_choice(engine: Engine) -> None:
    assert {quantumrng.randbelow(3) for _ in range(200)} == {0, 1, 2}
    with pytest.raises(ValueError):
        quantumrng.randbelow(0)
    assert quantumrng.choice("abc") in "abc"
    with pytest.raises(IndexError):
        quantumrng.choice([])


def test_quantum_random_is_a_random(engine: Engine) -> None:
    r = quantumrng.QuantumRandom()
    assert isinstance(r, random.Random)
    xs = [r.random() for _ in range(1000)]
    assert all(0.0 <= x < 1.0 for x in xs) and len(set(xs)) == 1000
    assert 0 <= r.getrandbits(300) < 2**300
    assert r.getrandbits(0) == 0
    assert 1 <= r.randint(1, 6) <= 6
    deck = list(range(52))
    r.shuffle(deck)
    assert sorted(deck) == list(range(52))
    assert len(r.randbytes(9)) == 9
    with pytest.warns(RuntimeWarning, match="QuantumRandom cannot be seeded"):
        r.seed(42)
    with pytest.raises(NotImplementedError, match="no state to save"):
        r.getstate()


def test_default_engine_built_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QRNG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("QRNG_SOURCE", "os")
    monkeypatch.setattr(library, "_engine", None)
    assert len(quantumrng.token_bytes(8)) == 8  # harvests on demand from the OS source
    assert (tmp_path / "pool.sqlite3").exists()


def test_quantum_random_draws_huge_ranges_exactly_and_warns_only_when_seeded(
    engine: Engine,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = quantumrng.QuantumRandom()
    values = [r.randrange(10**100) for _ in range(2000)]
    assert all(0 <= v < 10**100 for v in values)
    counts = [sum(1 for v in values if v % 10 == d) for d in range(10)]
    assert min(counts) > 140 and max(counts) < 260  # floats would make every value even
    assert -(2**300) <= r.randint(-(2**300), 2**300) <= 2**300
    assert len(set(r.sample(range(10**18), 100))) == 100
    with pytest.warns(RuntimeWarning, match="QuantumRandom cannot be seeded"):
        r.seed()
    with pytest.raises(NotImplementedError, match="no state to restore"):
        r.setstate((3, (), None))
