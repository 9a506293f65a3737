"""The ``qrng`` command line: the same engine as the server, no HTTP needed.

Bad arguments print one line and exit with status 2; a failure to produce
randomness (empty pool, failing source, failed health test) prints one line
and exits with status 1. Nothing weaker is ever printed instead.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

import click

from quantumrng.cli import assess, beacon, feed, keys, mqtt, pool, random, serve, stream, verify
from quantumrng.cli.options import command_settings, setting_option, shared_settings
from quantumrng.errors import ConfigError, InvalidRequest, QuantumRNGError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file.")
@shared_settings
@setting_option(
    "--ibm-secrets", type=click.Path(dir_okay=False), help="YAML file with ibm_api_key."
)
@setting_option("--ibm-backend", help="IBM backend name (default: least busy).")
@click.version_option(package_name="quantumrng", prog_name="qrng")
@click.pass_context
def cli(ctx: click.Context, /, **_: Any) -> None:
    """QuantumRNG: quantum random numbers, health-tested, pooled and served.

    Settings come from defaults < config file < QRNG_* environment < flags.
    """
    ctx.obj = command_settings(ctx)


for _module in (random, pool, serve, keys, assess, verify, beacon, feed, stream, mqtt):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


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
