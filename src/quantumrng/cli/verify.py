"""``qrng verify``, ``qrng log verify`` and ``qrng signing rotate``: signed answers offline.

- ``qrng verify FILE`` checks a signed answer (or its ``signed`` object; ``-``
  reads standard input) with nothing but public keys: ``--public-key PEM``
  (repeatable) or ``--keys JSON`` (a saved ``GET /api/v2/keys/public``).
- ``qrng log verify --url URL`` fetches the log's signed tree head, checks its
  signature, each ``--result``'s signature and RFC 9162 inclusion, and the
  consistency of the log with the head saved in ``--state`` (then saves the
  new head there). Without pinned keys it uses the service's own list.
- ``qrng signing rotate`` makes a new signing key; running servers switch to
  it within a second, and the old key stays listed with its period.

Success prints one ``valid`` line (exit 0); a failed check prints one line
saying what failed (exit 1); bad arguments exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from quantumrng.cli.options import (
    CA_FILE,
    DATA_DIR,
    KEYS,
    PUBLIC_KEY,
    command_settings,
    pinned_keys,
    service_url_option,
)
from quantumrng.client import Client, signed_of, verify
from quantumrng.errors import QuantumRNGError
from quantumrng.keyfiles import replace_file
from quantumrng.signing import REFRESH_SECONDS, ROTATION_GRACE_SECONDS, rotate

__all__ = ["COMMANDS"]


class Invalid(click.ClickException):
    """A check failed: one line, exit status 1."""

    exit_code = 1


class _Usage(click.ClickException):
    exit_code = 2


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _Usage(f"cannot read {path}: {exc.strerror}") from None


def _document(path: str) -> Any:
    try:
        return json.loads(_read(path))
    except (ValueError, RecursionError):
        raise Invalid(f"invalid: {'standard input' if path == '-' else path} is not JSON") from None


@click.command("verify")
@click.argument("file")
@PUBLIC_KEY
@KEYS
def verify_command(file: str, pems: tuple[str, ...], keys_file: str | None) -> None:
    """Check a signed answer (or its signed object) offline; FILE may be - (stdin)."""
    keys = pinned_keys(pems, keys_file)
    if keys is None:
        raise _Usage("give the service's public key: --public-key PEM or --keys JSON")
    outcome = verify(_document(file), keys)
    if not outcome.valid:
        serial = "" if outcome.serial is None else f"serial {outcome.serial}: "
        raise Invalid(f"invalid: {serial}{outcome.reason}")
    click.echo(f"valid: serial {outcome.serial}, signed by key {outcome.key_id}")


def _save_head(path: Path, head: dict[str, Any]) -> None:
    try:
        replace_file(path, (json.dumps(head, indent=2) + "\n").encode())
    except OSError as exc:
        raise _Usage(f"cannot write {path}: {exc.strerror}") from None


@click.group("log")
def log_group() -> None:
    """Audit the service's transparency log."""


@log_group.command("verify")
@service_url_option()
@click.option(
    "--result",
    "results",
    multiple=True,
    help="A signed answer (or signed object) that must be in the log (repeatable).",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False),
    help="The head seen last time: the log must only have grown since; updated on success.",
)
@PUBLIC_KEY
@KEYS
@CA_FILE
def log_verify(
    url: str,
    results: tuple[str, ...],
    state: str | None,
    pems: tuple[str, ...],
    keys_file: str | None,
    ca_file: str | None,
) -> None:
    """Check the log's signed head, the results' inclusion and consistency with --state."""
    keys = pinned_keys(pems, keys_file)
    signed = [signed_of(_document(path)) for path in results]
    state_path = Path(state) if state else None
    previous = None
    if state_path is not None and state_path.exists():
        previous = _document(str(state_path))
        if not isinstance(previous, dict):
            raise Invalid(f"invalid: {state_path} does not hold a log head")
    with Client(url, verify=ca_file if ca_file else True) as client:
        try:
            if keys is None:
                click.echo("note: keys fetched from the service (pin them with --keys)", err=True)
                keys = client.public_keys()
            outcome = client.audit(signed, previous=previous, public_keys=keys)
        except QuantumRNGError as exc:
            raise Invalid(f"invalid: {exc.message}") from None
    if not outcome.valid or outcome.head is None:
        raise Invalid(f"invalid: {outcome.reason}")
    head = outcome.head
    if state_path is not None:
        _save_head(state_path, head)
    since = "" if previous is None else f", consistent with tree size {previous['tree_size']}"
    click.echo(
        f"valid: tree size {head['tree_size']}, root {head['root_hash']}, "
        f"{len(signed)} result(s) included{since}"
    )


@click.group("signing")
def signing_group() -> None:
    """The service's Ed25519 signing keys."""


@signing_group.command("rotate")
@DATA_DIR
def signing_rotate(**_: Any) -> None:
    """Make a new signing key (printed: its key id); running servers switch to it."""
    entry = rotate(command_settings())
    click.echo(entry.key_id)
    click.echo(
        f"running servers sign with it within {REFRESH_SECONDS:g} s, no restart needed; the "
        f"old key stays valid {ROTATION_GRACE_SECONDS:g} s more and stays listed at "
        "/api/v2/keys/public with its period",
        err=True,
    )


COMMANDS: list[click.Command] = [verify_command, log_group, signing_group]
