"""ANU QRNG's legacy and current APIs on a real `qrng serve`: the originals' shapes, limits,
refusals and key checks, and the real `quantumrandom` client pointed at it by its URL alone."""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import quantumrandom
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumrng.server.anu import CURRENT_PATH, LEGACY_PATH
from quantumrng.server.keys import KeyStore
from tests.server.process import Server, run_server

HEX = set(string.hexdigits.lower())
TIGHT_QUOTA = 64  # bytes a day for the quota tests' key


class Keys:
    """The API keys the module's server knows."""

    def __init__(self, data: Path) -> None:
        store = KeyStore(data / "keys.sqlite3")
        self.good, _ = store.create("good", {"drbg"}, None, None)
        self.raw_only, _ = store.create("raw-only", {"raw"}, None, None)
        self.tight, _ = store.create("tight", {"drbg"}, None, TIGHT_QUOTA)
        self.tight_legacy, _ = store.create("tight-legacy", {"drbg"}, None, TIGHT_QUOTA)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Keys]]:
    tmp = tmp_path_factory.mktemp("anu")
    (tmp / "data").mkdir()
    keys = Keys(tmp / "data")
    with run_server(tmp) as server:
        yield server, keys


@pytest.fixture(scope="module")
def client(served: tuple[Server, Keys]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0].base_url, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def keys(served: tuple[Server, Keys]) -> Keys:
    return served[1]


def legacy(client: httpx.Client, **query: Any) -> httpx.Response:
    return client.get(LEGACY_PATH, params=query)


def current(client: httpx.Client, key: str | None, path: str = CURRENT_PATH, **q: Any) -> Any:
    headers = {} if key is None else {"x-api-key": key}
    return client.get(path, params=q, headers=headers)


def assert_elements(data: list[Any], kind: str, width: int) -> None:
    """Integers in range for uint types, lowercase hex of ``width`` digits otherwise."""
    if kind in ("uint8", "uint16"):
        high = 0xFF if kind == "uint8" else 0xFFFF
        assert all(type(v) is int and 0 <= v <= high for v in data)
    else:
        assert all(isinstance(v, str) and len(v) == width and set(v) <= HEX for v in data)


# -- legacy: /API/jsonI.php -----------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["uint8", "uint16", "hex16"]),
    length=st.integers(1, 1024),
    size=st.integers(1, 64),
)
def test_legacy_answers_its_shape_with_integer_length_and_hex16_of_size_bytes(
    client: httpx.Client, kind: str, length: int, size: int
) -> None:
    r = legacy(client, length=length, type=kind, size=size)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    if kind == "hex16":
        assert list(body) == ["type", "length", "size", "data", "success"]
        assert body["type"] == "string" and body["size"] == size
    else:
        assert list(body) == ["type", "length", "data", "success"]
        assert body["type"] == kind
    assert body["length"] == length and body["success"] is True
    assert len(body["data"]) == length
    assert_elements(body["data"], kind, 2 * size)


def test_legacy_hex16_documented_example_gives_blocks_0000_to_ffff(client: httpx.Client) -> None:
    body = legacy(client, length=10, type="hex16", size=2).json()
    assert [len(block) for block in body["data"]] == [4] * 10


def test_legacy_hex16_without_size_is_one_byte_blocks(client: httpx.Client) -> None:
    body = legacy(client, length=5, type="hex16").json()
    assert body["size"] == 1 and all(len(block) == 2 for block in body["data"])


def test_legacy_ignores_size_for_integer_types(client: httpx.Client) -> None:
    body = legacy(client, length=4, type="uint8", size=99999).json()
    assert body["success"] is True and "size" not in body


def test_legacy_uint8_covers_every_byte_value(client: httpx.Client) -> None:
    seen: set[int] = set()
    for _ in range(8):  # 8192 draws: a value is missed with probability ~e^-32
        seen.update(legacy(client, length=1024, type="uint8").json()["data"])
    assert seen == set(range(256))


def test_legacy_answers_differ(client: httpx.Client) -> None:
    answers = {tuple(legacy(client, length=8, type="uint16").json()["data"]) for _ in range(10)}
    assert len(answers) == 10


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ({"length": 0, "type": "uint8"}, "array length"),
        ({"length": 1025, "type": "uint8"}, "array length"),
        ({"length": "ten", "type": "uint8"}, "array length"),
        ({"length": "-1", "type": "uint8"}, "array length"),
        ({"type": "uint8"}, "array length"),
        ({"length": 3, "type": "hex8"}, "data type"),
        ({"length": 3, "type": "uint32"}, "data type"),
        ({"length": 3}, "data type"),
        ({"length": 3, "type": "hex16", "size": 0}, "block size"),
        ({"length": 3, "type": "hex16", "size": 1025}, "block size"),
        ({"length": 3, "type": "hex16", "size": ""}, "block size"),
    ],
)
def test_legacy_refuses_bad_parameters_with_a_200_success_false(
    client: httpx.Client, query: dict[str, Any], rule: str
) -> None:
    r = legacy(client, **query)
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is False and rule in body["message"] and "data" not in body


def test_legacy_refuses_an_exhausted_quota_with_its_plain_sentence_and_retry_after(
    client: httpx.Client, keys: Keys
) -> None:
    headers = {"x-api-key": keys.tight_legacy}
    ok = client.get(LEGACY_PATH, params={"length": TIGHT_QUOTA, "type": "uint8"}, headers=headers)
    assert ok.status_code == 200 and ok.json()["success"] is True
    r = client.get(LEGACY_PATH, params={"length": 1, "type": "uint8"}, headers=headers)
    assert r.status_code == 429 and r.headers["content-type"].startswith("text/plain")
    assert "quota" in r.text and int(r.headers["retry-after"]) >= 1


def test_legacy_refuses_an_invalid_key_as_text(client: httpx.Client) -> None:
    r = client.get(
        LEGACY_PATH, params={"length": 1, "type": "uint8"}, headers={"x-api-key": "qrng_nope"}
    )
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/plain")


# -- the real quantumrandom client ----------------------------------------------------------


@pytest.fixture
def pointed(served: tuple[Server, Keys], monkeypatch: pytest.MonkeyPatch) -> None:
    """Change the client's one setting, its URL, to this server."""
    monkeypatch.setattr(quantumrandom, "URL", served[0].base_url + LEGACY_PATH)


@pytest.mark.usefixtures("pointed")
def test_quantumrandom_get_data_uint16_and_hex16() -> None:
    numbers = quantumrandom.get_data("uint16", 5)
    assert len(numbers) == 5 and all(0 <= n <= 0xFFFF for n in numbers)
    blocks = quantumrandom.get_data("hex16", array_length=5, block_size=2)
    assert len(blocks) == 5 and all(len(b) == 4 and set(b) <= HEX for b in blocks)


@pytest.mark.usefixtures("pointed")
def test_quantumrandom_hex_binary_and_uint16() -> None:
    assert len(quantumrandom.hex(10, 3)) == 60
    data = quantumrandom.binary(16, 4)
    assert isinstance(data, bytes) and len(data) == 64
    array = quantumrandom.uint16(100)
    assert array.dtype == np.uint16 and array.shape == (100,)
    assert quantumrandom.hex(8, 8) != quantumrandom.hex(8, 8)


@pytest.mark.usefixtures("pointed")
def test_quantumrandom_limits_hold_on_both_sides() -> None:
    assert len(quantumrandom.get_data("uint16", 1024, 1024)) == 1024
    with pytest.raises(Exception, match="cannot be larger"):
        quantumrandom.get_data("uint16", 1025)


# -- current: /anu/ -------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["uint8", "uint16", "hex8", "hex16"]),
    length=st.integers(1, 1024),
    size=st.integers(1, 10),
)
def test_current_answers_its_shape_with_string_length(
    client: httpx.Client, keys: Keys, kind: str, length: int, size: int
) -> None:
    r = current(client, keys.good, length=length, type=kind, size=size)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert list(body) == ["success", "type", "length", "data"]
    assert body == {**body, "success": True, "type": kind, "length": str(length)}
    assert len(body["data"]) == length
    assert_elements(body["data"], kind, (2 if kind == "hex8" else 4) * size)


def test_current_documented_hex8_example_is_two_byte_blocks(
    client: httpx.Client, keys: Keys
) -> None:
    body = current(client, keys.good, length=5, type="hex8", size=2).json()
    assert [len(block) for block in body["data"]] == [4] * 5


def test_current_is_served_with_and_without_the_trailing_slash(
    client: httpx.Client, keys: Keys
) -> None:
    r = current(client, keys.good, path=CURRENT_PATH.rstrip("/"), length=3, type="uint8")
    assert r.status_code == 200 and r.json()["length"] == "3"


def test_current_names_its_entropy_in_headers(client: httpx.Client, keys: Keys) -> None:
    r = current(client, keys.good, length=1, type="uint8")
    assert r.headers["x-qrng-mode"] == "drbg" and r.headers["x-qrng-source"] == "os"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": ""},
        {"x-api-key": "qrng_not-a-key"},
        {"authorization": "Bearer qrng_not-a-key"},
    ],
    ids=["missing", "empty", "invalid", "bearer-only"],
)
def test_current_refuses_a_missing_or_invalid_key_as_the_gateway_does(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    r = client.get(CURRENT_PATH, params={"length": 1, "type": "uint8"}, headers=headers)
    assert r.status_code == 403 and r.json() == {"message": "Forbidden"}


def test_current_refuses_a_good_key_sent_only_as_bearer(client: httpx.Client, keys: Keys) -> None:
    r = client.get(
        CURRENT_PATH,
        params={"length": 1, "type": "uint8"},
        headers={"authorization": f"Bearer {keys.good}"},
    )
    assert r.status_code == 403 and r.json() == {"message": "Forbidden"}


def test_current_refuses_a_key_without_the_drbg_scope(client: httpx.Client, keys: Keys) -> None:
    r = current(client, keys.raw_only, length=1, type="uint8")
    assert r.status_code == 403 and r.json() == {"message": "Forbidden"}


def test_current_checks_the_key_before_the_parameters(client: httpx.Client) -> None:
    r = current(client, None, length=5000, type="nope")
    assert r.status_code == 403 and r.json() == {"message": "Forbidden"}


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ({"length": 0, "type": "uint8"}, "array length"),
        ({"length": 1025, "type": "uint8"}, "array length"),
        ({"type": "uint8"}, "array length"),
        ({"length": 2, "type": "uint32"}, "data type"),
        ({"length": 2, "type": "string"}, "data type"),
        ({"length": 2, "type": "hex16"}, "block size"),
        ({"length": 2, "type": "hex8", "size": 0}, "block size"),
        ({"length": 2, "type": "hex16", "size": 11}, "block size"),
    ],
)
def test_current_refuses_bad_parameters_with_400(
    client: httpx.Client, keys: Keys, query: dict[str, Any], rule: str
) -> None:
    r = current(client, keys.good, **query)
    assert r.status_code == 400
    body = r.json()
    assert body["success"] is False and rule in body["message"] and "data" not in body


def test_current_over_quota_is_the_gateways_limit_exceeded(
    client: httpx.Client, keys: Keys
) -> None:
    assert current(client, keys.tight, length=TIGHT_QUOTA, type="uint8").status_code == 200
    r = current(client, keys.tight, length=1, type="uint8")
    assert r.status_code == 429 and r.json() == {"message": "Limit Exceeded"}
    assert int(r.headers["retry-after"]) >= 1


def test_current_answers_differ(client: httpx.Client, keys: Keys) -> None:
    answers = {current(client, keys.good, length=4, type="hex16", size=4).text for _ in range(10)}
    assert len(answers) == 10
