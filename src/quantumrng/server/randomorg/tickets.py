"""RANDOM.ORG's tickets (JSON-RPC Release 4, Signed API: ``createTickets``,
``revealTickets``, ``listTickets``, ``getTicket``, and ``ticketId`` on the signed
methods).

A ticket is made in advance and used by at most one signed answer, which names it
in ``random.ticketData``; with ``showResult`` false its result is hidden from
``getTicket`` until the owner calls ``revealTickets``. Tickets live in the pool's
records, shared by every worker and node: one record per ticket
(``randomorg:ticket:<id>``) and one index per key (``randomorg:tickets:<hash>``).
Using a ticket once is enforced across threads, processes and nodes by a pool lease
named after it (``randomorg:ticket-use:<id>``), held under a holder name of the
request's own (a holder may take its own lease again): only the request that takes
the lease may use the ticket, and it checks the record is still unused after taking it. The index is
updated under the lease ``randomorg:tickets-lock:<hash>``. Tickets are created as
singletons (no previous or next ticket).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from quantumrng.errors import Unavailable
from quantumrng.pool.base import Lease, Pool
from quantumrng.server.randomorg.errors import RpcError, out_of_range

__all__ = ["MAX_TICKETS", "Tickets"]

MAX_TICKETS = 50  # createTickets n (RANDOM.ORG's [1,50])
MAX_OWNED = 1_000  # tickets one key may hold in its index (more: 423)
TICKET_TYPES = ("singleton", "head", "tail")
_USE_SECONDS = 600.0  # a ticket's use lease outlives any signed request
_LOCK_SECONDS = 10.0
_LOCK_TRIES = 200  # x 10 ms: a key's index is locked for a few ms at a time
_TICKET = "randomorg:ticket:"
_INDEX = "randomorg:tickets:"


def _owner(hashed_key: str) -> str:
    return hashlib.sha256(hashed_key.encode()).hexdigest()[:32]


def _stamp(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(timestamp))


class Tickets:
    """Tickets of one deployment over its pool's records and leases (blocking calls)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def _read(self, ticket_id: str) -> dict[str, Any] | None:
        if not isinstance(ticket_id, str) or not ticket_id.isalnum() or len(ticket_id) > 64:
            return None
        raw = self._pool.read_record(_TICKET + ticket_id.lower())
        return None if raw is None else orjson.loads(raw)

    def _write(self, ticket: dict[str, Any]) -> None:
        self._pool.write_record(_TICKET + ticket["ticketId"], orjson.dumps(ticket))

    def _forget(self, ticket_id: str) -> None:
        self._pool.write_record(_TICKET + ticket_id, None)

    def _locked(self, owner: str, change: Callable[[list[str]], list[str]]) -> list[str]:
        """Apply ``change`` to ``owner``'s index under its lock; return the new index."""
        name = f"randomorg:tickets-lock:{owner}"
        lease: Lease | None = None
        holder = f"randomorg-{uuid.uuid4().hex}"  # one per call, as for a ticket's use
        for _ in range(_LOCK_TRIES):
            lease = self._pool.acquire_lease(name, holder, _LOCK_SECONDS)
            if lease is not None:
                break
            time.sleep(0.01)
        if lease is None:
            raise Unavailable("the ticket index is busy; try again")
        try:
            raw = self._pool.read_record(_INDEX + owner)
            index = change([] if raw is None else orjson.loads(raw))
            self._pool.write_record(_INDEX + owner, orjson.dumps(index))
            return index
        finally:
            self._pool.release_lease(lease)

    def create(self, hashed_key: str, n: object, show_result: object) -> list[dict[str, Any]]:
        """``createTickets``: ``n`` new singleton tickets of the key (423 past MAX_OWNED)."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise RpcError(-32602)
        if not 1 <= n <= MAX_TICKETS:
            raise out_of_range("n", 1, MAX_TICKETS)
        if not isinstance(show_result, bool):
            raise RpcError(-32602)
        now = _stamp(time.time())
        made: list[dict[str, Any]] = [
            {
                "ticketId": secrets.token_hex(16),
                "hashedApiKey": hashed_key,
                "showResult": show_result,
                "creationTime": now,
                "previousTicketId": None,
                "nextTicketId": None,
                "usedTime": None,
                "serialNumber": None,
                "revealed": False,
            }
            for _ in range(n)
        ]
        for ticket in made:
            self._write(ticket)

        def add(index: list[str]) -> list[str]:
            if len(index) + n > MAX_OWNED:
                raise RpcError(423)
            return [*index, *(str(t["ticketId"]) for t in made)]

        try:
            self._locked(_owner(hashed_key), add)
        except BaseException:
            for ticket in made:  # written first so an index never names a missing ticket
                self._forget(str(ticket["ticketId"]))
            raise
        return [_public(t) for t in made]

    def owned(self, ticket_id: object, hashed_key: str) -> dict[str, Any]:
        """The ticket ``ticket_id`` of the key: 420 if none, 421 if another key's."""
        ticket = self._read(ticket_id) if isinstance(ticket_id, str) else None
        if ticket is None:
            raise RpcError(420)
        if ticket["hashedApiKey"] != hashed_key:
            raise RpcError(421)
        return ticket

    def take(self, ticket_id: object, hashed_key: str) -> tuple[dict[str, Any], Lease]:
        """Reserve an unused ticket of the key for one signed request (420, 421, 422)."""
        ticket = self.owned(ticket_id, hashed_key)
        holder = f"randomorg-{uuid.uuid4().hex}"  # one per request: a holder may re-acquire
        lease = self._pool.acquire_lease(
            f"randomorg:ticket-use:{ticket['ticketId']}", holder, _USE_SECONDS
        )
        if lease is None:
            raise RpcError(422)
        ticket = self.owned(ticket_id, hashed_key)
        if ticket["usedTime"] is not None:
            raise RpcError(422)
        return ticket, lease

    def release(self, lease: Lease) -> None:
        """Give a ticket back after its request failed (nothing was signed)."""
        self._pool.release_lease(lease)

    def used(self, ticket: dict[str, Any], serial: int, result: dict[str, Any]) -> None:
        """Record that ``ticket`` was used by the signed answer ``serial``."""
        ticket = {**ticket, "usedTime": _stamp(time.time()), "serialNumber": serial}
        ticket["result"] = result
        self._write(ticket)

    def reveal(self, ticket_id: object, hashed_key: str) -> int:
        """``revealTickets``: show a used ticket's result; the number of tickets revealed."""
        ticket = self.owned(ticket_id, hashed_key)
        if ticket["usedTime"] is None:
            raise RpcError(426)
        self._write({**ticket, "revealed": True})
        return 1

    def listed(self, ticket_type: object, hashed_key: str) -> list[dict[str, Any]]:
        """``listTickets``: the key's tickets of ``ticket_type`` (all are singletons)."""
        if ticket_type not in TICKET_TYPES:
            raise RpcError(-32602)
        if ticket_type != "singleton":
            return []
        index = self._locked(_owner(hashed_key), lambda ids: ids)
        tickets = (self._read(i) for i in index)
        return [_public(t) for t in tickets if t is not None]

    def get(self, ticket_id: object) -> dict[str, Any]:
        """``getTicket``: the ticket, with its result when used and shown or revealed."""
        ticket = self._read(ticket_id) if isinstance(ticket_id, str) else None
        if ticket is None:
            raise RpcError(420)
        shown = ticket["showResult"] or ticket["revealed"]
        return {**_public(ticket), "result": ticket.get("result") if shown else None}


def _public(ticket: dict[str, Any]) -> dict[str, Any]:
    """A ticket as RANDOM.ORG shows it (without our bookkeeping)."""
    return {k: v for k, v in ticket.items() if k not in ("revealed", "result")}
