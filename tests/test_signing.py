"""The signing key ring: made on first start, owner-only, rotated without a restart."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from quantumrng import signing
from quantumrng.errors import ConfigError
from quantumrng.signed import hash_api_key, parse_rfc3339, rfc3339, verify_signed
from quantumrng.signing import ROTATION_GRACE_SECONDS, KeyRing, rotate
from tests.conftest import make_settings


def _result(ring: KeyRing, serial: int, when: float | None = None) -> dict[str, object]:
    return {
        "method": "floats",
        "parameters": {"n": 1, "mode": "drbg"},
        "data": [0.5],
        "provenance": {"kind": "os", "quantum": False, "credited_bits": 0, "harvests": []},
        "completion_time": rfc3339(time.time() if when is None else when),
        "serial": serial,
        "key_serial": serial,
        "hashed_api_key": hash_api_key(None),
        "key_id": ring.current.key_id,
    }


def test_the_first_load_makes_an_owner_only_key_and_lists_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    ring = KeyRing.load(settings)
    pem = settings.signing_dir / f"{ring.current.key_id}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert [k.key_id for k in ring.public_keys] == [ring.current.key_id]
    assert ring.public_keys[0].not_after is None
    assert KeyRing.load(settings).current.key_id == ring.current.key_id  # kept, not remade
    assert "PRIVATE" not in repr(ring) and "PRIVATE" not in repr(ring.current)


def test_results_signed_before_a_rotation_still_verify(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    ring = KeyRing.load(settings)
    old = ring.current
    before = old.sign_result(_result(ring, 1))
    new = rotate(settings)
    assert ring.refresh()
    assert ring.current.key_id == new.key_id != old.key_id
    listed = {k.key_id: k for k in ring.public_keys}
    assert set(listed) == {old.key_id, new.key_id}
    ended = listed[old.key_id]
    assert ended.not_after is not None and listed[new.key_id].not_after is None
    assert ended.not_after == pytest.approx(new.not_before + ROTATION_GRACE_SECONDS)
    assert verify_signed(before, ring.public_keys).valid
    after = ring.current.sign_result(_result(ring, 2))
    assert verify_signed(after, ring.public_keys).valid
    # the old key past its period: refused
    late = old.sign_result({**_result(ring, 3, ended.not_after + 1), "key_id": old.key_id})
    outcome = verify_signed(late, ring.public_keys)
    assert not outcome.valid and "not current" in outcome.reason
    written = json.loads((settings.signing_dir / "keys.json").read_text())["keys"]
    assert parse_rfc3339(written[0]["not_after"]) == pytest.approx(ended.not_after, abs=1e-5)


def test_a_running_ring_follows_a_rotation_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    ring = KeyRing.load(settings)
    first = ring.current.key_id
    rotated = rotate(settings)
    assert ring.current.key_id == first  # read at most every REFRESH_SECONDS
    monkeypatch.setattr(signing, "REFRESH_SECONDS", 0.0)
    assert ring.current.key_id == rotated.key_id
    assert not ring.refresh()  # nothing changed since


def test_a_configured_key_file_is_used_and_not_rotated(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "service.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    settings = make_settings(tmp_path, signing_key_file=path)
    ring = KeyRing.load(settings)
    assert ring.current.public.key.public_bytes_raw() == key.public_key().public_bytes_raw()
    with pytest.raises(ConfigError, match="signing_key_file"):
        rotate(settings)


def test_a_key_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError):
        KeyRing.load(make_settings(tmp_path, signing_key_file=path))
