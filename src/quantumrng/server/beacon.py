"""The public beacon in the NIST Randomness Beacon 2.0 format, over HTTP (``/beacon/2.0``).

The paths are NIST's: ``/pulse/last``, ``/chain/last/pulse/last`` (and
``/chain/last``, the same pulse), ``/chain/{c}/pulse/last``,
``/chain/{c}/pulse/{p}``, ``/pulse/time/{ms}`` (the pulse at that time or the
next one), ``/pulse/time/previous/{ms}``, ``/pulse/time/next/{ms}``, each
answering ``{"pulse": {...}}`` exactly as stored, and
``/certificate/{certificateId}`` (PEM, ``text/plain``). A pulse that does not
exist yet is a 404 at once. A pulse named by chain and index never changes, so
it is cacheable for a year (``immutable``); an answer that is the newest pulse
is ``no-cache``. Public like NIST's: no API key, whatever ``require_auth`` says.
"""

from __future__ import annotations

import hashlib
from typing import Any

from anyio import to_thread
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from starlette.responses import Response

from quantumrng.beacon import certificate_record
from quantumrng.errors import NotFound
from quantumrng.server.params import Param, parse_path, parse_query
from quantumrng.server.routing import Api, Endpoint
from quantumrng.server.service import Context
from quantumrng.transparency.store import Entry

__all__ = ["IMMUTABLE", "LATEST", "api"]

IMMUTABLE = "public, max-age=31536000, immutable"
LATEST = "no-cache"
TAG = "beacon"

_PULSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["pulse"],
    "properties": {"pulse": {"type": "object"}},
}


def _answer(entry: Entry | None, latest: Entry | None, what: str, *, named: bool) -> Response:
    if entry is None or entry.document is None:
        raise NotFound(f"no pulse {what}")
    is_latest = latest is not None and latest.leaf_index == entry.leaf_index
    cache = IMMUTABLE if named or not is_latest else LATEST
    return Response(
        entry.document,
        media_type="application/json",
        headers={"cache-control": cache, "access-control-allow-origin": "*"},
    )


def _certificate_pem(record: bytes | None, wanted: bytes) -> str | None:
    """The PEM in ``record`` if its DER hashes to ``wanted`` (the store is not trusted)."""
    if record is None:
        return None
    try:
        certificate = x509.load_pem_x509_certificate(record)
    except ValueError:
        return None
    der = certificate.public_bytes(serialization.Encoding.DER)
    if hashlib.sha512(der).digest() != wanted:
        return None
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def api(ctx: Context) -> Api:
    """The family's routes, below ``/beacon/2.0``."""
    node = ctx.node
    chain_param = Param("chain", "int", "The chain index.", minimum=1, location="path")
    pulse_param = Param("pulse", "int", "The pulse index in its chain.", minimum=1, location="path")
    time_param = Param(
        "time", "int", "Milliseconds since 1970-01-01T00:00:00Z.", minimum=0, location="path"
    )

    def newest(chain: int | None = None) -> tuple[Entry | None, Entry | None]:
        store = node.log_store
        latest = store.last_pulse()
        return (latest if chain is None else store.last_pulse(chain)), latest

    def at_index(chain: int, index: int) -> tuple[Entry | None, Entry | None]:
        return node.log_store.pulse(chain, index), None

    def by_time(time_ms: int, relation: str) -> tuple[Entry | None, Entry | None]:
        store = node.log_store
        found = store.pulse_by_time(time_ms, relation)
        if found is None and relation == "at":
            found = store.pulse_by_time(time_ms, "after")
        return found, store.last_pulse()

    async def last(request: Request) -> Response:
        parse_query(request.query_params, ())
        entry, latest = await to_thread.run_sync(newest)
        return _answer(entry, latest, "yet", named=False)

    async def chain_last(request: Request) -> Response:
        parse_query(request.query_params, ())
        chain: int = parse_path(request.path_params, (chain_param,))["chain"]
        entry, latest = await to_thread.run_sync(newest, chain)
        return _answer(entry, latest, f"in chain {chain}", named=False)

    async def pulse(request: Request) -> Response:
        parse_query(request.query_params, ())
        where = parse_path(request.path_params, (chain_param, pulse_param))
        entry, _ = await to_thread.run_sync(at_index, where["chain"], where["pulse"])
        return _answer(entry, None, f"{where['pulse']} in chain {where['chain']}", named=True)

    def time_route(relation: str, words: str) -> Any:
        async def handler(request: Request) -> Response:
            parse_query(request.query_params, ())
            time_ms: int = parse_path(request.path_params, (time_param,))["time"]
            entry, latest = await to_thread.run_sync(by_time, time_ms, relation)
            return _answer(entry, latest, f"{words} {time_ms}", named=False)

        return handler

    async def certificate(request: Request) -> Response:
        parse_query(request.query_params, ())
        text = str(request.path_params["certificate_id"])
        try:
            wanted = bytes.fromhex(text)
        except ValueError:
            wanted = b""
        if len(wanted) != 64:
            raise NotFound("a certificateId is 128 hex digits")
        record = await to_thread.run_sync(node.pool.read_record, certificate_record(wanted))
        pem = _certificate_pem(record, wanted)
        if pem is None:
            raise NotFound(f"no certificate {text.lower()}")
        return Response(
            pem,
            media_type="text/plain",
            headers={"cache-control": IMMUTABLE, "access-control-allow-origin": "*"},
        )

    pulse_content = {"application/json": _PULSE_SCHEMA}

    def endpoint(
        path: str, handler: Any, operation: str, summary: str, params: tuple[Param, ...] = ()
    ) -> Endpoint:
        return Endpoint(
            path,
            handler,
            operation,
            summary,
            TAG,
            params=params,
            content=pulse_content,
            errors=(404, 422),
        )

    endpoints = (
        endpoint("/pulse/last", last, "beacon_last", "The newest pulse."),
        endpoint(
            "/chain/last/pulse/last", last, "beacon_chain_last_pulse_last", "The newest pulse."
        ),
        endpoint("/chain/last", last, "beacon_chain_last", "The newest pulse (of the last chain)."),
        endpoint(
            "/chain/{chain}/pulse/last",
            chain_last,
            "beacon_chain_pulse_last",
            "The newest pulse of a chain.",
            (chain_param,),
        ),
        endpoint(
            "/chain/{chain}/pulse/{pulse}",
            pulse,
            "beacon_pulse",
            "A pulse by chain and pulse index (never changes: cacheable).",
            (chain_param, pulse_param),
        ),
        endpoint(
            "/pulse/time/previous/{time}",
            time_route("before", "before"),
            "beacon_pulse_previous",
            "The newest pulse before a time.",
            (time_param,),
        ),
        endpoint(
            "/pulse/time/next/{time}",
            time_route("after", "after"),
            "beacon_pulse_next",
            "The oldest pulse after a time.",
            (time_param,),
        ),
        endpoint(
            "/pulse/time/{time}",
            time_route("at", "at or after"),
            "beacon_pulse_time",
            "The pulse at a time, or the next one.",
            (time_param,),
        ),
        Endpoint(
            "/certificate/{certificate_id}",
            certificate,
            "beacon_certificate",
            "The X.509 certificate (PEM) whose SHA-512 is the certificateId.",
            TAG,
            params=(
                Param(
                    "certificate_id",
                    "str",
                    "SHA-512 of the certificate's DER, hex.",
                    max_length=128,
                    location="path",
                ),
            ),
            content={"text/plain": {"type": "string"}},
            errors=(404,),
        ),
    )
    return Api("/beacon/2.0", endpoints)
