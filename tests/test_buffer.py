"""ZeroingBuffer: output read ahead is served once, in order, and zeroed as it leaves."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from quantumrng.buffer import ZeroingBuffer


def test_an_empty_buffer_serves_nothing() -> None:
    buf = ZeroingBuffer()
    assert buf.left == 0
    assert buf.take(5) == b""


def test_served_bytes_are_zeroed_in_the_buffer() -> None:
    buf = ZeroingBuffer()
    buf.load(b"\xff" * 16)
    assert buf.take(5) == b"\xff" * 5
    assert bytes(buf.view) == b"\x00" * 5 + b"\xff" * 11
    assert buf.left == 11


def test_clear_zeroes_what_is_left_and_empties_the_buffer() -> None:
    buf = ZeroingBuffer()
    buf.load(b"\xaa" * 32)
    buf.take(3)
    view = buf.view
    buf.clear()
    assert bytes(view) == bytes(32)
    assert buf.left == 0
    assert buf.take(1) == b""


def test_load_zeroes_the_previous_contents_first() -> None:
    buf = ZeroingBuffer()
    buf.load(b"\x11" * 8)
    old = buf.view
    buf.load(b"\x22" * 4)
    assert bytes(old) == bytes(8)
    assert buf.take(10) == b"\x22" * 4


def test_a_dropped_buffer_zeroes_its_bytes() -> None:
    buf = ZeroingBuffer()
    buf.load(b"\x33" * 64)
    view = buf.view
    del buf
    assert bytes(view) == bytes(64)


def test_repr_shows_sizes_never_bytes() -> None:
    buf = ZeroingBuffer()
    buf.load(b"secret-bytes")
    assert "secret" not in repr(buf)
    assert repr(buf) == "ZeroingBuffer(size=12, left=12)"


@given(st.lists(st.integers(min_value=0, max_value=70), max_size=30), st.integers(0, 2**32))
def test_takes_replay_the_loaded_stream_in_order(sizes: list[int], seed: int) -> None:
    data = random.Random(seed).randbytes(1000)
    buf = ZeroingBuffer()
    buf.load(data)
    out = b"".join(buf.take(n) for n in sizes)
    assert out == data[: min(sum(sizes), len(data))]
    assert bytes(buf.view[: buf.pos]) == bytes(buf.pos)
