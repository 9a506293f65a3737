"""``qrng bytes | bits | int | float | gaussian | uuid | string``: random values from the node."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from quantumrng.cli.options import COUNT, command_node, command_settings, json_option

__all__ = ["COMMANDS"]

STREAM_CHUNK = 3 << 20  # bytes per chunk of `qrng bytes`; a multiple of 3 for base64
ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "raw": bytes,
    "hex": lambda chunk: chunk.hex().encode("ascii"),
    "base64": base64.b64encode,
}


def _within(ctx: click.Context, name: str, value: int, setting: str, factor: int = 1) -> None:
    """Refuse a size above a configured maximum, before any work is done."""
    limit = getattr(command_settings(ctx), setting) * factor
    if value > limit:
        raise click.BadParameter(f"at most {limit} (setting {setting})", param_hint=name)


def _lines(values: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(values))
    else:
        for value in values:
            click.echo(value)


def _draw(ctx: click.Context) -> Callable[[int], bytes]:
    read: Callable[[int], bytes] = command_node(ctx).engine.random_bytes
    return read


@click.command("bytes", context_settings={"ignore_unknown_options": True})
@click.argument("n", type=click.IntRange(min=0))
@click.option("--hex", "fmt", flag_value="hex", default=True, help="Hexadecimal (default).")
@click.option("--base64", "fmt", flag_value="base64", help="Base64.")
@click.option("--raw", "fmt", flag_value="raw", help="Binary to standard output.")
@click.option("--mode", type=click.Choice(["drbg", "raw"]), default="drbg", show_default=True)
@click.pass_context
def bytes_command(ctx: click.Context, n: int, fmt: str, mode: str) -> None:
    """Print N random bytes, streamed in constant memory."""
    node = command_node(ctx)
    if mode == "raw":
        chunks: Iterable[bytes] = [node.raw_bytes(n)[0]]
    else:
        chunks = node.engine.stream(n, STREAM_CHUNK)
    encode = ENCODERS[fmt]
    out = sys.stdout.buffer
    for chunk in chunks:
        out.write(encode(chunk))
    if fmt != "raw":
        out.write(b"\n")
    out.flush()


@click.command("bits", context_settings={"ignore_unknown_options": True})
@click.argument("n", type=click.IntRange(min=0))
@click.pass_context
def bits_command(ctx: click.Context, n: int) -> None:
    """Print a string of exactly N random bits (for more, `qrng bytes --raw`)."""
    from quantumrng import formats

    _within(ctx, "N", n, "max_json_bytes", 8)
    click.echo(formats.bits_string(_draw(ctx), n))


@click.command("int", context_settings={"ignore_unknown_options": True})
@click.argument("low", type=int)
@click.argument("high", type=int)
@COUNT
@json_option()
@click.pass_context
def int_command(ctx: click.Context, low: int, high: int, count: int, as_json: bool) -> None:
    """Print random integers in [LOW, HIGH], both included, any size."""
    from quantumrng import formats

    if low > high:
        raise click.BadParameter("LOW must not exceed HIGH")
    _within(ctx, "-n", count, "max_items")
    _lines(formats.integers(_draw(ctx), count, low, high), as_json)


@click.command("float")
@COUNT
@json_option()
@click.pass_context
def float_command(ctx: click.Context, count: int, as_json: bool) -> None:
    """Print random 53-bit floats in [0, 1)."""
    from quantumrng import formats

    _within(ctx, "-n", count, "max_items")
    _lines([repr(x) for x in formats.floats(_draw(ctx), count)], as_json)


@click.command("gaussian")
@COUNT
@click.option("--mean", type=float, default=0.0, show_default=True)
@click.option("--stddev", type=click.FloatRange(min=0.0), default=1.0, show_default=True)
@json_option()
@click.pass_context
def gaussian_command(
    ctx: click.Context, count: int, mean: float, stddev: float, as_json: bool
) -> None:
    """Print normally distributed random floats."""
    from quantumrng import formats

    _within(ctx, "-n", count, "max_items")
    _lines([repr(x) for x in formats.gaussians(_draw(ctx), count, mean, stddev)], as_json)


@click.command("uuid")
@COUNT
@click.pass_context
def uuid_command(ctx: click.Context, count: int) -> None:
    """Print random version-4 UUIDs."""
    from quantumrng import formats

    _within(ctx, "-n", count, "max_items")
    _lines(formats.uuid4s(_draw(ctx), count), False)


@click.command("string")
@COUNT
@click.option("--length", type=click.IntRange(min=0), default=16, show_default=True)
@click.option(
    "--alphabet", default="alnum", show_default=True, help="A named alphabet or the characters."
)
@click.pass_context
def string_command(ctx: click.Context, count: int, length: int, alphabet: str) -> None:
    """Print random strings over an alphabet (alnum, hex, base64url, ... or your own)."""
    from quantumrng import formats

    _within(ctx, "-n", count, "max_items")
    _within(ctx, "--length", length, "max_json_bytes")
    chars = formats.resolve_alphabet(alphabet)
    _lines(formats.strings(_draw(ctx), count, length, chars), False)


COMMANDS: tuple[click.Command, ...] = (
    bytes_command,
    bits_command,
    int_command,
    float_command,
    gaussian_command,
    uuid_command,
    string_command,
)
