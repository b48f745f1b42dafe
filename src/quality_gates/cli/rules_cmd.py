"""`rules list` and `rules export` (Prometheus rules with promtool tests, Alertmanager)."""

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


def _scrape_interval(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    from quality_gates.units import parse_duration

    try:
        seconds = parse_duration(value, bare_unit="s")
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (e.g. 15s, 1m)") from None
    if seconds <= 0:
        raise click.BadParameter(f"{value!r} is not a positive duration (e.g. 15s, 1m)")
    return seconds


@rules.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["prometheus", "alertmanager"]),
    default="prometheus",
    show_default=True,
    help="prometheus: a rule file over the gateway's /metrics; alertmanager: a configuration "
    "for the config's notification channels, routes and inhibitions.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout.",
)
@click.option(
    "--scrape-interval",
    default="1m",
    show_default=True,
    callback=_scrape_interval,
    metavar="DURATION",
    help="How often Prometheus scrapes the gateways; rate() windows are widened to 4x it.",
)
@click.option(
    "--tests",
    "tests_output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write `promtool test rules` unit tests for the rule file (needs --output).",
)
@click.option(
    "--secrets-dir",
    default="/etc/alertmanager/secrets",
    show_default=True,
    metavar="DIR",
    help="alertmanager: where the files holding ${VAR} URLs and keys will be.",
)
@click.pass_context
def export(
    ctx: click.Context,
    fmt: str,
    output: Path | None,
    scrape_interval: float,
    tests_output: Path | None,
    secrets_dir: str,
) -> None:
    """Write the rules as a Prometheus rule file over the gateway's /metrics (check it with
    `promtool check rules FILE`, test it with `--tests` and `promtool test rules`), or an
    Alertmanager configuration for the notification channels (`amtool check-config FILE`)."""
    from quality_gates.cli._output import info
    from quality_gates.errors import UsageError

    config = _context.state(ctx).loaded().config
    if tests_output is not None and (fmt != "prometheus" or output is None):
        raise UsageError("--tests needs --format prometheus and --output (the tests name it)")
    if fmt == "alertmanager":
        from quality_gates.exports import _alertmanager

        manager = _alertmanager.alertmanager_config(config, secrets_dir)
        _write(output, _alertmanager.render(manager))
        if output is not None:
            info(
                f"wrote an Alertmanager configuration with {len(manager.data['receivers'])} "
                f"receivers to {output}"
                + (
                    f"; {len(manager.not_exported)} notes (see the header)"
                    if manager.not_exported
                    else ""
                )
            )
        return
    from quality_gates.exports._prometheus import prometheus_rules, render

    exported = prometheus_rules(config, scrape_interval)
    _write(output, render(exported))
    if output is None:
        return
    info(
        f"wrote {exported.count} {fmt} rules to {output}"
        + (f"; {len(exported.skipped)} not exportable (see the header)" if exported.skipped else "")
        + (f"; {len(exported.widened)} windows widened" if exported.widened else "")
    )
    if tests_output is not None:
        import os

        from quality_gates.exports._prometheus import dump_yaml
        from quality_gates.exports._promtool import unit_tests

        relative = os.path.relpath(output.resolve(), tests_output.resolve().parent)
        data, untested = unit_tests(config, exported, relative)
        header = "# `promtool test rules` unit tests generated by `quality-gates rules export`.\n"
        if untested:
            header += "# No generated test:\n" + "".join(f"#   - {u}\n" for u in untested)
        _write(tests_output, header + dump_yaml(data))
        info(f"wrote {len(data['tests'])} promtool tests to {tests_output}")


def _write(output: Path | None, text: str) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
