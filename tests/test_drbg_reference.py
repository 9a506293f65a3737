"""CtrDrbg against a plain reference written from SP 800-90A Rev. 1 §10.2.1 and §10.3.

The reference encrypts one block at a time with AES-ECB and follows the
standard's steps literally, so it shares no shortcut with the module (CTR
keystream, CBC-MAC). It covers what CAVP does not: no df, odd request
lengths, long inputs and the counter wrapping at 2**128.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.drbg import CtrDrbg

from .cavp import read_rsp

KEYLEN, OUTLEN, SEEDLEN = 32, 16, 48


def block_encrypt(key: bytes, block: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(block)


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def bcc(key: bytes, data: bytes) -> bytes:
    """§10.3.3."""
    chaining_value = bytes(OUTLEN)
    for i in range(0, len(data), OUTLEN):
        chaining_value = block_encrypt(key, xor(chaining_value, data[i : i + OUTLEN]))
    return chaining_value


def block_cipher_df(input_string: bytes, no_of_bytes_to_return: int) -> bytes:
    """§10.3.2, with lengths in bytes."""
    s = (
        len(input_string).to_bytes(4, "big")
        + no_of_bytes_to_return.to_bytes(4, "big")
        + input_string
        + b"\x80"
    )
    while len(s) % OUTLEN:
        s += b"\x00"
    temp = b""
    i = 0
    k = bytes(range(0x20))[:KEYLEN]
    while len(temp) < KEYLEN + OUTLEN:
        iv = i.to_bytes(4, "big") + bytes(OUTLEN - 4)
        temp += bcc(k, iv + s)
        i += 1
    k, x = temp[:KEYLEN], temp[KEYLEN : KEYLEN + OUTLEN]
    temp = b""
    while len(temp) < no_of_bytes_to_return:
        x = block_encrypt(k, x)
        temp += x
    return temp[:no_of_bytes_to_return]


@dataclass
class Reference:
    """CTR_DRBG internal state and functions, ctr_len = blocklen (§10.2.1)."""

    use_df: bool
    key: bytes = bytes(KEYLEN)
    v: bytes = bytes(OUTLEN)
    reseed_counter: int = 0

    def increment_v(self) -> None:
        self.v = ((int.from_bytes(self.v, "big") + 1) % 2**128).to_bytes(OUTLEN, "big")

    def update(self, provided_data: bytes) -> None:
        """§10.2.1.2."""
        temp = b""
        while len(temp) < SEEDLEN:
            self.increment_v()
            temp += block_encrypt(self.key, self.v)
        temp = xor(temp[:SEEDLEN], provided_data)
        self.key, self.v = temp[:KEYLEN], temp[KEYLEN:]

    def seed_material(self, entropy: bytes, nonce: bytes, extra: bytes) -> bytes:
        if self.use_df:
            return block_cipher_df(entropy + nonce + extra, SEEDLEN)
        return xor(entropy, extra + bytes(SEEDLEN - len(extra)))

    def instantiate(self, entropy: bytes, nonce: bytes, personalization: bytes) -> None:
        """§10.2.1.3.1 / §10.2.1.3.2."""
        self.key, self.v = bytes(KEYLEN), bytes(OUTLEN)
        self.update(self.seed_material(entropy, nonce if self.use_df else b"", personalization))
        self.reseed_counter = 1

    def reseed(self, entropy: bytes, additional_input: bytes) -> None:
        """§10.2.1.4.1 / §10.2.1.4.2."""
        self.update(self.seed_material(entropy, b"", additional_input))
        self.reseed_counter = 1

    def generate(self, n: int, additional_input: bytes) -> bytes:
        """§10.2.1.5.1 / §10.2.1.5.2."""
        if additional_input:
            if self.use_df:
                additional_input = block_cipher_df(additional_input, SEEDLEN)
            else:
                additional_input += bytes(SEEDLEN - len(additional_input))
            self.update(additional_input)
        else:
            additional_input = bytes(SEEDLEN)
        temp = b""
        while len(temp) < n:
            self.increment_v()
            temp += block_encrypt(self.key, self.v)
        self.update(additional_input)
        self.reseed_counter += 1
        return temp[:n]


def test_reference_matches_cavp() -> None:
    """The reference itself reproduces CAVP answers, so agreement with it means something."""
    records = [
        r
        for r in read_rsp("drbgvectors_pr_false.CTR_DRBG.rsp")
        if r.section == "AES-256 use df" and r.count == 0
    ]
    assert len(records) == 16
    for r in records:
        ref = Reference(use_df=True)
        ref.instantiate(r.one("EntropyInput"), r.one("Nonce"), r.one("PersonalizationString"))
        ref.reseed(r.one("EntropyInputReseed"), r.one("AdditionalInputReseed"))
        outputs = [ref.generate(64, a) for a in r.all("AdditionalInput")]
        assert outputs[1] == r.one("ReturnedBits")


def test_reference_matches_cavp_no_df_count0() -> None:
    entropy = bytes.fromhex(
        "df5d73faa468649edda33b5cca79b0b05600419ccb7a879d"
        "dfec9db32ee494e5531b51de16a30f769262474c73bec010"
    )
    ref = Reference(use_df=False)
    ref.instantiate(entropy, b"", b"")
    ref.generate(64, b"")
    assert ref.generate(64, b"") == bytes.fromhex(
        "d1c07cd95af8a7f11012c84ce48bb8cb87189e99d40fccb1771c619bdf82ab22"
        "80b1dc2f2581f39164f7ac0c510494b3a43c41b7db17514c87b107ae793e01c5"
    )


small = st.binary(max_size=SEEDLEN)
long_input = st.binary(max_size=300)
lengths = st.integers(min_value=0, max_value=200)


@settings(max_examples=60, deadline=None)
@given(
    entropy=st.binary(min_size=32, max_size=200),
    nonce=st.binary(min_size=16, max_size=64),
    personalization=long_input,
    steps=st.lists(
        st.tuples(lengths, long_input, st.none() | st.binary(min_size=32, max_size=100)),
        min_size=1,
        max_size=4,
    ),
)
def test_df_agrees_with_reference(
    entropy: bytes,
    nonce: bytes,
    personalization: bytes,
    steps: list[tuple[int, bytes, bytes | None]],
) -> None:
    drbg = CtrDrbg(entropy, nonce, personalization)
    ref = Reference(use_df=True)
    ref.instantiate(entropy, nonce, personalization)
    for n, additional, reseed_entropy in steps:
        if reseed_entropy is not None:
            drbg.reseed(reseed_entropy, additional)
            ref.reseed(reseed_entropy, additional)
        assert drbg.generate(n, additional) == ref.generate(n, additional)
        assert drbg.reseed_counter == ref.reseed_counter


@settings(max_examples=60, deadline=None)
@given(
    entropy=st.binary(min_size=SEEDLEN, max_size=SEEDLEN),
    personalization=small,
    steps=st.lists(
        st.tuples(lengths, small, st.none() | st.binary(min_size=SEEDLEN, max_size=SEEDLEN)),
        min_size=1,
        max_size=4,
    ),
)
def test_no_df_agrees_with_reference(
    entropy: bytes,
    personalization: bytes,
    steps: list[tuple[int, bytes, bytes | None]],
) -> None:
    drbg = CtrDrbg(entropy, b"", personalization, derivation_function=False)
    ref = Reference(use_df=False)
    ref.instantiate(entropy, b"", personalization)
    for n, additional, reseed_entropy in steps:
        if reseed_entropy is not None:
            drbg.reseed(reseed_entropy, additional)
            ref.reseed(reseed_entropy, additional)
        assert drbg.generate(n, additional) == ref.generate(n, additional)
        assert drbg.reseed_counter == ref.reseed_counter


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 47, 48, 49, 1000, 5000])
def test_df_long_and_odd_inputs_agree_with_reference(length: int) -> None:
    """Block_Cipher_df on input lengths CAVP does not use (its inputs are 32 + 16 + 0/32 bytes)."""
    entropy = bytes(range(256)) * 2
    personalization = bytes((7 * i) % 251 for i in range(length))
    drbg = CtrDrbg(entropy, b"\x01" * 16, personalization)
    ref = Reference(use_df=True)
    ref.instantiate(entropy, b"\x01" * 16, personalization)
    assert drbg.generate(33, personalization) == ref.generate(33, personalization)


def test_full_request_agrees_with_reference() -> None:
    drbg = CtrDrbg(bytes(32), bytes(16))
    ref = Reference(use_df=True)
    ref.instantiate(bytes(32), bytes(16), b"")
    assert drbg.generate(65536) == ref.generate(65536, b"")
    assert drbg.generate(65535, b"x") == ref.generate(65535, b"x")


@pytest.mark.parametrize("use_df", [True, False])
@pytest.mark.parametrize("below", [1, 3, 7, 8])
def test_v_wraps_modulo_2_128(use_df: bool, below: int) -> None:
    """V + 1 wraps to zero at 2**128 in output and in Update (§10.2.1.2, ctr_len = blocklen)."""
    entropy = bytes(range(SEEDLEN))
    drbg = CtrDrbg(entropy, bytes(16), derivation_function=use_df)
    ref = Reference(use_df=use_df)
    ref.instantiate(entropy, bytes(16), b"")
    ref.v = (2**128 - below).to_bytes(OUTLEN, "big")
    drbg._v[:] = (2**128 - below).to_bytes(OUTLEN, "big")
    assert drbg.generate(100) == ref.generate(100, b"")
    assert drbg.generate(100) == ref.generate(100, b"")
