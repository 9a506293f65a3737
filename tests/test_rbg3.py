"""Raw output as RBG3(XOR): pool bytes XOR a DRBG instantiated for the request."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from quantumrng import rbg3
from quantumrng.drbg import CtrDrbg
from quantumrng.errors import NotSeeded, SelfTestFailure
from quantumrng.rbg3 import XorMask
from tests.blocks import make_blocks
from tests.server.support import serve_memory


def test_the_mask_is_a_ctr_drbg_seeded_from_the_kernel_and_a_nonce(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws = iter([bytes(range(32)), bytes(range(100, 116))])
    monkeypatch.setattr(rbg3.os, "urandom", lambda n: next(draws))
    monkeypatch.setattr(rbg3.time, "time_ns", lambda: 7)
    data = bytes(range(256)) * 300  # more than one 64 KiB generate call
    with XorMask() as mask:
        out = mask.apply(data)
    pers = f"quantumrng raw rbg3-xor|{rbg3.os.getpid()}|{rbg3.threading.get_ident()}|7"
    twin = CtrDrbg(bytes(range(32)), bytes(range(100, 116)), pers.encode())
    stream = twin.generate(65536) + twin.generate(len(data) - 65536)
    assert out == bytes(a ^ b for a, b in zip(data, stream, strict=True))


def test_two_requests_over_the_same_bytes_differ_and_a_closed_mask_is_wiped() -> None:
    data = bytes(4096)
    first, second = XorMask(), XorMask()
    assert first.apply(data) != second.apply(data)
    first.close()
    with pytest.raises(NotSeeded):
        first.apply(data)


def test_served_raw_bytes_are_not_the_conditioned_blocks_the_provider_could_recompute(
    tmp_path: Path,
) -> None:
    served = serve_memory(tmp_path, source="file", blocks=0, allow_uncredited_raw=False)
    blocks = make_blocks(4, "file")
    served.node.pool.put(blocks)
    body = served.client.get("/api/v2/bytes?n=128&mode=raw&format=base64").json()
    answer = base64.b64decode(body["data"])
    pool_bytes = b"".join(b.data for b in blocks[:2])
    assert len(answer) == 128 and answer != pool_bytes
    assert all(answer[i : i + 16] not in pool_bytes for i in range(0, 128, 16))
    assert body["source"]["credited_bits"] == 1024  # the credit of the entropy behind it


def test_raw_output_needs_the_power_on_self_test_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quantumrng import selftest
    from quantumrng.selftest import KNOWN_ANSWERS, PowerOnSelfTest
    from tests.test_selftest import broken

    monkeypatch.setattr(selftest, "_POST", PowerOnSelfTest(use_df=broken(KNOWN_ANSWERS, 0)))
    with pytest.raises(SelfTestFailure):
        XorMask()
    served = serve_memory(tmp_path, source="file", blocks=4, allow_uncredited_raw=False)
    r = served.client.get("/api/v2/bytes?n=16&mode=raw")
    assert r.status_code == 503 and r.json()["error"]["code"] == "self_test_failure"
    assert served.node.pool.level().blocks == 4
