"""Signed results offline: any tampered field fails, and the canonical bytes are RFC 8785's.

The canonical bytes are checked against an independent RFC 8785 implementation,
npm's ``canonicalize`` (by the RFC's co-author), installed once per session.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from quantumrng import signed
from quantumrng.signed import (
    RESULT_FIELDS,
    PublicKey,
    canonical,
    hash_api_key,
    rfc3339,
    verify_signed,
)
from quantumrng.signing import SigningKey

NOW = time.time()
KEY = Ed25519PrivateKey.generate()
SIGNER = SigningKey(KEY, PublicKey(KEY.public_key(), NOW - 3600))
OTHER = Ed25519PrivateKey.generate()
KEYS = [SIGNER.public, PublicKey(OTHER.public_key(), NOW - 3600)]

PROVENANCE = {
    "kind": "simulator",
    "quantum": False,
    "credited_bits": 0,
    "harvests": [
        {
            "harvest_id": "ab" * 16,
            "backend": None,
            "job_id": None,
            "harvested_at": 1796270221.5771449,
            "qubits": 0,
            "shots": 0,
        }
    ],
    "seeded_at": 1796270221.6015222,
    "reseeds": 1,
}


def a_result(**changes: Any) -> dict[str, Any]:
    result = {
        "method": "integers",
        "parameters": {"n": 3, "min": 1, "max": 6, "mode": "drbg"},
        "data": [4, 3, 5],
        "provenance": PROVENANCE,
        "completion_time": rfc3339(NOW),
        "serial": 7,
        "key_serial": 3,
        "hashed_api_key": hash_api_key("qrng_key"),
        "key_id": SIGNER.key_id,
    }
    result.update(changes)
    return result


SIGNED = SIGNER.sign_result(a_result())

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def test_a_signed_result_verifies() -> None:
    outcome = verify_signed(SIGNED, KEYS)
    assert outcome.valid and outcome.reason == "ok"
    assert (outcome.key_id, outcome.serial) == (SIGNER.key_id, 7)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(RESULT_FIELDS)), value=json_values)
def test_any_tampered_field_is_invalid(field: str, value: Any) -> None:
    """data, parameters, serial, key_serial, completion_time, provenance,
    hashed_api_key, key_id, method: any other value fails."""
    original = SIGNED["result"][field]
    with contextlib.suppress(ValueError):  # a value JCS cannot encode must fail too
        assume(canonical(value) != canonical(original))
    tampered = {**SIGNED, "result": {**SIGNED["result"], field: value}}
    assert not verify_signed(tampered, KEYS).valid


@given(
    field=st.sampled_from(sorted(RESULT_FIELDS)),
    delta=st.integers(1, 10**6),
)
def test_a_nearby_value_is_invalid(field: str, delta: int) -> None:
    """Small, well-formed changes: a serial one off, a time a microsecond off, a digit."""
    original = SIGNED["result"][field]
    if isinstance(original, int):
        value: Any = original + delta
    elif field == "completion_time":
        value = rfc3339(NOW + delta / 1e6)
    elif isinstance(original, str):
        value = original[:-1] + ("A" if original[-1] != "A" else "B")
    elif isinstance(original, list):
        value = [*original[:-1], original[-1] + delta]
    else:
        value = {**original, "extra": delta}
    tampered = {**SIGNED, "result": {**SIGNED["result"], field: value}}
    assert not verify_signed(tampered, KEYS).valid


@given(index=st.integers(0, 63), bit=st.integers(0, 7))
def test_a_flipped_signature_bit_is_invalid(index: int, bit: int) -> None:
    raw = bytearray(base64.b64decode(SIGNED["signature"]))
    raw[index] ^= 1 << bit
    tampered = {**SIGNED, "signature": base64.b64encode(bytes(raw)).decode()}
    outcome = verify_signed(tampered, KEYS)
    assert not outcome.valid and outcome.reason == "the signature does not match the result"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"signature": "not base64!"}, "not base64"),
        ({"signature": "\x80" * 88}, "not base64"),
        ({"signature": None}, "base64 string"),
        ({"signature": base64.b64encode(b"x" * 63).decode()}, "64 bytes"),
        ({"algorithm": "RS256"}, "algorithm"),
        ({"result": {**SIGNED["result"], "extra": 1}}, "exactly"),
        ({"result": {k: v for k, v in SIGNED["result"].items() if k != "data"}}, "exactly"),
        ({"result": {**SIGNED["result"], "key_id": PublicKey(OTHER.public_key(), 0).key_id}}, ""),
        ({"result": {**SIGNED["result"], "completion_time": "yesterday"}}, "RFC 3339"),
        ({"result": {**SIGNED["result"], "serial": 0}}, "positive"),
    ],
)
def test_malformed_signed_objects_are_invalid(change: dict[str, Any], reason: str) -> None:
    outcome = verify_signed({**SIGNED, **change}, KEYS)
    assert not outcome.valid and reason in outcome.reason


def test_a_key_outside_its_period_is_refused() -> None:
    ended = PublicKey(KEY.public_key(), NOW - 3600, NOW - 1)
    outcome = verify_signed(SIGNED, [ended])
    assert not outcome.valid and "not current" in outcome.reason
    assert not verify_signed(SIGNED, [KEYS[1]]).valid  # another key: unknown key id


def test_a_result_signed_by_another_key_under_this_key_id_is_refused() -> None:
    forged = SigningKey(OTHER, SIGNER.public).sign_result(a_result())
    assert not verify_signed(forged, KEYS).valid


# -- RFC 8785 against an independent implementation ------------------------------------------

CANONICALIZE_JS = """
import canonicalize from 'canonicalize';
import { readFileSync } from 'node:fs';
const values = JSON.parse(readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(values.map((v) => canonicalize(v))));
"""


@pytest.fixture(scope="session")
def npm_canonicalize(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """npm's ``canonicalize`` package, installed into a folder of this session."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the independent RFC 8785 implementation")
    cache = tmp_path_factory.mktemp("npm")
    done = subprocess.run(
        ["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund", "canonicalize"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"npm could not install canonicalize: {done.stderr.decode()[-300:]}")
    script = cache / "canon.mjs"
    script.write_text(CANONICALIZE_JS)
    return script


def _canonicalize_in_node(script: Path, values: list[Any]) -> list[str]:
    done = subprocess.run(
        ["node", str(script)],
        input=json.dumps(values).encode(),
        capture_output=True,
        cwd=script.parent,
        timeout=60,
        check=True,
    )
    out: list[str] = json.loads(done.stdout)
    return out


def test_canonical_bytes_of_a_signed_result_match_npm_canonicalize(
    npm_canonicalize: Path,
) -> None:
    result = a_result(data=[0.1, -0.0, 1e21, 1e-7, 2**53 - 1, "é\u2028\x7f"], parameters={})
    (theirs,) = _canonicalize_in_node(npm_canonicalize, [result])
    assert canonical(result) == theirs.encode()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(json_values, min_size=40, max_size=40))
def test_canonical_bytes_match_npm_canonicalize(npm_canonicalize: Path, values: list[Any]) -> None:
    theirs = _canonicalize_in_node(npm_canonicalize, values)
    assert [canonical(v) for v in values] == [t.encode() for t in theirs]


# -- the fast path equals rfc8785 ------------------------------------------------------------


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Ordered(dict[str, Any]):
    pass


every_char = st.characters(codec=None, exclude_categories=())  # surrogates and controls too
any_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**53 - 1, 2**53, -(2**53) + 1, -(2**53), 0])
    | st.floats()
    | st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-7, 1e-6, 1e-4, 1e15, 1e16, 1e21, 1e22, 5e-324])
    | st.text(alphabet=every_char, max_size=8)
    | st.sampled_from(["\u2028\u2029", "/", "\x7f", "\U0001f600", "\ue000", '\\"\b\f\n\r\t'])
    | st.sampled_from([Colour.RED, Level.HIGH])
)
any_values = st.recursive(
    any_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(alphabet=every_char, max_size=4), inner, max_size=4)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3).map(Ordered)
        | st.dictionaries(st.integers(0, 3), inner, max_size=2)
    ),
    max_leaves=16,
)


def _outcome(encode: Callable[[Any], bytes], value: Any) -> bytes | str:
    try:
        return encode(value)
    except ValueError:
        return "refused"


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(value=any_values)
def test_canonical_bytes_are_rfc8785s_for_every_kind_of_value(value: Any) -> None:
    """Floats of every form, 53-bit integer bounds, every character (controls, U+2028/9,
    "/", non-ASCII, lone surrogates), keys beyond the BMP, subclasses, non-string keys:
    the same bytes as the rfc8785 package, or refused by both."""

    def reference(v: Any) -> bytes:
        try:
            return rfc8785.dumps(v)
        except rfc8785.CanonicalizationError as exc:
            raise ValueError(str(exc)) from None

    assert _outcome(canonical, value) == _outcome(reference, value)


def test_keys_beyond_the_bmp_sort_by_utf16_code_units() -> None:
    """U+1F600 is D83D DE00 in UTF-16: before U+E000, though its code point is larger."""
    value = {"\ue000": 1, "\U0001f600": 2, "a": 3}
    assert canonical(value) == '{"a":3,"\U0001f600":2,"\ue000":1}'.encode()


def test_a_signed_result_takes_the_fast_path() -> None:
    """What the service signs (floats in the provenance included) needs no fallback."""
    assert signed._fast_ready(a_result()) is not None
    with pytest.raises(signed._Outside):
        signed._fast_ready({"small": 1e-7})
