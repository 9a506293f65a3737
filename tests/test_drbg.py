"""CtrDrbg behaviour: input limits, reseed counter, fail-closed states, no secret in reprs."""

from __future__ import annotations

import array
import copy
import os
import pickle
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.drbg import (
    KEYLEN,
    MAX_BYTES_PER_REQUEST,
    RESEED_INTERVAL,
    SECURITY_STRENGTH,
    SEEDLEN,
    CtrDrbg,
)
from quantumrng.errors import NotSeeded, ReseedRequired

SECRET = 0xA7  # a byte whose hex and escapes are easy to look for in messages
ENTROPY = bytes([SECRET]) * 32
NONCE = bytes([SECRET]) * 16
ENTROPY_NO_DF = bytes([SECRET]) * SEEDLEN


def new(*, df: bool = True, entropy: bytes | None = None) -> CtrDrbg:
    if df:
        return CtrDrbg(entropy or ENTROPY, NONCE, b"test")
    return CtrDrbg(entropy or ENTROPY_NO_DF, b"", b"test", derivation_function=False)


def assert_no_secret(text: str) -> None:
    assert "a7" not in text.lower()
    assert "\\x" not in text
    assert "§" not in text  # the bytes would show as latin-1 characters


def test_constants_follow_table_3() -> None:
    assert (SEEDLEN, KEYLEN, SECURITY_STRENGTH) == (48, 32, 256)
    assert MAX_BYTES_PER_REQUEST == 65536 == 2**19 // 8
    assert RESEED_INTERVAL == 2**48
    assert CtrDrbg.MAX_BYTES_PER_REQUEST == MAX_BYTES_PER_REQUEST
    assert CtrDrbg.SEEDLEN == SEEDLEN


BAD_DF_INPUTS = [
    pytest.param(lambda: CtrDrbg(ENTROPY[:31], NONCE), id="entropy-31"),
    pytest.param(lambda: CtrDrbg(b"", NONCE), id="entropy-empty"),
    pytest.param(lambda: CtrDrbg(ENTROPY, NONCE[:15]), id="nonce-15"),
    pytest.param(lambda: CtrDrbg(ENTROPY, b""), id="nonce-empty"),
    pytest.param(lambda: new().reseed(ENTROPY[:31]), id="reseed-entropy-31"),
]
BAD_NO_DF_INPUTS = [
    pytest.param(
        lambda: CtrDrbg(ENTROPY_NO_DF[:47], b"", derivation_function=False), id="entropy-47"
    ),
    pytest.param(
        lambda: CtrDrbg(ENTROPY_NO_DF + b"\xa7", b"", derivation_function=False), id="entropy-49"
    ),
    pytest.param(
        lambda: CtrDrbg(ENTROPY_NO_DF, b"", bytes(49), derivation_function=False),
        id="personalization-49",
    ),
    pytest.param(lambda: new(df=False).reseed(ENTROPY_NO_DF[:47]), id="reseed-entropy-47"),
    pytest.param(lambda: new(df=False).reseed(ENTROPY_NO_DF, bytes(49)), id="reseed-additional-49"),
    pytest.param(lambda: new(df=False).generate(16, bytes(49)), id="generate-additional-49"),
    pytest.param(
        lambda: new(df=False).generate_into(bytearray(16), bytes(49)), id="generate-into-49"
    ),
]
BAD_REQUESTS = [
    pytest.param(lambda: new().generate(-1), id="negative"),
    pytest.param(lambda: new().generate(MAX_BYTES_PER_REQUEST + 1), id="over-max"),
    pytest.param(
        lambda: new().generate_into(bytearray(MAX_BYTES_PER_REQUEST + 1)), id="into-over-max"
    ),
]


@pytest.mark.parametrize("call", BAD_DF_INPUTS + BAD_NO_DF_INPUTS + BAD_REQUESTS)
def test_invalid_lengths_raise_value_error_without_input_bytes(call: Any) -> None:
    with pytest.raises(ValueError, match="bytes") as info:
        call()
    assert_no_secret(str(info.value))


def test_limits_are_inclusive() -> None:
    CtrDrbg(ENTROPY, NONCE)
    CtrDrbg(ENTROPY_NO_DF, b"", bytes(SEEDLEN), derivation_function=False)
    CtrDrbg(ENTROPY_NO_DF, b"\xff" * 99, derivation_function=False)  # nonce ignored
    drbg = new(df=False)
    drbg.reseed(ENTROPY_NO_DF, bytes(SEEDLEN))
    assert len(drbg.generate(MAX_BYTES_PER_REQUEST, bytes(SEEDLEN))) == MAX_BYTES_PER_REQUEST
    assert new().generate(0) == b""


@pytest.mark.parametrize("value", [32, "a" * 32, None, 3.0])
def test_non_bytes_input_is_refused_not_zero_filled(value: Any) -> None:
    with pytest.raises(TypeError):
        CtrDrbg(value, NONCE)
    with pytest.raises(TypeError):
        new().generate(16, value if value is not None else 1)  # type: ignore[arg-type]


def test_bytes_like_inputs_act_as_bytes() -> None:
    entropy: Any = bytearray(ENTROPY)
    nonce: Any = memoryview(NONCE)
    a = CtrDrbg(entropy, nonce, bytearray(b"test"))  # type: ignore[arg-type]
    assert a.generate(64, entropy[:1]) == new().generate(64, ENTROPY[:1])


@pytest.mark.parametrize("df", [True, False])
def test_reseed_counter_counts_requests_and_reseed_resets_it(df: bool) -> None:
    drbg = new(df=df)
    assert drbg.reseed_counter == 1
    for expected in range(2, 6):
        drbg.generate(1)
        assert drbg.reseed_counter == expected
    drbg.generate_into(bytearray(3))
    assert drbg.reseed_counter == 6
    drbg.reseed(ENTROPY if df else ENTROPY_NO_DF)
    assert drbg.reseed_counter == 1


def test_reseed_counter_is_read_only() -> None:
    drbg = new()
    with pytest.raises(AttributeError):
        drbg.reseed_counter = 1  # type: ignore[misc]


@pytest.mark.parametrize("df", [True, False])
def test_reseed_required_past_the_interval(df: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    drbg = new(df=df)
    monkeypatch.setattr(drbg, "_reseed_counter", RESEED_INTERVAL)
    drbg.generate(16)  # the 2**48-th request is still allowed
    assert drbg.reseed_counter == RESEED_INTERVAL + 1
    with pytest.raises(ReseedRequired):
        drbg.generate(16)
    with pytest.raises(ReseedRequired):
        drbg.generate_into(bytearray(16))
    with pytest.raises(NotSeeded):  # ReseedRequired is a NotSeeded: a 503, fail closed
        drbg.generate(0)
    drbg.reseed(ENTROPY if df else ENTROPY_NO_DF)
    assert len(drbg.generate(16)) == 16


def test_reseed_changes_the_stream() -> None:
    a, b = new(), new()
    b.reseed(ENTROPY)
    assert a.generate(32) != b.generate(32)


@pytest.mark.parametrize("method", ["wipe", "close", "with"])
def test_wiped_drbg_fails_closed(method: str) -> None:
    drbg = new()
    if method == "with":
        with drbg as same:
            assert same is drbg
    else:
        getattr(drbg, method)()
    with pytest.raises(NotSeeded):
        drbg.generate(16)
    out = bytearray(16)
    with pytest.raises(NotSeeded):
        drbg.generate_into(out)
    assert out == bytearray(16)
    with pytest.raises(NotSeeded):
        drbg.reseed(ENTROPY)
    assert "wiped" in repr(drbg)


def test_failure_mid_request_drops_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def update(self, data: object) -> bytes:
            raise MemoryError

        def update_into(self, data: object, buf: object) -> int:
            raise MemoryError

    a, b = new(), new()
    monkeypatch.setattr(CtrDrbg, "_keystream", lambda self: Broken())
    with pytest.raises(MemoryError):
        a.generate(16)
    with pytest.raises(MemoryError):
        b.generate_into(bytearray(16))
    monkeypatch.undo()
    for drbg in (a, b):
        with pytest.raises(NotSeeded):
            drbg.generate(16)


@pytest.mark.parametrize("df", [True, False])
def test_repr_shows_no_state(df: bool) -> None:
    a, b = new(df=df), new(df=df, entropy=bytes(range(SEEDLEN)))
    a.generate(100)
    assert repr(a) == repr(b)
    assert_no_secret(repr(a))
    key, v = bytes(a._key), bytes(a._v)
    assert key != bytes(len(key))
    assert key.hex() not in repr(a)
    assert v.hex() not in repr(a)
    assert not hasattr(a, "__dict__")


def test_copy_and_pickle_are_refused() -> None:
    drbg = new()
    for clone in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError):
            clone(drbg)


@pytest.mark.parametrize("df", [True, False])
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 1000, MAX_BYTES_PER_REQUEST])
@pytest.mark.parametrize("additional", [b"", b"extra"])
def test_generate_into_equals_generate(df: bool, n: int, additional: bytes) -> None:
    a, b = new(df=df), new(df=df)
    for _ in range(2):
        out = bytearray(n)
        a.generate_into(out, additional)
        assert bytes(out) == b.generate(n, additional)
    assert a.reseed_counter == b.reseed_counter == 3
    assert a.generate(32) == b.generate(32)


def test_generate_into_fills_views_and_typed_buffers() -> None:
    a, b = new(), new()
    big = bytearray(100)
    a.generate_into(memoryview(big)[10:60])
    assert big[:10] == bytes(10) and big[60:] == bytes(40)
    assert big[10:60] == b.generate(50)
    words = array.array("I", bytes(64))
    a.generate_into(words)  # type: ignore[arg-type]
    assert words.tobytes() == b.generate(64)


def test_generate_into_refuses_read_only_buffers_and_keeps_state() -> None:
    a, b = new(), new()
    with pytest.raises(TypeError):
        a.generate_into(memoryview(bytes(16)))
    assert a.reseed_counter == 1
    assert a.generate(16) == b.generate(16)


def test_instances_with_different_inputs_differ() -> None:
    base = new().generate(64)
    assert new(entropy=bytes(32)).generate(64) != base
    assert CtrDrbg(ENTROPY, bytes(16), b"test").generate(64) != base
    assert CtrDrbg(ENTROPY, NONCE, b"other").generate(64) != base
    assert new(df=False).generate(64) != new(df=False, entropy=bytes(SEEDLEN)).generate(64)
    assert new().generate(64) == base


def test_successive_outputs_differ() -> None:
    drbg = new()
    outputs = [drbg.generate(16) for _ in range(1000)]
    assert len(set(outputs)) == len(outputs)


def test_concurrent_requests_never_repeat_output() -> None:
    drbg = new()
    outputs: list[bytes] = []

    def work() -> None:
        chunk = [drbg.generate(16) for _ in range(300)]
        outputs.extend(chunk)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(outputs)) == len(outputs) == 1200
    assert drbg.reseed_counter == 1201


CHILD_TIMEOUT = 30.0  # seconds a forked child may take before it counts as hung


def _in_child(body: Any) -> int:
    """Run ``body`` in a forked child; return its exit code (99 when it hangs)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = body()
        finally:
            os._exit(code)
    status: list[int] = []
    waiter = threading.Thread(target=lambda: status.append(os.waitpid(pid, 0)[1]), daemon=True)
    waiter.start()
    waiter.join(CHILD_TIMEOUT)  # returns as soon as the child exits
    if not status:
        os.kill(pid, 9)
        waiter.join()
        return 99
    return os.waitstatus_to_exitcode(status[0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_is_wiped_even_with_the_lock_held() -> None:
    drbg = new()
    expected = new().generate(16)

    def child() -> int:
        try:
            drbg.generate(16)
        except NotSeeded:
            drbg.wipe()  # would deadlock on a lock copied in the held state
            return 0
        return 2

    with drbg._lock:  # as if another thread were inside generate at fork time
        code = _in_child(child)
    assert code == 0
    assert drbg.generate(16) == expected  # the parent keeps its state


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, MAX_BYTES_PER_REQUEST), additional=st.binary(max_size=SEEDLEN))
def test_generate_returns_exactly_n_bytes(n: int, additional: bytes) -> None:
    out = new(df=False).generate(n, additional)
    assert isinstance(out, bytes)
    assert len(out) == n
