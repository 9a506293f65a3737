"""``qrng harvest | pool | status | selftest``: fill, inspect and check the pool and source."""

from __future__ import annotations

import json
from typing import Any

import click

from quantumrng.cli.options import command_node, command_settings, json_option, source_option
from quantumrng.errors import QuantumRNGError

__all__ = ["COMMANDS"]

MAX_HARVEST_BYTES = 1 << 36  # 64 GiB: `qrng harvest --until` beyond this is a typo


@click.command("harvest")
@source_option(help="Source to harvest from.")
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

    node = command_node(ctx)
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


@click.command("pool")
@json_option(help=None)
@click.pass_context
def pool_command(ctx: click.Context, as_json: bool) -> None:
    """Show pool levels and the provenance of what it holds (never its bytes)."""
    node_status = command_node(ctx).status()
    status = node_status["pool"]
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    click.echo(
        f"{status['backend']} pool: {status['blocks']} blocks, "
        f"{status['credited_bits']} credited bits (low {status['low_water']}, "
        f"high {status['high_water']})"
    )
    leader = node_status["leader"]
    if leader is None:
        click.echo("  harvest leader: none")
    else:
        click.echo(
            f"  harvest leader: {leader['holder']} (token {leader['token']}, "
            f"lease expires in {leader['expires_in']:g} s)"
        )
    for kind, count in sorted(status["by_source"].items()):
        click.echo(f"  {kind:<10} {count} blocks")
    for h in status["recent_harvests"]:
        backend = h.get("backend") or "-"
        job = h.get("job_id") or "-"
        circuit = f" {h['qubits']} qubits x {h['shots']} shots," if h["qubits"] else ""
        click.echo(
            f"  harvest {h['harvest_id'][:12]} {h['source']} {backend} job {job},"
            f"{circuit} {h['blocks_left']} blocks left{_witness_text(h.get('witnesses', []))}"
        )


def _witness_text(witnesses: list[dict[str, Any]]) -> str:
    """``; witness passed: mermin 3.81 +- 0.05 (bound 2, p_classical ..., passed); ...``
    for a harvest that ran witnesses, else nothing."""
    if not witnesses:
        return ""
    from quantumrng.witness import Witness, harvest_status

    records = [Witness.from_dict(w) for w in witnesses]
    parts = "; ".join(
        f"{w.kind} {w.value:.2f} +- {w.stderr:.2f} (bound {w.bound:g}, "
        f"p_classical {w.p_classical:.1e}, {w.status})"
        for w in records
    )
    return f"; witness {harvest_status(records)}: {parts}"


@click.command("status")
@click.pass_context
def status_command(ctx: click.Context) -> None:
    """Print the node's status as JSON (no secrets)."""
    click.echo(json.dumps(command_node(ctx).status(), indent=2, default=str))


@click.command("selftest")
@click.pass_context
def selftest_command(ctx: click.Context) -> None:
    """Run the DRBG known-answer tests and the source's health start-up test."""
    from quantumrng.selftest import run_selftest

    ok = True
    for name, passed, detail in run_selftest(command_settings(ctx)):
        click.echo(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}")
        ok = ok and passed
    if not ok:
        raise QuantumRNGError("self-test failed")


COMMANDS: tuple[click.Command, ...] = (
    harvest_command,
    pool_command,
    status_command,
    selftest_command,
)
