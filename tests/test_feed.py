"""The pure parts of ``qrng feed``: which answers may be fed, the credit, the ioctl's bytes."""

from __future__ import annotations

import base64
import math
import os
import stat
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from quantumrng import feed
from quantumrng.signed import PublicKey, canonical, hash_api_key, rfc3339

NOW = 1_800_000_000.0
SIGNER = Ed25519PrivateKey.generate()
KEY = PublicKey(SIGNER.public_key(), -math.inf)
OTHER = PublicKey(Ed25519PrivateKey.generate().public_key(), -math.inf)


def answer(
    data: bytes,
    *,
    serial: int = 7,
    when: float = NOW,
    api_key: str | None = None,
    n: int | None = None,
    method: str = "bytes",
) -> dict[str, Any]:
    """A signed object as the service makes it for ``GET /api/v2/bytes?format=base64``."""
    result = {
        "method": method,
        "parameters": {"n": len(data) if n is None else n, "format": "base64", "mode": "drbg"},
        "data": base64.b64encode(data).decode(),
        "provenance": {"kind": "os"},
        "completion_time": rfc3339(when),
        "serial": serial,
        "key_serial": serial,
        "hashed_api_key": hash_api_key(api_key),
        "key_id": KEY.key_id,
    }
    signature = SIGNER.sign(canonical(result))
    return {
        "result": result,
        "signature": base64.b64encode(signature).decode(),
        "algorithm": "Ed25519",
    }


def check(data: bytes, signed: object, **overrides: Any) -> feed.Accepted | feed.Refused:
    options: dict[str, Any] = {
        "keys": [KEY],
        "n": len(data),
        "api_key": None,
        "now": NOW,
        "max_age": 300.0,
        "last_serial": None,
    }
    options.update(overrides)
    return feed.check_answer(data, signed, **options)


def test_a_fresh_new_answer_signed_by_the_pinned_key_is_accepted() -> None:
    data = os.urandom(64)
    accepted = check(data, answer(data), last_serial=6)
    assert accepted == feed.Accepted(7, rfc3339(NOW))


def test_a_tampered_answer_or_another_key_is_refused() -> None:
    data = os.urandom(64)
    signed = answer(data)
    other = bytes([data[0] ^ 1]) + data[1:]
    signed["result"]["data"] = base64.b64encode(other).decode()
    refused = check(other, signed)
    assert isinstance(refused, feed.Refused) and "signature" in refused.reason
    wrong_key = check(data, answer(data), keys=[OTHER])
    assert isinstance(wrong_key, feed.Refused) and "unknown key" in wrong_key.reason


def test_bytes_other_than_the_signed_ones_are_refused() -> None:
    data = os.urandom(32)
    refused = check(os.urandom(32), answer(data))
    assert isinstance(refused, feed.Refused) and "not the bytes signed" in refused.reason


def test_an_answer_of_the_wrong_length_or_to_another_request_is_refused() -> None:
    data = os.urandom(32)
    assert isinstance(check(data, answer(data), n=64), feed.Refused)
    lying = answer(data, n=64)  # says n=64, holds 32 bytes
    short = check(data, lying, n=64)
    assert isinstance(short, feed.Refused)
    assert isinstance(check(data[:16], answer(data[:16], n=32), n=32), feed.Refused)
    assert isinstance(check(data, answer(data, method="uuids")), feed.Refused)


def test_another_api_keys_answer_is_refused() -> None:
    data = os.urandom(16)
    assert isinstance(check(data, answer(data, api_key="k1"), api_key="k1"), feed.Accepted)
    refused = check(data, answer(data, api_key="k1"), api_key="k2")
    assert isinstance(refused, feed.Refused) and "another API key" in refused.reason
    assert isinstance(check(data, answer(data, api_key="k1")), feed.Refused)


@pytest.mark.parametrize(
    ("offset", "fresh"),
    [(0, True), (-300, True), (300, True), (-301, False), (301, False)],
)
def test_freshness_is_max_age_either_side_of_the_clock(offset: float, fresh: bool) -> None:
    data = os.urandom(16)
    outcome = check(data, answer(data, when=NOW + offset))
    assert isinstance(outcome, feed.Accepted) is fresh
    if not fresh:
        assert isinstance(outcome, feed.Refused)
        assert ("old" in outcome.reason) is (offset < 0)
        assert ("clock" in outcome.reason) is (offset > 0)


def test_a_serial_not_above_the_last_one_fed_is_refused() -> None:
    data = os.urandom(16)
    for last in (7, 8, 1000):
        refused = check(data, answer(data, serial=7), last_serial=last)
        assert isinstance(refused, feed.Refused) and "replayed" in refused.reason
    assert feed.check_serial(8, 7) is None and feed.check_serial(1, None) is None


def test_rndaddentropy_is_iow_r_3_of_two_ints() -> None:
    assert feed.RNDADDENTROPY == 0x40085203
    assert feed.ioc_write(ord("R"), 0x03, 8) == 0x40085203


@given(data=st.binary(max_size=600), share=st.floats(0, 1))
def test_rand_pool_info_is_two_native_ints_then_the_bytes(data: bytes, share: float) -> None:
    bits = int(8 * len(data) * share)
    packed = feed.rand_pool_info(data, bits)
    assert isinstance(packed, bytearray)
    assert struct.unpack_from("=ii", packed) == (bits, len(data))
    assert bytes(packed[8:]) == data and len(packed) == 8 + len(data)


def test_rand_pool_info_never_credits_more_than_it_carries() -> None:
    with pytest.raises(ValueError, match="entropy_bits"):
        feed.rand_pool_info(b"\x00" * 4, 33)
    with pytest.raises(ValueError, match="entropy_bits"):
        feed.rand_pool_info(b"\x00" * 4, -1)


def test_credit_is_a_quarter_by_default_and_at_most_the_bits_received() -> None:
    assert feed.credit_bits(64, None) == 128
    assert feed.credit_bits(1, None) == 2
    assert feed.credit_bits(64, 0) == 0
    assert feed.credit_bits(64, 512) == 512
    with pytest.raises(ValueError, match="at most the 512 bits"):
        feed.credit_bits(64, 513)


def test_only_the_random_drivers_character_devices_may_be_credited() -> None:
    char = stat.S_IFCHR | 0o666
    assert feed.is_random_device(char, os.makedev(1, 8))
    assert feed.is_random_device(char, os.makedev(1, 9))
    assert not feed.is_random_device(char, os.makedev(1, 3))  # /dev/null
    assert not feed.is_random_device(stat.S_IFREG | 0o644, os.makedev(1, 8))
    assert not feed.is_random_device(stat.S_IFIFO | 0o600, 0)


def test_the_state_file_holds_the_last_serial() -> None:
    text = feed.state_text(feed.Accepted(41, rfc3339(NOW)))
    assert feed.parse_state(text) == 41
    for bad in ("", "[]", '{"serial": 0}', '{"serial": true}', '{"serial": "4"}', "{"):
        with pytest.raises(ValueError):
            feed.parse_state(bad)
