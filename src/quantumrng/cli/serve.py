"""``qrng serve``: run the HTTP service.

Flags override the group's settings (``qrng --source os serve`` and
``qrng serve --source os`` agree); unset flags leave config file and
``QRNG_*`` environment in force. A start that cannot succeed (address in
use, bad TLS file, unreadable key store) is one ``qrng: error:`` line,
printed before any banner.
"""

from __future__ import annotations

from typing import Any

import click

from quantumrng.config import POOL_BACKENDS, Settings, load_settings
from quantumrng.provenance import SOURCE_KINDS

__all__ = ["serve_command"]

_PATH = click.Path(dir_okay=False)


@click.command("serve")
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default 5000).")
@click.option("--workers", type=click.IntRange(min=1), help="Worker processes (default 1).")
@click.option("--tls-cert", type=_PATH, help="PEM certificate (chain): serve HTTPS, TLS 1.2+.")
@click.option("--tls-key", type=_PATH, help="PEM private key of --tls-cert.")
@click.option(
    "--require-auth/--no-require-auth",
    default=None,
    help="Demand an API key (default: only when bound to a non-loopback address).",
)
@click.option("--source", type=click.Choice(SOURCE_KINDS), help="Entropy source.")
@click.option("--pool", type=click.Choice(POOL_BACKENDS), help="Pool backend.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the pool and keys live.")
@click.option("--redis-url", help="Redis URL for --pool redis.")
@click.option("--rate-limit", type=click.FloatRange(min=0), help="Requests/s per anonymous client.")
@click.option("--daily-bytes", type=click.IntRange(min=0), help="Bytes/day per anonymous client.")
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug", "trace"]),
    help="Server log level.",
)
@click.option("--access-log/--no-access-log", default=False, help="Log every request line.")
@click.pass_context
def serve_command(ctx: click.Context, /, access_log: bool, **flags: Any) -> None:
    """Serve random numbers over HTTP (v1, v2, /docs, /metrics)."""
    from quantumrng.server.run import serve

    root = ctx.find_root().obj
    settings = (
        root.replace(**flags) if isinstance(root, Settings) else load_settings(overrides=flags)
    )
    serve(settings, access_log=access_log, announce=_announce)


def _announce(settings: Settings) -> None:
    """The one startup line, printed once the address and files are known to work."""
    scheme = "https" if settings.tls_cert is not None else "http"
    click.echo(
        f"qrng: serving {settings.source} entropy on {scheme}://{settings.host}:{settings.port} "
        f"({settings.workers} worker{'s' if settings.workers > 1 else ''}); docs at /docs",
        err=True,
    )
