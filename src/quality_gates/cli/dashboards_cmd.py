"""`dashboards export --format grafana`: a Grafana dashboard over the gateway's /metrics."""

from __future__ import annotations

from pathlib import Path

import click


def register(group: click.Group) -> None:
    """Add the `dashboards` group."""
    group.add_command(dashboards)


@click.group()
def dashboards() -> None:
    """Dashboards for the tools operators already use."""


@dashboards.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["grafana"]),
    default="grafana",
    show_default=True,
    help="grafana: the JSON model of a dashboard over the gateway's /metrics (Prometheus).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout.",
)
@click.option("--title", default="quality-gates: gateway and watch", show_default=True)
def export(fmt: str, output: Path | None, title: str) -> None:
    """Write a dashboard of the gateway and watch metrics: error rate, latency, throughput,
    providers (availability, breakers, failovers), cost, cache, capacity, alerts and
    incidents. Import it in Grafana (Dashboards > New > Import) or provision the file."""
    import json

    from quality_gates.cli._output import info
    from quality_gates.exports._grafana import dashboard

    model = dashboard(title)
    text = json.dumps(model, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    panels = sum(1 for p in model["panels"] if p["type"] != "row")
    info(f"wrote a {fmt} dashboard with {panels} panels to {output}")
