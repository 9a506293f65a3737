"""``qrng assess`` (SP 800-90B entropy assessment) and ``qrng health`` (failure state, reset)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from quantumrng.cli.options import command_node, json_option, source_option
from quantumrng.errors import InvalidRequest

__all__ = ["COMMANDS"]


def _table(result: dict[str, Any]) -> list[str]:
    """The human-readable table of one assessment's JSON."""
    from quantumrng.assessment.estimators import ESTIMATOR_NAMES

    k = result["bits_per_symbol"]
    bitstring = result.get("bitstring_estimators") or {}
    lines = [
        f"{result['samples']:,} samples of {k} bit{'s' if k > 1 else ''}",
        f"{'estimator':<20} {'per sample':>12}" + (f" {'per bit':>10}" if bitstring else ""),
    ]
    for name in ESTIMATOR_NAMES:
        value = result["estimators"].get(name)
        shown = "-" if value is None else f"{value:.6f}"
        row = f"{name:<20} {shown:>12}"
        if bitstring:
            row += f" {bitstring[name]:>10.6f}" if name in bitstring else f" {'-':>10}"
        lines.append(row)
    tests = result.get("iid_tests")
    if tests is not None:
        failed = [name for name, ok in tests["permutation"].items() if not ok]
        failed += [
            name
            for name in ("chi_square_independence", "chi_square_goodness_of_fit", "lrs")
            if not tests[name]
        ]
        verdict = "IID" if result["iid"] else "not IID (" + ", ".join(failed) + ")"
        lines.append(f"IID tests: {verdict}; track: {result['track']}")
    lines.append(f"H_original  {result['h_original']:.6f} bits per sample")
    if k > 1:
        lines.append(f"H_bitstring {result['h_bitstring']:.6f} bits per bit")
    if result.get("h_submitter") is not None:
        lines.append(f"H_submitter {result['h_submitter']:.6f} bits per sample")
    lines.append(f"H_I = {result['h_assessed']:.6f} bits per sample (the credit)")
    return lines


def _read_samples(path: Path, k: int) -> Any:
    """One sample per byte of ``path``, its low ``k`` bits, as NIST's tool reads a file."""
    import numpy as np

    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.size == 0:
        raise InvalidRequest(f"{path} is empty: there are no samples to assess")
    return raw & np.uint8((1 << k) - 1)


def _assess_file(path: Path, k: int, h_submitter: float | None) -> dict[str, Any]:
    from quantumrng.assessment import assess

    samples = _read_samples(path, k)
    try:
        return assess(samples, k, h_submitter=h_submitter).to_json()
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _assess_source(ctx: click.Context, samples: int) -> tuple[dict[str, Any], bool]:
    """Harvest ``samples`` health-tested samples, assess them, store the result if the
    source can earn credit; return the JSON and whether it was stored."""
    import numpy as np

    from quantumrng.assessment.source import assess_source
    from quantumrng.errors import HealthTestFailure
    from quantumrng.health import HealthMonitor, summarize_failures
    from quantumrng.provenance import CREDITABLE_SOURCE_KINDS

    node = command_node(ctx)
    settings = node.settings
    monitor = HealthMonitor(persistent_after=settings.health_persistent_failures)
    parts: list[Any] = []
    got = 0
    first = None
    import sys

    with click.progressbar(
        length=samples, label=f"harvesting {settings.source}", file=sys.stderr
    ) as bar:
        while got < samples:
            harvest = node.source.harvest()
            report = monitor.check(harvest)
            if not report.passed:
                raise HealthTestFailure(
                    f"a {settings.source} harvest failed health tests: "
                    f"{summarize_failures(report.failures)}"
                )
            if first is None:
                first = harvest
            elif (harvest.provenance.backend, harvest.configuration, harvest.width) != (
                first.provenance.backend,
                first.configuration,
                first.width,
            ):
                raise HealthTestFailure(
                    "the source changed backend or configuration during the assessment; "
                    "run it again"
                )
            parts.append(harvest.bits())
            got += harvest.samples
            bar.update(harvest.samples)
    assert first is not None
    bits = np.concatenate(parts)[:samples]
    result = assess_source(
        bits,
        source=first.provenance.source,
        backend=first.provenance.backend,
        configuration=first.configuration,
        h_submitter=first.assessed_entropy,
        min_samples=samples,
    )
    stored = first.creditable and first.provenance.source in CREDITABLE_SOURCE_KINDS
    if stored:
        node.ledger.save_assessment(result.assessment)
    data = result.joint_assessment.to_json()
    data["source_assessment"] = result.assessment.to_json()
    data["streams"] = [a.to_json() for a in result.stream_assessments]
    return data, stored


@click.command("assess")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--bits-per-symbol",
    "-k",
    type=click.IntRange(1, 8),
    help="Bits per sample in FILE (1 to 8): each byte is one sample, its low K bits.",
)
@click.option("--h-submitter", type=float, help="The submitter's estimate, bits per sample.")
@source_option(help="Assess this source instead of a file (harvests --samples samples).")
@click.option(
    "--samples",
    type=int,
    help="Samples (shots) to harvest from --source; at least 1000000 (SP 800-90B §3.1.1).",
)
@json_option(help="One JSON object instead of the table.")
@click.pass_context
def assess_command(
    ctx: click.Context,
    file: Path | None,
    bits_per_symbol: int | None,
    h_submitter: float | None,
    source: str | None,
    samples: int | None,
    as_json: bool,
) -> None:
    """Assess min-entropy as SP 800-90B does: IID tests, the ten estimators, H_I.

    Either FILE with --bits-per-symbol, or --source S --samples N (which
    stores the result for a source that can earn credit).
    """
    from quantumrng.assessment import MIN_SAMPLES

    if (file is None) == (source is None):
        raise click.UsageError("give either FILE or --source")
    if file is not None:
        if bits_per_symbol is None:
            raise click.UsageError("FILE needs --bits-per-symbol")
        result = _assess_file(file, bits_per_symbol, h_submitter)
        stored = False
        lines = _table(result)
    else:
        if samples is None or samples < MIN_SAMPLES:
            raise click.BadParameter(
                f"at least {MIN_SAMPLES} samples (SP 800-90B §3.1.1)", param_hint="--samples"
            )
        result, stored = _assess_source(ctx, samples)
        credit = result["source_assessment"]["credit"]
        lines = _table(result)
        lines.append(
            "credit per stream (bits per bit): " + ", ".join(f"{c:.6f}" for c in credit)
        )
        lines.append(
            "stored: blocks of this source are credited from now on"
            if stored
            else "not stored: this source earns no credit"
        )
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo("\n".join(lines))


@click.group("health")
def health_group() -> None:
    """The source's health-test state (SP 800-90B §4.3)."""


@health_group.command("show")
@json_option(help="One JSON object.")
@click.pass_context
def health_show(ctx: click.Context, as_json: bool) -> None:
    """Show whether the source is stopped by a persistent failure, and its assessment."""
    node = command_node(ctx)
    failure = node.ledger.failure()
    assessment = node.assessment_status()
    data = {
        "source": node.settings.source,
        "state": "failed" if failure is not None else "ok",
        "failure": None if failure is None else failure.to_json(),
        "assessment": assessment,
    }
    if as_json:
        click.echo(json.dumps(data))
        return
    click.echo(
        f"{node.settings.source}: "
        + ("ok" if failure is None else failure.message())
        + f"; assessment {assessment['state']}"
    )


@health_group.command("reset")
@click.pass_context
def health_reset(ctx: click.Context) -> None:
    """Clear a persistent failure: the source harvests again once a new start-up test passes."""
    node = command_node(ctx)
    failure = node.ledger.failure()
    if failure is None:
        click.echo(f"{node.settings.source}: not in the failure state; nothing to reset")
        return
    node.ledger.clear_failure()
    click.echo(
        f"{node.settings.source}: failure state cleared ({failure.test} on stream "
        f"{failure.stream}); a new start-up test runs before the next harvest"
    )


COMMANDS = (assess_command, health_group)
