"""`validate`: is this environment ready? Migrations, secrets, config, credentials, live probes,
notifications, rollback readiness, failover chains, thresholds and permissions, each PASS /
WARN / FAIL with evidence; `--fix` applies the safe fixes and suggests the rest."""

from __future__ import annotations

from typing import Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import environment_option, json_option


def register(group: click.Group) -> None:
    """Add `validate`."""
    group.add_command(validate)


@click.command()
@environment_option(default="production")
@click.option(
    "--timeout",
    default="10s",
    show_default=True,
    metavar="DURATION",
    help="Time allowed for each provider probe.",
)
@click.option(
    "--check",
    "checks",
    multiple=True,
    metavar="NAME",
    help="Run only these checks (repeatable), e.g. providers, rollback-readiness.",
)
@click.option(
    "--fix",
    is_flag=True,
    help="Apply the safe fixes: pending migrations, plain-text secrets moved to "
    ".quality-gates/secrets.env, file permissions, a missing previous-stable from history.",
)
@click.option("--post-failover", is_flag=True, help="Also check the route after a failover.")
@click.option("--canary-health", is_flag=True, help="Also compare a running canary.")
@click.option(
    "--performance-check", is_flag=True, help="Also check the last 5 minutes' P95 and errors."
)
@json_option
@click.pass_context
def validate(
    ctx: click.Context,
    environment: str,
    timeout: str,
    checks: tuple[str, ...],
    fix: bool,
    post_failover: bool,
    canary_health: bool,
    performance_check: bool,
    json_output: bool,
) -> None:
    """Validate an environment: exit 0 if nothing FAILs (warnings allowed), 1 otherwise."""
    import asyncio

    from quality_gates._suggest import did_you_mean
    from quality_gates.cli._output import emit_json
    from quality_gates.errors import EXIT_FAILED, ConfigError, QualityGatesError, UsageError
    from quality_gates.units import parse_duration
    from quality_gates.validation import CHECKS, ValidationContext, run_checks

    try:
        probe_timeout = parse_duration(timeout, bare_unit="s")
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        known = list(CHECKS)
        raise UsageError(
            f"unknown check {unknown[0]!r}{did_you_mean(unknown[0], known)} "
            f"(checks: {', '.join(known)})"
        )
    state = _context.state(ctx)
    loaded, problem, path = None, None, None
    try:
        path = state.config_file()[0]
        loaded = state.loaded()
    except ConfigError as exc:
        problem = exc
    if loaded is not None and environment not in loaded.config.environments:
        names = list(loaded.config.environments)
        raise UsageError(
            f"unknown environment {environment!r}{did_you_mean(environment, names)} "
            f"(environments: {', '.join(names)})"
        )
    store_url = None
    try:
        store_url = state.store_url()
        if loaded is not None:
            state.database(require_current=False)  # creates a missing store, syncs the config
    except QualityGatesError as exc:
        from quality_gates.cli._output import warn

        warn(f"store: {exc}")
    context = ValidationContext(
        environment,
        path,
        loaded,
        problem,
        probe_timeout,
        options={
            "post_failover": post_failover,
            "canary_health": canary_health,
            "performance_check": performance_check,
        },
        fix=fix,
        store_url=store_url,
    )
    report = asyncio.run(run_checks(context, checks or None))
    if _context.wants_json(ctx, json_output):
        emit_json(report.to_dict())
    else:
        _render(report.to_dict())
    if not report.passed:
        ctx.exit(EXIT_FAILED)


def _render(report: dict[str, Any]) -> None:
    from rich.markup import escape

    from quality_gates.cli._output import console, table

    colours = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}
    out = console()
    view = table("check", "status", "finding", title=f"validate {report['environment']}")
    suggestions = []
    for result in report["results"]:
        colour = colours[result["status"]]
        fixed = " [green](fixed)[/green]" if result["evidence"].get("fixed") else ""
        view.add_row(
            result["check"],
            f"[{colour}]{result['status']}[/{colour}]{fixed}",
            escape(result["summary"]),
        )
        if result["status"] != "PASS" and result["evidence"].get("suggestion"):
            suggestions.append(f"{result['check']}: {result['evidence']['suggestion']}")
    out.print(view)
    for line in suggestions:
        out.print(f"  suggestion - {escape(line)}")
    counts = report["counts"]
    colour = colours[report["status"]]
    out.print(
        f"[{colour}]{report['status']}[/{colour}]: {counts['PASS']} passed, "
        f"{counts['WARN']} warnings, {counts['FAIL']} failed in {report['duration_ms']:.0f} ms"
    )
