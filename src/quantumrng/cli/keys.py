"""``qrng keys create | list | revoke``: manage the API keys of the deployment.

Keys live where the server reads them (``open_key_store``): in Redis with
``--pool redis`` (every node of the deployment sees them at once), else in
``settings.keys_path``.

The plaintext key is printed once, by ``create``, alone on standard output
(so ``KEY=$(qrng keys create --name ci)`` works); everything else goes to
standard error. Settings come from ``command_settings``, as for every command.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click

from quantumrng.cli.options import POOL, REDIS_URL, command_settings, json_option
from quantumrng.errors import QuantumRNGError
from quantumrng.server.keys import SCOPES, KeyRecord, Keys, open_key_store, parse_scopes

__all__ = ["COMMANDS", "keys_group"]


class _Failure(click.ClickException):
    """A one-line error with exit code 2, like click's usage errors."""

    exit_code = 2


@contextmanager
def _store() -> Iterator[Keys]:
    """Open the key store; any QuantumRNG error inside becomes a one-line failure."""
    try:
        store = open_key_store(command_settings())
        try:
            yield store
        finally:
            store.close()
    except QuantumRNGError as exc:
        raise _Failure(exc.message) from None


def _scopes(ctx: click.Context, param: click.Parameter, value: str) -> frozenset[str]:
    try:
        return parse_scopes(value)
    except QuantumRNGError as exc:
        raise click.BadParameter(exc.message, ctx, param) from None


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _limit(value: float | int | None, unit: str) -> str:
    if value is None:
        return "unlimited"
    return f"{value}{unit}" if isinstance(value, int) else f"{value:g}{unit}"


def _burst(record: KeyRecord) -> str:
    """The bucket size in force: the key's, else the default ``max(1, 2 * rate)``."""
    if record.rate is None:
        return "-"
    return str(record.burst if record.burst is not None else max(1, int(2 * record.rate)))


@click.group("keys")
def keys_group() -> None:
    """Create, list and revoke API keys (only their hashes are stored)."""


@keys_group.command("create")
@POOL
@REDIS_URL
@click.option("--name", required=True, help="A unique label, e.g. the client's name.")
@click.option(
    "--scopes",
    default="drbg",
    show_default=True,
    callback=_scopes,
    help=f"Comma-separated, of {', '.join(SCOPES)} (raw: mode=raw; admin: everything).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, max=1e9),
    default=0.0,
    help="Requests per second; 0: unlimited.",
)
@click.option(
    "--burst", type=click.IntRange(min=0), default=0, help="Bucket size; 0: max(1, 2 * rate)."
)
@click.option(
    "--daily-bytes", type=click.IntRange(min=0), default=0, help="Bytes per UTC day; 0: unlimited."
)
def create_command(
    name: str, scopes: frozenset[str], rate: float, burst: int, daily_bytes: int, **_: object
) -> None:
    """Create a key and print it, once."""
    with _store() as store:
        key, record = store.create(name, set(scopes), rate, daily_bytes, burst=burst)
    click.echo(key)
    click.echo(
        f"created key {record.name!r} (id {record.id}, scopes {','.join(sorted(record.scopes))}, "
        f"rate {_limit(record.rate, '/s')}, burst {_burst(record)}, "
        f"daily {_limit(record.daily_bytes, ' bytes')})",
        err=True,
    )
    click.echo("Store it now: it will not be shown again.", err=True)


@keys_group.command("list")
@POOL
@REDIS_URL
@json_option(help="One JSON array instead of a table.")
def list_command(as_json: bool, **_: object) -> None:
    """List keys (never their secrets), revoked ones included."""
    with _store() as store:
        records = store.records()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    if not records:
        click.echo("no API keys", err=True)
        return
    click.echo(_table(records))


def _table(records: list[KeyRecord]) -> str:
    head = ("ID", "NAME", "SCOPES", "RATE/S", "BURST", "DAILY BYTES", "CREATED", "REVOKED")
    rows = [head] + [
        (
            r.id,
            r.name,
            ",".join(sorted(r.scopes)),
            _limit(r.rate, ""),
            _burst(r),
            _limit(r.daily_bytes, ""),
            _when(r.created_at),
            _when(r.revoked_at),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


@keys_group.command("revoke")
@POOL
@REDIS_URL
@click.argument("id_or_name")
def revoke_command(id_or_name: str, **_: object) -> None:
    """Revoke a key by id or name; it stops working at once (within 1 s on a server)."""
    with _store() as store:
        record = store.revoke(id_or_name)
    click.echo(f"revoked key {record.name!r} (id {record.id}) at {_when(record.revoked_at)}")


COMMANDS: tuple[click.Command, ...] = (keys_group,)
