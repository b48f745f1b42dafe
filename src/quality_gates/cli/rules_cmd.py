"""`rules list` and `rules export --format prometheus`."""

from __future__ import annotations

from pathlib import Path

import click

from quality_gates.cli import _context
from quality_gates.cli._context import json_option


def register(group: click.Group) -> None:
    """Add the `rules` group."""
    group.add_command(rules)


@click.group()
def rules() -> None:
    """The alert rules and SLOs of the config."""


@rules.command("list")
@json_option
@click.pass_context
def list_rules(ctx: click.Context, json_output: bool) -> None:
    """Every rule as the evaluator runs it (SLO burn-rate windows included)."""
    from quality_gates.cli._output import console, emit_json, table
    from quality_gates.units import format_duration
    from quality_gates.watch._evaluate import rule_specs

    specs = rule_specs(_context.state(ctx).loaded().config)
    if _context.wants_json(ctx, json_output):
        emit_json(
            [
                {
                    "name": s.name,
                    "expression": s.expression,
                    "window": s.window,
                    "short_window": s.short_window,
                    "for": s.for_,
                    "keep_firing_for": s.keep_firing_for,
                    "severity": s.severity,
                    "type": s.type,
                    "group_by": list(s.group_by),
                }
                for s in specs
            ]
        )
        return
    view = table("rule", "expression", "window", "for", "keep", "severity", "type", "by")
    for s in specs:
        window = (format_duration(s.window) if s.window else "-") + (
            f" & {format_duration(s.short_window)}" if s.short_window else ""
        )
        view.add_row(
            s.name,
            s.expression,
            window,
            format_duration(s.for_) if s.for_ else "0",
            format_duration(s.keep_firing_for) if s.keep_firing_for else "0",
            s.severity,
            s.type,
            ",".join(s.group_by),
        )
    console().print(view)


@rules.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["prometheus"]),
    default="prometheus",
    show_default=True,
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout.",
)
@click.pass_context
def export(ctx: click.Context, fmt: str, output: Path | None) -> None:
    """Write the rules as a Prometheus rule file over the gateway's /metrics
    (check it with `promtool check rules FILE`)."""
    from quality_gates.cli._output import info
    from quality_gates.watch._prometheus import prometheus_rules, render

    config = _context.state(ctx).loaded().config
    text = render(config)
    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    data, skipped = prometheus_rules(config)
    count = sum(len(g["rules"]) for g in data["groups"])
    info(
        f"wrote {count} {fmt} rules to {output}"
        + (f"; {len(skipped)} not exportable (see the header)" if skipped else "")
    )
