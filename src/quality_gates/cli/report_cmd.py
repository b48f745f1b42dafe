"""`report`: summary, detailed, comparison, incident, quota-usage, performance-impact and
failover-effectiveness reports from the store, as Markdown, HTML or JSON."""

from __future__ import annotations

from pathlib import Path

import click

from quality_gates.cli import _context
from quality_gates.cli._context import environment_option, json_option

# Kept here as well as in quality_gates.reports so `--help` imports nothing heavy.
TYPES = (
    "summary",
    "detailed",
    "comparison",
    "incident",
    "quota-usage",
    "performance-impact",
    "failover-effectiveness",
)


def register(group: click.Group) -> None:
    """Add the `report` command."""
    group.add_command(report)


@click.command()
@click.option(
    "--type",
    "-t",
    "report_type",
    metavar="TYPE",
    default="summary",
    show_default=True,
    help=f"One of: {', '.join(TYPES)}.",
)
@click.option(
    "--period",
    "-p",
    metavar="DURATION",
    help="How far back: 24h, 7d, 30d (default 30d for detailed and failover-effectiveness, "
    "else 24h).",
)
@environment_option(help_text="Environment (default: production, else the first configured).")
@click.option("--model-id", "-m", metavar="MODEL", help="Only this model (comparison: model A).")
@click.option(
    "--baseline-model",
    metavar="MODEL",
    help="comparison: model B (default: the previous-stable alias; A defaults to current).",
)
@click.option("--incident", "incident_id", type=int, metavar="N", help="incident: which one.")
@click.option(
    "--at",
    metavar="TIME",
    help="performance-impact: compare around this time (ISO 8601, epoch, or 30m for that long "
    "ago; default: the last change of the current alias).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE: .md (charts as PNG in FILE_files/), .html (self-contained) or .json.",
)
@click.option("--schema", "show_schema", is_flag=True, help="Print the JSON report's schema.")
@json_option
@click.pass_context
def report(
    ctx: click.Context,
    report_type: str,
    period: str | None,
    environment: str | None,
    model_id: str | None,
    baseline_model: str | None,
    incident_id: int | None,
    at: str | None,
    output: Path | None,
    show_schema: bool,
    json_output: bool,
) -> None:
    """Write a report from what the store measured: compliance with the runbook's key metrics,
    availability, latency, error budget, incidents (TTA/TTR), rollbacks and failovers, gate
    runs, cost, quotas, drills and routine checks. Sections without data say so.

    \b
    quality-gates report --type detailed --output monthly-report.md
    quality-gates report --type incident --incident 12 --output incident-12.html
    quality-gates report --type comparison --model-id A --baseline-model B
    """
    import sys

    from quality_gates.cli._output import info
    from quality_gates.reports import (
        build_report,
        make_request,
        output_format,
        render_file,
        schema_text,
        to_json,
    )

    if show_schema:
        sys.stdout.write(schema_text())
        return
    if output is not None:
        output_format(output)
    request = make_request(
        report_type,
        period=period,
        environment=environment,
        model_id=model_id,
        baseline_model=baseline_model,
        incident_id=incident_id,
        at=at,
    )
    state = _context.state(ctx)
    config = state.loaded().config
    document = build_report(state.conn(), config, request, now=request.end)
    if output is not None:
        render_file(document, output)
    if _context.wants_json(ctx, json_output):
        sys.stdout.write(to_json(document))
        return
    if output is not None:
        info(f"{document['title']} written to {output}")
        return
    from quality_gates.reports._markdown import render

    info("Markdown on stdout leaves the charts out; use --output FILE.md or FILE.html for them.")
    sys.stdout.write(render(document))
