"""``qrng beacon verify-chain``: check a range of Beacon 2.0 pulses, from a service or files.

Checks what :func:`quantumrng.beacon.verify_chain` checks: each signature and
outputValue under the certificate the pulse names, each link to the pulse
before (previous value, precommitment, one period apart) and every list value.
Pulses come from ``--url`` (``<url>/beacon/2.0/chain/<c>/pulse/<i>``) or from
JSON files (``--file``, each a pulse, ``{"pulse": ...}`` or a list of them).
Certificates come from ``--certificate`` (pinned), else from the service
(which then only proves the pulses agree with the certificate it serves now).
Exit 0 and ``ok`` when everything holds; exit 1 with one line per kind of failure.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
from cryptography import x509

from quantumrng.beacon import Failure, Pulse, certificate_id, verify_chain
from quantumrng.cli.options import command_settings

__all__ = ["COMMANDS", "beacon_group"]

TIMEOUT = 10.0


class _Failure(click.ClickException):
    """A one-line error with exit code 2 (bad input, service unreachable)."""

    exit_code = 2


def _pulses_in(document: Any) -> Iterator[Pulse]:
    items = document if isinstance(document, list) else [document]
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("not a pulse")
        yield Pulse.from_json(item)


def _read_files(paths: tuple[str, ...]) -> dict[tuple[int, int], Pulse]:
    found: dict[tuple[int, int], Pulse] = {}
    for name in paths:
        try:
            for pulse in _pulses_in(json.loads(Path(name).read_text())):
                found[pulse.chain_index, pulse.pulse_index] = pulse
        except (OSError, ValueError) as exc:
            raise _Failure(f"{name}: {exc}") from None
    return found


def _read_certificates(paths: tuple[str, ...]) -> dict[bytes, x509.Certificate]:
    table: dict[bytes, x509.Certificate] = {}
    for name in paths:
        try:
            for certificate in x509.load_pem_x509_certificates(Path(name).read_bytes()):
                table[certificate_id(certificate)] = certificate
        except (OSError, ValueError) as exc:
            raise _Failure(f"{name}: not a PEM certificate ({exc})") from None
    return table


class _Service:
    """Pulses and certificates of one beacon service."""

    def __init__(self, url: str) -> None:
        self.base = url.rstrip("/") + "/beacon/2.0"
        self.client = httpx.Client(timeout=TIMEOUT)

    def get(self, path: str) -> httpx.Response | None:
        try:
            response = self.client.get(self.base + path)
        except httpx.HTTPError as exc:
            raise _Failure(f"{self.base}{path}: {exc}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _Failure(f"{self.base}{path}: HTTP {response.status_code}")
        return response

    def pulse(self, path: str) -> Pulse | None:
        response = self.get(path)
        if response is None:
            return None
        try:
            return Pulse.from_json(response.json())
        except ValueError as exc:
            raise _Failure(f"{self.base}{path}: {exc}") from None

    def certificate(self, cert_id: bytes) -> x509.Certificate | None:
        response = self.get(f"/certificate/{cert_id.hex()}")
        if response is None:
            return None
        try:
            return x509.load_pem_x509_certificate(response.content)
        except ValueError:
            return None


def _report(failures: list[Failure]) -> list[str]:
    """One line per kind of failure, naming the pulses and the first reason."""
    by_kind: dict[str, list[Failure]] = defaultdict(list)
    for f in failures:
        by_kind[f.kind].append(f)
    lines = []
    for kind, found in by_kind.items():
        where = ", ".join(f"{f.chain_index}/{f.pulse_index}" for f in found[:10])
        more = f" and {len(found) - 10} more" if len(found) > 10 else ""
        lines.append(f"{kind}: pulse {where}{more}: {found[0].detail}")
    return lines


@click.group("beacon")
def beacon_group() -> None:
    """The public beacon (NIST Randomness Beacon 2.0 format)."""


@beacon_group.command("verify-chain")
@click.option("--from", "first", type=click.IntRange(min=1), required=True, help="First pulse.")
@click.option("--to", "last", type=click.IntRange(min=1), required=True, help="Last pulse.")
@click.option("--url", help="The service's base URL (default: this node's public URL).")
@click.option("--chain", type=click.IntRange(min=1), help="Chain index (default: the last).")
@click.option(
    "--certificate",
    "certificates",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Pinned certificate (PEM); repeat for several. Default: the service's.",
)
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Read pulses from this JSON file instead of a service; repeat for several.",
)
def verify_chain_command(
    first: int,
    last: int,
    url: str | None,
    chain: int | None,
    certificates: tuple[str, ...],
    files: tuple[str, ...],
) -> None:
    """Check pulses FROM..TO of a chain: signatures, links, precommitments, list values."""
    if first > last:
        raise _Failure("--from must not be after --to")
    pinned = _read_certificates(certificates)
    service = None if files and url is None else _Service(url or command_settings().base_url)
    given = _read_files(files)
    if chain is None:
        if given:
            chain = max(c for c, _ in given)
        else:
            assert service is not None
            newest = service.pulse("/chain/last/pulse/last")
            if newest is None:
                raise _Failure("the service has published no pulse yet")
            chain = newest.chain_index
    missing: list[Failure] = []
    if service is not None and not files:
        for index in range(first, last + 1):
            found = service.pulse(f"/chain/{chain}/pulse/{index}")
            if found is None:
                missing.append(Failure("missing", chain, index, "no such pulse"))
            else:
                given[chain, index] = found
    pulses = [p for (c, i), p in given.items() if c == chain and first <= i <= last]
    if files:
        missing += [
            Failure("missing", chain, i, "not in the files given")
            for i in range(first, last + 1)
            if (chain, i) not in given
        ]

    def lookup(c: int, i: int) -> Pulse | None:
        if (c, i) in given:
            return given[c, i]
        return None if service is None else service.pulse(f"/chain/{c}/pulse/{i}")

    def certificate(cert_id: bytes) -> x509.Certificate | None:
        if cert_id in pinned or service is None or certificates:
            return pinned.get(cert_id)
        fetched = service.certificate(cert_id)
        if fetched is not None:
            pinned[cert_id] = fetched
        return fetched

    failures = missing + verify_chain(pulses, certificate, lookup)
    if failures:
        for line in _report(failures):
            click.echo(line)
        raise SystemExit(1)
    click.echo(f"ok: chain {chain}, pulses {first} to {last}")


COMMANDS: list[click.Command] = [beacon_group]
