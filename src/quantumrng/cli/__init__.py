"""The ``qrng`` command line: the same engine as the server, no HTTP needed.

Bad arguments print one line and exit with status 2; a failure to produce
randomness (empty pool, failing source, failed health test) prints one line
and exits with status 1. Nothing weaker is ever printed instead.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import click

from quantumrng.config import POOL_BACKENDS, Settings, load_settings
from quantumrng.errors import ConfigError, InvalidRequest, QuantumRNGError
from quantumrng.provenance import SOURCE_KINDS

__all__ = ["cli", "main"]

STREAM_CHUNK = 3 << 20  # bytes per chunk of `qrng bytes`; a multiple of 3 for base64
MAX_HARVEST_BYTES = 1 << 36  # 64 GiB: `qrng harvest --until` beyond this is a typo
ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "raw": bytes,
    "hex": lambda chunk: chunk.hex().encode("ascii"),
    "base64": base64.b64encode,
}


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    assert isinstance(obj, Settings)
    return obj


def _node(ctx: click.Context) -> Any:
    from quantumrng.node import Node

    node = Node(_settings(ctx))
    ctx.call_on_close(node.close)
    return node


def _within(ctx: click.Context, name: str, value: int, setting: str, factor: int = 1) -> None:
    """Refuse a size above a configured maximum, before any work is done."""
    limit = getattr(_settings(ctx), setting) * factor
    if value > limit:
        raise click.BadParameter(f"at most {limit} (setting {setting})", param_hint=name)


def _lines(values: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(values))
    else:
        for value in values:
            click.echo(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where the pool and keys live.")
@click.option("--source", type=click.Choice(SOURCE_KINDS), help="Entropy source.")
@click.option("--pool", type=click.Choice(POOL_BACKENDS), help="Pool backend.")
@click.option("--redis-url", help="Redis URL for --pool redis.")
@click.option("--ibm-secrets", type=click.Path(dir_okay=False), help="YAML file with ibm_api_key.")
@click.option("--ibm-backend", help="IBM backend name (default: least busy).")
@click.version_option(package_name="quantumrng", prog_name="qrng")
@click.pass_context
def cli(ctx: click.Context, /, config_file: str | None, **flags: Any) -> None:
    """QuantumRNG: quantum random numbers, health-tested, pooled and served.

    Settings come from defaults < config file < QRNG_* environment < flags.
    """
    ctx.obj = load_settings(overrides=flags, config_file=config_file)


@cli.command("bytes", context_settings={"ignore_unknown_options": True})
@click.argument("n", type=click.IntRange(min=0))
@click.option("--hex", "fmt", flag_value="hex", default=True, help="Hexadecimal (default).")
@click.option("--base64", "fmt", flag_value="base64", help="Base64.")
@click.option("--raw", "fmt", flag_value="raw", help="Binary to standard output.")
@click.option("--mode", type=click.Choice(["drbg", "raw"]), default="drbg", show_default=True)
@click.pass_context
def bytes_command(ctx: click.Context, n: int, fmt: str, mode: str) -> None:
    """Print N random bytes, streamed in constant memory."""
    engine = _node(ctx).engine
    if mode == "raw":
        chunks: Iterable[bytes] = [engine.raw_bytes(n)[0]]
    else:
        chunks = engine.stream(n, STREAM_CHUNK)
    encode = ENCODERS[fmt]
    out = sys.stdout.buffer
    for chunk in chunks:
        out.write(encode(chunk))
    if fmt != "raw":
        out.write(b"\n")
    out.flush()


def _draw(ctx: click.Context) -> Callable[[int], bytes]:
    engine = _node(ctx).engine
    read: Callable[[int], bytes] = engine.random_bytes
    return read


@cli.command("bits", context_settings={"ignore_unknown_options": True})
@click.argument("n", type=click.IntRange(min=0))
@click.pass_context
def bits_command(ctx: click.Context, n: int) -> None:
    """Print a string of exactly N random bits (for more, `qrng bytes --raw`)."""
    from quantumrng import formats

    _within(ctx, "N", n, "max_json_bytes", 8)
    click.echo(formats.bits_string(_draw(ctx), n))


@cli.command("int", context_settings={"ignore_unknown_options": True})
@click.argument("low", type=int)
@click.argument("high", type=int)
@click.option("-n", "count", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def int_command(ctx: click.Context, low: int, high: int, count: int, as_json: bool) -> None:
    """Print random integers in [LOW, HIGH], both included, any size."""
    from quantumrng import formats

    if low > high:
        raise click.BadParameter("LOW must not exceed HIGH")
    _within(ctx, "-n", count, "max_items")
    _lines(formats.integers(_draw(ctx), count, low, high), as_json)


@cli.command("float")
@click.option("-n", "count", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def float_command(ctx: click.Context, count: int, as_json: bool) -> None:
    """Print random 53-bit floats in [0, 1)."""
    from quantumrng import formats

    _within(ctx, "-n", count, "max_items")
    _lines([repr(x) for x in formats.floats(_draw(ctx), count)], as_json)


@cli.command("gaussian")
@click.option("-n", "count", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--mean", type=float, default=0.0, show_default=True)
@click.option("--stddev", type=click.FloatRange(min=0.0), default=1.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def gaussian_command(
    ctx: click.Context, count: int, mean: float, stddev: float, as_json: bool
) -> None:
    """Print normally distributed random floats."""
    from quantumrng import formats

    _within(ctx, "-n", count, "max_items")
    _lines([repr(x) for x in formats.gaussians(_draw(ctx), count, mean, stddev)], as_json)


@cli.command("uuid")
@click.option("-n", "count", type=click.IntRange(min=1), default=1, show_default=True)
@click.pass_context
def uuid_command(ctx: click.Context, count: int) -> None:
    """Print random version-4 UUIDs."""
    from quantumrng import formats

    _within(ctx, "-n", count, "max_items")
    _lines(formats.uuid4s(_draw(ctx), count), False)


@cli.command("string")
@click.option("-n", "count", type=click.IntRange(min=1), default=1, show_default=True)
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


@cli.command("harvest")
@click.option("--source", type=click.Choice(SOURCE_KINDS), help="Source to harvest from.")
@click.option(
    "--until",
    "until_bytes",
    type=click.IntRange(min=1, max=MAX_HARVEST_BYTES),
    help="Fill to this many bytes.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def harvest_command(
    ctx: click.Context, source: str | None, until_bytes: int | None, quiet: bool
) -> None:
    """Harvest from the source into the pool (default: up to the high-water mark)."""
    from quantumrng.block import BLOCK_BYTES

    if source is not None:
        root = ctx.find_root()
        root.obj = _settings(ctx).replace(source=source)
    node = _node(ctx)
    settings = node.settings
    target = settings.pool_high_water if until_bytes is None else -(-until_bytes // BLOCK_BYTES)
    harvester = node.harvester
    start = harvester.level()
    if start >= target:
        click.echo(f"pool already holds {start} {settings.source} blocks (target {target})")
        return
    with click.progressbar(
        length=target - start,
        label=f"harvesting from {settings.source}",
        hidden=quiet,
    ) as bar:
        added = harvester.fill(target, progress=bar.update)
    snap = harvester.snapshot()
    click.echo(
        f"added {added} blocks ({snap['credited_bits_added']} credited bits) from "
        f"{settings.source} in {snap['harvests']} harvests; "
        f"{snap['dropped']} dropped by health tests"
    )


@cli.command("pool")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def pool_command(ctx: click.Context, as_json: bool) -> None:
    """Show pool levels and the provenance of what it holds (never its bytes)."""
    status = _node(ctx).status()["pool"]
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    click.echo(
        f"{status['backend']} pool: {status['blocks']} blocks, "
        f"{status['credited_bits']} credited bits (low {status['low_water']}, "
        f"high {status['high_water']})"
    )
    for kind, count in sorted(status["by_source"].items()):
        click.echo(f"  {kind:<10} {count} blocks")
    for h in status["recent_harvests"]:
        backend = h.get("backend") or "-"
        job = h.get("job_id") or "-"
        circuit = f" {h['qubits']} qubits x {h['shots']} shots," if h["qubits"] else ""
        click.echo(
            f"  harvest {h['harvest_id'][:12]} {h['source']} {backend} job {job},"
            f"{circuit} {h['blocks_left']} blocks left"
        )


@cli.command("status")
@click.pass_context
def status_command(ctx: click.Context) -> None:
    """Print the node's status as JSON (no secrets)."""
    click.echo(json.dumps(_node(ctx).status(), indent=2, default=str))


@cli.command("selftest")
@click.pass_context
def selftest_command(ctx: click.Context) -> None:
    """Run the DRBG known-answer tests and the source's health start-up test."""
    from quantumrng.selftest import run_selftest

    ok = True
    for name, passed, detail in run_selftest(_settings(ctx)):
        click.echo(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")
        ok = ok and passed
    if not ok:
        raise QuantumRNGError("self-test failed")


def _add_server_commands() -> None:
    """Attach `serve` and `keys`, which live with the server."""
    from quantumrng.server.commands import serve_command
    from quantumrng.server.keys_command import keys_group

    cli.add_command(serve_command, "serve")
    cli.add_command(keys_group, "keys")


_add_server_commands()


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"qrng: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; errors become one line on stderr and an exit status."""
    # qiskit-ibm-runtime warns on stderr about account loading; our one error line says it
    logging.getLogger("qiskit_ibm_runtime").setLevel(logging.ERROR)
    try:
        cli.main(args=argv, prog_name="qrng", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        _fail(exc.format_message().replace("\n", " "), exc.exit_code)
    except (InvalidRequest, ConfigError) as exc:
        _fail(exc.message, 2)
    except QuantumRNGError as exc:
        _fail(exc.message, 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(0)

