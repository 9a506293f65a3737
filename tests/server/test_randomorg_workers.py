"""RANDOM.ORG's tickets and stored results across the workers of one `qrng serve`:
a ticket is used by exactly one of many concurrent signed requests, and every
worker answers ``getResult`` and ``getTicket`` the same."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from quantumrng.server.keys import KeyStore
from tests.server.process import run_server

pytestmark = pytest.mark.slow

ATTEMPTS = 12  # concurrent requests racing for one ticket


def rpc(base: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    return httpx.post(base + "/json-rpc/4/invoke", json=body, timeout=20).json()  # type: ignore[no-any-return]


def test_a_ticket_is_used_once_across_workers(tmp_path: Path) -> None:
    with run_server(tmp_path, "--workers", "2") as server:
        key, _ = KeyStore(tmp_path / "data" / "keys.sqlite3").create("w", {"drbg"}, None, None)
        base = server.base_url
        tickets = rpc(base, "createTickets", {"apiKey": key, "n": 1, "showResult": True})
        ticket_id = tickets["result"][0]["ticketId"]
        params = {"apiKey": key, "n": 2, "ticketId": ticket_id}
        with ThreadPoolExecutor(ATTEMPTS) as pool:
            answers = list(
                pool.map(lambda _: rpc(base, "generateSignedUUIDs", params), range(ATTEMPTS))
            )
        used = [a["result"] for a in answers if "result" in a]
        assert len(used) == 1
        assert {a["error"]["code"] for a in answers if "error" in a} == {422}
        serial = used[0]["random"]["serialNumber"]
        for _ in range(6):  # connections land on both workers
            stored = rpc(base, "getResult", {"apiKey": key, "serialNumber": serial})["result"]
            assert stored["random"] == used[0]["random"]
            assert stored["signature"] == used[0]["signature"]
            shown = rpc(base, "getTicket", {"ticketId": ticket_id})["result"]
            assert shown["serialNumber"] == serial
