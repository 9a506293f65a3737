"""``qrng serve``: run the HTTP service.

Its setting flags override the group's (``qrng --source os serve`` and
``qrng serve --source os`` agree); unset flags leave config file and
``QRNG_*`` environment in force. A start that cannot succeed (address in
use, bad TLS file, unreadable key store) is one ``qrng: error:`` line,
printed before any banner.
"""

from __future__ import annotations

from typing import Any

import click

from quantumrng.cli.options import command_settings, setting_option, shared_settings
from quantumrng.config import Settings

__all__ = ["COMMANDS", "serve_command"]

_PATH = click.Path(dir_okay=False)


@click.command("serve")
@setting_option("--host", help="Address to bind (default 127.0.0.1).")
@setting_option("--port", type=click.IntRange(1, 65535), help="Port (default 5000).")
@setting_option("--workers", type=click.IntRange(min=1), help="Worker processes (default 1).")
@setting_option("--tls-cert", type=_PATH, help="PEM certificate (chain): serve HTTPS, TLS 1.2+.")
@setting_option("--tls-key", type=_PATH, help="PEM private key of --tls-cert.")
@setting_option(
    "--require-auth/--no-require-auth",
    default=None,
    help="Demand an API key (default: only when bound to a non-loopback address).",
)
@shared_settings
@setting_option(
    "--rate-limit", type=click.FloatRange(min=0), help="Requests/s per anonymous client."
)
@setting_option("--daily-bytes", type=click.IntRange(min=0), help="Bytes/day per anonymous client.")
@setting_option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug", "trace"]),
    help="Server log level.",
)
@click.option("--access-log/--no-access-log", default=False, help="Log every request line.")
@click.pass_context
def serve_command(ctx: click.Context, /, access_log: bool, **_: Any) -> None:
    """Serve random numbers over HTTP (v1, v2, /docs, /metrics)."""
    from quantumrng.server.run import serve

    serve(command_settings(ctx), access_log=access_log, announce=_announce)


def _announce(settings: Settings) -> None:
    """The startup lines, printed once the address and files are known to work.

    They say whether keys are needed and how many exist (counted without
    creating the key file), and warn when plain HTTP leaves the machine.
    """
    from quantumrng.server.access import Access, is_loopback

    scheme = "https" if settings.tls_cert is not None else "http"
    click.echo(
        f"qrng: serving {settings.source} entropy on {scheme}://{settings.host}:{settings.port} "
        f"({settings.workers} worker{'s' if settings.workers > 1 else ''}); docs at /docs",
        err=True,
    )
    loopback = is_loopback(settings.host)
    click.echo(
        f"qrng: auth: {_auth_state(settings, Access(settings).auth_required, loopback)}", err=True
    )
    if not loopback and settings.tls_cert is None:
        click.echo(
            f"qrng: warning: plain HTTP on {settings.host}: API keys and random numbers cross "
            "the network unencrypted; give --tls-cert and --tls-key or serve behind a TLS proxy",
            err=True,
        )


def _auth_state(settings: Settings, required: bool, loopback: bool) -> str:
    """``required (N active keys; ...)``, or ``off`` and who can reach the server."""
    if not required:
        return "off (loopback only)" if loopback else "off (anyone who reaches this address)"
    from quantumrng.errors import QuantumRNGError
    from quantumrng.server.keys import count_active

    try:
        n = count_active(settings)
    except QuantumRNGError:
        return "required (the key store cannot be read)"
    keys = f"{n} active key{'' if n == 1 else 's'}"
    return f"required ({keys}; create one with `qrng keys create --name NAME`)"


COMMANDS: tuple[click.Command, ...] = (serve_command,)
