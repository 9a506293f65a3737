"""RANDOM.ORG's JSON-RPC API (Release 4) served by a real `qrng serve`, driven by
RANDOM.ORG's own Python client ``rdoclient``, unchanged but for the URL it posts to.

rdoclient posts to a hard-coded ``https://api.random.org/json-rpc/4/invoke`` through
``requests.post``; the fixture swaps the module's ``requests`` for one whose ``post``
sends the same request to the server under test, nothing else.
"""

from __future__ import annotations

import base64
import copy
import types
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from rdoclient import rdoclient as rdo

from quantumrng.server.keys import KeyStore
from tests.server.process import Server, run_server

RANDOM_ORG = "https://api.random.org/json-rpc/4/invoke"


#: Limits of the keys made before the tests, by name; "plain" keys have none. Every key
#: is made before the first request: a key made in the key store while the server runs
#: is not seen once a daily quota was counted (reported; shared key store).
LIMITED: dict[str, dict[str, Any]] = {
    "daily1000": {"daily_bytes": 1000},
    "daily16": {"daily_bytes": 16},
    "rate": {"rate": 0.001, "burst": 1},
}
PLAIN_KEYS = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("randomorg")
    with run_server(tmp) as s:
        store = KeyStore(tmp / "data" / "keys.sqlite3")
        made = {
            n: store.create(
                n, {"drbg"}, lim.get("rate"), lim.get("daily_bytes"), burst=lim.get("burst")
            )[0]
            for n, lim in LIMITED.items()
        }
        plain = [store.create(f"plain-{i}", {"drbg"}, None, None)[0] for i in range(PLAIN_KEYS)]
        store.close()
        s.keys = made  # type: ignore[attr-defined]
        s.plain = plain  # type: ignore[attr-defined]
        yield s


def new_key(server: Server, limited: str | None = None) -> str:
    """A key made as ``qrng keys create`` makes one: ``limited`` names one of LIMITED."""
    if limited is not None:
        return server.keys[limited]  # type: ignore[attr-defined,no-any-return]
    return server.plain.pop()  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="module")
def redirect(server: Server) -> Iterator[None]:
    """rdoclient's one HTTP call goes to ``server`` instead of api.random.org."""
    url = server.base_url + "/json-rpc/4/invoke"

    def post(target: str, **kwargs: Any) -> requests.Response:
        assert target == RANDOM_ORG
        return requests.post(url, **kwargs)

    original = rdo.requests
    rdo.requests = types.SimpleNamespace(post=post)
    yield
    rdo.requests = original


@pytest.fixture
def client(server: Server, redirect: None) -> rdo.RandomOrgClient:
    return rdo.RandomOrgClient(
        new_key(server), serialized=False, blocking_timeout=5, http_timeout=10
    )


def rpc(server: Server, method: str, params: Any, rid: Any = 7) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": rid}
    answer = httpx.post(server.base_url + "/json-rpc/4/invoke", json=body, timeout=10)
    assert answer.status_code == 200
    return answer.json()  # type: ignore[no-any-return]


# -- Basic methods through rdoclient ---------------------------------------------------


def test_integers_are_in_range_and_unique_without_replacement(client: rdo.RandomOrgClient) -> None:
    values = client.generate_integers(50, -5, 60, replacement=False)
    assert len(values) == 50 and len(set(values)) == 50
    assert all(-5 <= v <= 60 for v in values)


@pytest.mark.parametrize(("base", "digits"), [(2, "01"), (8, "01234567"), (16, "0123456789abcdef")])
def test_non_decimal_integers_are_strings_in_that_base(
    client: rdo.RandomOrgClient, base: int, digits: str
) -> None:
    values = client.generate_integers(20, 0, 255, base=base)
    assert all(isinstance(v, str) and set(v) <= set(digits) for v in values)
    assert all(0 <= int(v, base) <= 255 for v in values)


def test_uniform_and_multiform_sequences(client: rdo.RandomOrgClient) -> None:
    uniform = client.generate_integer_sequences(3, 4, 1, 6)
    assert [len(s) for s in uniform] == [4, 4, 4]
    multi = client.generate_integer_sequences(2, [2, 5], [0, 10], [1, 20], [True, False], [10, 16])
    assert [len(s) for s in multi] == [2, 5]
    assert all(0 <= v <= 1 for v in multi[0])
    assert len(set(multi[1])) == 5 and all(10 <= int(v, 16) <= 20 for v in multi[1])


def test_decimal_fractions_have_the_places_asked(client: rdo.RandomOrgClient) -> None:
    values = client.generate_decimal_fractions(100, 3)
    assert all(0 <= v < 1 and round(v, 3) == v for v in values)


def test_gaussians_have_the_significant_digits_asked(client: rdo.RandomOrgClient) -> None:
    values = client.generate_gaussians(200, 10.0, 2.0, 4)
    assert all(float(f"{v:.4g}") == v for v in values)
    assert 9.0 < sum(values) / len(values) < 11.0


def test_strings_without_replacement_fill_the_domain(client: rdo.RandomOrgClient) -> None:
    strings = client.generate_strings(9, 2, "abc", replacement=False)
    assert sorted(strings) == sorted(a + b for a in "abc" for b in "abc")


def test_uuids_are_version_4(client: rdo.RandomOrgClient) -> None:
    ids = client.generate_UUIDs(5)
    assert all(u.version == 4 for u in ids) and len(set(ids)) == 5


def test_blobs_have_the_size_and_format_asked(client: rdo.RandomOrgClient) -> None:
    b64 = client.generate_blobs(3, 128)
    assert all(len(base64.b64decode(b)) == 16 for b in b64)
    hexes = client.generate_blobs(2, 64, format="hex")
    assert all(len(bytes.fromhex(h)) == 8 for h in hexes)


def test_pregenerated_randomization_repeats_for_a_date_or_id(client: rdo.RandomOrgClient) -> None:
    day = {"date": "2020-01-01"}
    first = client.generate_integers(20, 1, 1000, pregenerated_randomization=day)
    assert client.generate_integers(20, 1, 1000, pregenerated_randomization=day) == first
    by_id = {"id": "draw-42"}
    assert client.generate_UUIDs(3, by_id) == client.generate_UUIDs(3, by_id)
    assert client.generate_integers(20, 1, 1000, pregenerated_randomization={"id": "x"}) != first


def test_usage_counts_the_bits_of_a_quota(server: Server, redirect: None) -> None:
    key = new_key(server, "daily1000")
    c = rdo.RandomOrgClient(key, serialized=False, blocking_timeout=5, http_timeout=10)
    assert c.get_bits_left() == 8000
    answer = rpc(server, "generateIntegers", {"apiKey": key, "n": 10, "min": 0, "max": 255})
    result = answer["result"]
    assert result["bitsUsed"] == 80 and result["bitsLeft"] == 8000 - 80
    assert {"random", "bitsUsed", "bitsLeft", "requestsLeft", "advisoryDelay"} <= set(result)
    usage = rpc(server, "getUsage", {"apiKey": key})["result"]
    assert usage["status"] == "running" and usage["bitsLeft"] == 7920


# -- errors, as RANDOM.ORG answers them -------------------------------------------------


def test_n_out_of_range_is_202_with_its_message_and_data(server: Server) -> None:
    key = new_key(server)
    error = rpc(server, "generateIntegers", {"apiKey": key, "n": 10001, "min": 1, "max": 6})[
        "error"
    ]
    assert error == {
        "code": 202,
        "message": "Parameter 'n' is out of range; allowable values are [1,10000]",
        "data": ["n", 1, 10000],
    }


def test_rdoclient_raises_value_error_for_parameter_errors(client: rdo.RandomOrgClient) -> None:
    with pytest.raises(ValueError, match="Error 202"):
        client.generate_integers(5, 0, 2_000_000_000)
    with pytest.raises(ValueError, match="Error 301"):
        client.generate_integers(10, 1, 5, replacement=False)
    with pytest.raises(ValueError, match="Error 300"):
        client.generate_integers(1, 5, 1)


def test_unknown_key_raises_key_non_existent(server: Server, redirect: None) -> None:
    c = rdo.RandomOrgClient(str(uuid.uuid4()), serialized=False, http_timeout=10)
    with pytest.raises(rdo.RandomOrgKeyNonExistentError, match="Error 400"):
        c.generate_integers(1, 1, 6)


def test_spent_bits_raise_insufficient_bits(server: Server, redirect: None) -> None:
    c = rdo.RandomOrgClient(new_key(server, "daily16"), serialized=False, http_timeout=10)
    with pytest.raises(rdo.RandomOrgInsufficientBitsError, match="Error 403"):
        c.generate_blobs(1, 256)


def test_spent_requests_raise_insufficient_requests(server: Server) -> None:
    key = new_key(server, "rate")
    first = rpc(server, "generateUUIDs", {"apiKey": key, "n": 1})
    assert "result" in first
    assert rpc(server, "generateUUIDs", {"apiKey": key, "n": 1})["error"]["code"] == 402


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", -32700),
        (b'{"method": "generateIntegers", "params": {}, "id": 1}', -32600),
        (b'{"jsonrpc": "2.0", "method": "fooBar", "params": {}, "id": 1}', -32601),
    ],
)
def test_json_rpc_errors(server: Server, body: bytes, code: int) -> None:
    answer = httpx.post(
        server.base_url + "/json-rpc/4/invoke",
        content=body,
        headers={"content-type": "application/json"},
        timeout=10,
    ).json()
    assert answer["error"]["code"] == code and answer["error"]["data"] is None


def test_http_answers_as_random_org_since_release_2(server: Server) -> None:
    url = server.base_url + "/json-rpc/4/invoke"
    body = b'{"jsonrpc": "2.0", "method": "generateUUIDs", "params": {"n": 1}}'
    assert (
        httpx.post(url, content=body, headers={"content-type": "application/json"}).status_code
        == 204
    )
    assert httpx.post(url, content=body, headers={"content-type": "text/plain"}).status_code == 415
    assert httpx.get(url).status_code == 405


def test_a_wrong_parameter_name_is_invalid_params(server: Server) -> None:
    params = {"apiKey": new_key(server), "n": 1, "length": 4, "chars": "abc"}
    assert rpc(server, "generateStrings", params)["error"]["code"] == -32602


def test_rdoclient_raises_runtime_error_for_json_rpc_errors(client: rdo.RandomOrgClient) -> None:
    with pytest.raises(RuntimeError, match="Error -32602"):
        client.generate_gaussians(1, 0, 1, "four")


# -- signed methods ----------------------------------------------------------------------


def test_signed_integers_verify_and_fail_when_tampered(client: rdo.RandomOrgClient) -> None:
    answer = client.generate_signed_integers(5, 1, 6, user_data={"draw": "a"})
    random, signature = answer["random"], answer["signature"]
    assert answer["data"] == random["data"] and all(1 <= v <= 6 for v in answer["data"])
    assert random["method"] == "generateSignedIntegers" and random["userData"] == {"draw": "a"}
    for member in (
        "hashedApiKey",
        "n",
        "min",
        "max",
        "replacement",
        "base",
        "license",
        "completionTime",
        "serialNumber",
        "ticketData",
        "pregeneratedRandomization",
    ):
        assert member in random
    assert client.verify_signature(random, signature) is True
    for change in (
        {"data": [6, 6, 6, 6, 6]},
        {"serialNumber": random["serialNumber"] + 1},
        {"userData": {"draw": "b"}},
    ):
        assert client.verify_signature({**copy.deepcopy(random), **change}, signature) is False


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("generate_signed_integer_sequences", (2, 3, 0, 9)),
        ("generate_signed_decimal_fractions", (4, 5)),
        ("generate_signed_gaussians", (4, 0.0, 1.0, 6)),
        ("generate_signed_strings", (3, 8, "abcdef")),
        ("generate_signed_UUIDs", (2,)),
        ("generate_signed_blobs", (2, 64)),
    ],
)
def test_every_signed_method_verifies(
    client: rdo.RandomOrgClient, call: str, args: tuple[Any, ...]
) -> None:
    answer = getattr(client, call)(*args)
    assert client.verify_signature(answer["random"], answer["signature"]) is True


def test_get_result_returns_the_signed_answer_by_serial(client: rdo.RandomOrgClient) -> None:
    answer = client.generate_signed_UUIDs(2)
    stored = client.get_result(answer["random"]["serialNumber"])
    assert stored["random"] == answer["random"] and stored["signature"] == answer["signature"]


def test_get_result_of_another_key_is_refused(server: Server, client: rdo.RandomOrgClient) -> None:
    serial = client.generate_signed_UUIDs(1)["random"]["serialNumber"]
    other = rpc(server, "getResult", {"apiKey": new_key(server), "serialNumber": serial})
    assert other["error"]["code"] == -32602


def test_license_data_is_not_allowed(server: Server) -> None:
    params = {
        "apiKey": new_key(server),
        "n": 1,
        "licenseData": {"maxPayout": {"currency": "USD", "amount": 1}},
    }
    assert rpc(server, "generateSignedUUIDs", params)["error"]["code"] == 425


# -- tickets -----------------------------------------------------------------------------


def test_a_ticket_is_used_once_and_named_in_the_signed_answer(client: rdo.RandomOrgClient) -> None:
    (ticket,) = client.create_tickets(1, True)
    assert ticket["usedTime"] is None and ticket["previousTicketId"] is None
    answer = client.generate_signed_integers(3, 1, 6, ticket_id=ticket["ticketId"])
    assert answer["random"]["ticketData"]["ticketId"] == ticket["ticketId"]
    assert client.verify_signature(answer["random"], answer["signature"]) is True
    with pytest.raises(rdo.RandomOrgTicketAlreadyUsedError, match="Error 422"):
        client.generate_signed_integers(3, 1, 6, ticket_id=ticket["ticketId"])
    shown = client.get_ticket(ticket["ticketId"])
    assert shown["serialNumber"] == answer["random"]["serialNumber"]
    assert shown["result"] == {"random": answer["random"], "signature": answer["signature"]}


def test_a_hidden_result_shows_once_revealed(client: rdo.RandomOrgClient) -> None:
    (ticket,) = client.create_tickets(1, False)
    with pytest.raises(rdo.RandomOrgTicketNotYetUsedError, match="Error 426"):
        client.reveal_tickets(ticket["ticketId"])
    client.generate_signed_UUIDs(1, ticket_id=ticket["ticketId"])
    assert client.get_ticket(ticket["ticketId"])["result"] is None
    assert client.reveal_tickets(ticket["ticketId"])["ticketCount"] == 1
    assert client.get_ticket(ticket["ticketId"])["result"]["random"]["n"] == 1


def test_tickets_are_listed_and_belong_to_their_key(
    server: Server, client: rdo.RandomOrgClient
) -> None:
    made = client.create_tickets(3, True)
    listed = client.list_tickets("singleton")
    assert {t["ticketId"] for t in made} <= {t["ticketId"] for t in listed}
    other = rpc(
        server,
        "generateSignedUUIDs",
        {"apiKey": new_key(server), "n": 1, "ticketId": made[0]["ticketId"]},
    )
    assert other["error"]["code"] == 421
    with pytest.raises(rdo.RandomOrgTicketNonExistentError, match="Error 420"):
        client.get_ticket("0" * 32)


def test_create_tickets_limits_n(client: rdo.RandomOrgClient) -> None:
    with pytest.raises(ValueError, match="Error 202"):
        client.create_tickets(51, True)
