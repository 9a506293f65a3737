"""The options several ``qrng`` commands share, and the one way a command gets its settings.

A :class:`SettingOption` overrides the setting of its name when given and
leaves it alone when not, so the same flag can sit on the group and on a
command (``qrng --source os serve`` and ``qrng serve --source os`` agree,
and the command's flag wins over the group's).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from quantumrng.config import POOL_BACKENDS, Settings, load_settings
from quantumrng.provenance import SOURCE_KINDS

if TYPE_CHECKING:
    from quantumrng.node import Node
    from quantumrng.signed import PublicKey

__all__ = [
    "CA_FILE",
    "COUNT",
    "KEYS",
    "PUBLIC_KEY",
    "SHARED_SETTINGS",
    "SettingOption",
    "command_node",
    "command_settings",
    "json_option",
    "pinned_keys",
    "read_last_serial",
    "setting_option",
    "shared_settings",
    "service_url_option",
    "source_option",
]

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]


class SettingOption(click.Option):
    """An option whose value, when given, overrides the setting of the same name."""


def setting_option(*decls: str, **attrs: Any) -> Decorator[Any]:
    """Declare a :class:`SettingOption` (``click.option`` with that class)."""
    return click.option(*decls, cls=SettingOption, **attrs)


def source_option(help: str = "Entropy source.") -> Decorator[Any]:
    """``--source``: the entropy source kind, one of ``SOURCE_KINDS``."""
    return setting_option("--source", type=click.Choice(SOURCE_KINDS), help=help)


POOL = setting_option("--pool", type=click.Choice(POOL_BACKENDS), help="Pool backend.")
DATA_DIR = setting_option(
    "--data-dir", type=click.Path(file_okay=False), help="Where the pool and keys live."
)
REDIS_URL = setting_option("--redis-url", help="Redis URL for --pool redis.")

ALLOW_UNCREDITED_RAW = setting_option(
    "--allow-uncredited-raw",
    is_flag=True,
    default=None,
    help="Serve mode=raw from a source that earns no credit (simulator, os): demos and tests.",
)

SHARED_SETTINGS: tuple[Decorator[Any], ...] = (
    DATA_DIR,
    source_option(),
    POOL,
    REDIS_URL,
    ALLOW_UNCREDITED_RAW,
)
"""The setting flags accepted both by the ``qrng`` group and by ``qrng serve``."""

COUNT = click.option("-n", "count", type=click.IntRange(min=1), default=1, show_default=True)


def json_option(help: str | None = "One JSON array.") -> Decorator[Any]:
    """``--json``: print one JSON document instead of lines or a table."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def shared_settings(f: F) -> F:
    """Apply every option of ``SHARED_SETTINGS`` to a command."""
    for option in reversed(SHARED_SETTINGS):
        f = option(f)
    return f


def command_settings(ctx: click.Context | None = None) -> Settings:
    """The settings a command runs with: the enclosing command's, under its own setting flags.

    The outermost command (no settings above it) loads them: defaults < config
    file < ``QRNG_*`` environment < its flags.
    """
    ctx = ctx if ctx is not None else click.get_current_context()
    flags = {
        param.name: ctx.params[param.name]
        for param in ctx.command.params
        if isinstance(param, SettingOption)
        and param.name is not None
        and ctx.params.get(param.name) is not None
    }
    base = ctx.find_object(Settings)
    if base is None:
        return load_settings(overrides=flags, config_file=ctx.params.get("config_file"))
    return base.replace(**flags) if flags else base


def command_node(ctx: click.Context) -> Node:
    """A node built from the command's settings, closed when the command ends."""
    from quantumrng.node import Node

    node = Node(command_settings(ctx))
    ctx.call_on_close(node.close)
    return node


# -- a remote service and the keys pinned for it --------------------------------------

PUBLIC_KEY = click.option(
    "--public-key",
    "pems",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A PEM public key of the service (repeatable); valid at any time.",
)
KEYS = click.option(
    "--keys",
    "keys_file",
    type=click.Path(dir_okay=False),
    help="A saved GET /api/v2/keys/public: keys with the periods they signed in.",
)
CA_FILE = click.option(
    "--ca", "ca_file", type=click.Path(dir_okay=False), help="CA bundle for https."
)


def service_url_option(
    help: str = "The service's base URL.", *, required: bool = True
) -> Decorator[Any]:
    """``--url``: the base URL of a QuantumRNG service (required unless ``required=False``)."""
    return click.option("--url", required=required, help=help)


def pinned_keys(pems: tuple[str, ...], keys_file: str | None) -> list[PublicKey] | None:
    """The Ed25519 keys given by ``--public-key`` and ``--keys``, or None when none were.

    A file that cannot be read or holds no key is a usage error (exit status 2).
    """
    from quantumrng.client import load_public_keys

    if not pems and keys_file is None:
        return None
    found: list[PublicKey] = []
    for path in (*pems, *([keys_file] if keys_file else [])):
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise click.UsageError(f"cannot read {path}: {exc.strerror}") from None
        try:
            found += load_public_keys(text)
        except (ValueError, TypeError):
            raise click.UsageError(
                f"{path} holds no Ed25519 public key (PEM or key list)"
            ) from None
    return found


def read_last_serial(path: str | Path | None) -> int | None:
    """The last serial a ``--state`` file keeps (``qrng feed``, ``qrng mqtt subscribe``),
    or None when there is no file yet; one that cannot be read or holds no serial is a
    usage error (exit status 2)."""
    from quantumrng.feed import parse_state

    if path is None:
        return None
    try:
        return parse_state(Path(path).read_text())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise click.UsageError(f"cannot read --state {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise click.UsageError(
            f"--state {path} holds no serial ({exc}); remove it to start over"
        ) from None
