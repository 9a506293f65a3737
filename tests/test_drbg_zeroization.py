"""CtrDrbg keeps Key and V in one buffer overwritten in place, and zeroes the seed material
it makes (SP 800-90A §9.4): what drbg.py's docstring promises, checked on the buffers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from quantumrng import drbg as drbg_module
from quantumrng.drbg import SEEDLEN, CtrDrbg
from quantumrng.errors import NotSeeded

ENTROPY = bytes(range(1, 33))
NONCE = bytes(range(100, 116))
ENTROPY_NO_DF = bytes(range(1, SEEDLEN + 1))


class Tracked(bytearray):
    """A bytearray that remembers every instance made while it stands in for the builtin."""

    made: ClassVar[list[Tracked]] = []

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        Tracked.made.append(self)


@pytest.fixture
def allocations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Tracked]]:
    """Every bytearray the drbg module allocates during the test."""
    Tracked.made = []
    monkeypatch.setattr(drbg_module, "bytearray", Tracked, raising=False)
    yield Tracked.made


def new(df: bool) -> CtrDrbg:
    if df:
        return CtrDrbg(ENTROPY, NONCE, b"personalization")
    return CtrDrbg(ENTROPY_NO_DF, b"", b"personalization", derivation_function=False)


OPERATIONS: dict[str, Callable[[CtrDrbg, bool], object]] = {
    "instantiate": lambda drbg, df: None,
    "reseed": lambda drbg, df: drbg.reseed(ENTROPY if df else ENTROPY_NO_DF, b"additional"),
    "generate": lambda drbg, df: drbg.generate(33, b"additional input"),
    "generate_into": lambda drbg, df: drbg.generate_into(bytearray(100), b"additional input"),
    "odd generate": lambda drbg, df: drbg.generate(17),
}


@pytest.mark.parametrize("df", [True, False], ids=["df", "no-df"])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_buffer_the_drbg_makes_is_zero_afterwards_but_its_state(
    allocations: list[Tracked], df: bool, operation: str
) -> None:
    drbg = new(df)
    OPERATIONS[operation](drbg, df)
    state = drbg._state
    assert bytes(state) != bytes(SEEDLEN)
    leftovers = [b for b in allocations if b is not state and any(b)]
    assert leftovers == []
    assert any(len(b) > SEEDLEN for b in allocations) == df  # df's S, chained, room for CBC


def test_the_leftover_check_sees_seed_material_left_behind(
    allocations: list[Tracked], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flawed control: with zeroing switched off, the df buffers are caught."""
    monkeypatch.setattr(drbg_module, "_zero", lambda buffer: None)
    drbg = new(True)
    assert [b for b in allocations if b is not drbg._state and any(b)]


@pytest.mark.parametrize("df", [True, False], ids=["df", "no-df"])
def test_key_and_v_are_overwritten_in_place(df: bool) -> None:
    drbg = new(df)
    state, key, v = drbg._state, drbg._key, drbg._v
    seen = {bytes(state)}
    drbg.generate(64)
    seen.add(bytes(state))
    drbg.reseed(ENTROPY if df else ENTROPY_NO_DF)
    seen.add(bytes(state))
    drbg.generate(5, b"extra")
    seen.add(bytes(state))
    assert len(seen) == 4  # the state changed every time ...
    assert drbg._state is state and drbg._key is key and drbg._v is v  # ... in the same buffer
    assert key.obj is state and v.obj is state
    assert bytes(key) + bytes(v) == bytes(state)


@pytest.mark.parametrize("method", ["wipe", "close", "with"])
def test_uninstantiate_zeroes_key_and_v(method: str) -> None:
    drbg = new(True)
    drbg.generate(16)
    state, tail = drbg._state, drbg._tail
    if method == "with":
        with drbg:
            pass
    else:
        getattr(drbg, method)()
    assert state == bytes(SEEDLEN) and tail == bytes(len(tail))
    with pytest.raises(NotSeeded):
        drbg.generate(1)


def test_a_failed_request_zeroes_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    drbg = new(True)
    state = drbg._state

    def broken(self: CtrDrbg) -> object:
        raise MemoryError

    monkeypatch.setattr(CtrDrbg, "_keystream", broken)
    with pytest.raises(MemoryError):
        drbg.generate(16)
    assert state == bytes(SEEDLEN)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_zeroes_its_copy_and_the_parent_keeps_its_own() -> None:
    drbg = new(True)
    before = bytes(drbg._state)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write_fd, bytes(drbg._state))
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    assert child == bytes(SEEDLEN)
    assert bytes(drbg._state) == before


def test_entropy_input_is_used_where_it_is_not_copied(allocations: list[Tracked]) -> None:
    """The engine hands its entropy input in a bytearray it zeroes: the DRBG must not keep
    a copy of its own (the df input string S is zeroed, checked above)."""
    entropy = bytearray(os.urandom(SEEDLEN))
    drbg = CtrDrbg(entropy, b"", derivation_function=False)
    assert not any(len(b) == SEEDLEN and b == entropy for b in allocations)
    entropy[:] = bytes(SEEDLEN)
    assert len(drbg.generate(16)) == 16
