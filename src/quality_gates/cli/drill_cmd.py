"""`drill`: disaster-recovery drills against the simulator, measured and held to targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, json_option

SCENARIO_NAMES = (
    "provider-outage",
    "latency-spike",
    "quality-regression",
    "two-provider-outage",
    "multi-provider-outage",
)


def register(group: click.Group) -> None:
    """Add `drill`."""
    group.add_command(drill)


class _DrillGroup(click.Group):
    """Scenarios are subcommands; an unknown one gets one line naming the accepted ones."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            raise click.UsageError(
                f"unknown scenario {name!r}; use one of {', '.join(SCENARIO_NAMES)} (or list)"
            )
        return super().resolve_command(ctx, args)


@click.group(cls=_DrillGroup)
def drill() -> None:
    """Disaster-recovery drills: inject a fault under steady load, measure detection,
    failover or rollback, requests lost and recovery against the runbook's targets.

    \b
    drill provider-outage --provider bedrock --duration 15s
    drill quality-regression -e staging
    drill list
    """


def _scenario_command(name: str, summary: str) -> click.Command:
    @click.option("--provider", metavar="NAME", help="The provider to break (default: current's).")
    @click.option("--duration", default="15s", show_default=True, help="How long the fault lasts.")
    @click.option("--environment", "-e", default="staging", show_default=True, metavar="ENV")
    @click.option("--rate", default=15.0, show_default=True, type=float, help="Load, requests/s.")
    @click.option(
        "--scratch-store",
        is_flag=True,
        help="Run the drill's gateway and watch against a fresh temporary store seeded with "
        "the environment's aliases and settings (no lease needed, nothing from before leaks "
        "in); its record still goes to this store's drill_runs.",
    )
    @click.option(
        "--keep-scratch",
        metavar="DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="Keep the scratch store as DIR/state.db (implies --scratch-store).",
    )
    @actor_option
    @json_option
    @click.pass_context
    def command(ctx: click.Context, /, **kwargs: Any) -> None:
        _run(ctx, name, **kwargs)

    command.__doc__ = (
        f"Drill {name}: {summary}. Exit 0 when every runbook target is met, 1 when one is "
        "missed, 4 when the drill could not run."
    )
    return click.command(name, help=command.__doc__)(command)


_SUMMARIES = {
    "provider-outage": "the provider answers 503; breakers and failover move traffic, then "
    "it fails back in steps",
    "latency-spike": "the provider's P95 goes over the threshold; remediation moves traffic",
    "quality-regression": "the current model's accuracy drops; `current` rolls back",
    "two-provider-outage": "the current model's provider and the next in its chain down; the "
    "third serves every request",
    "multi-provider-outage": "every provider down; degraded service serves stale answers",
}
for _name in SCENARIO_NAMES:
    drill.add_command(_scenario_command(_name, _SUMMARIES[_name]))


def _run(
    ctx: click.Context,
    scenario: str,
    provider: str | None,
    duration: str,
    environment: str,
    rate: float,
    scratch_store: bool,
    keep_scratch: Path | None,
    actor_name: str | None,
    json_output: bool,
) -> None:
    from quality_gates.cli._output import emit_json, err_console
    from quality_gates.drills import DrillOptions, check_options, run_drill
    from quality_gates.errors import UsageError
    from quality_gates.units import parse_duration

    try:
        seconds = parse_duration(duration, bare_unit="s")
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}") from None
    state = _context.state(ctx)
    loaded = state.loaded()
    conn = state.conn()
    options = DrillOptions(
        scenario=scenario,
        environment=environment,
        provider=provider,
        duration=seconds,
        rate=rate,
        actor=_context.actor(actor_name, "drill").name,
        scratch_store=scratch_store or keep_scratch is not None,
        keep_scratch=keep_scratch,
    )
    check_options(conn, loaded, options)
    as_json = _context.wants_json(ctx, json_output)
    err = err_console()
    result = run_drill(
        conn,
        loaded,
        state.store_url(),
        options,
        progress=None if as_json else (lambda text: err.print(f"[dim]drill: {text}[/]")),
    )
    if as_json:
        emit_json(result.to_json())
    else:
        _render(result.to_json())
    ctx.exit(result.exit_code)


@drill.command("list")
@click.option("--scenario", type=click.Choice(SCENARIO_NAMES), help="Only this scenario.")
@click.option("--environment", "-e", metavar="ENV", help="Only this environment.")
@click.option("--limit", default=20, show_default=True, type=int)
@json_option
@click.pass_context
def list_(
    ctx: click.Context,
    scenario: str | None,
    environment: str | None,
    limit: int,
    json_output: bool,
) -> None:
    """Past drill runs, latest first, with their key figures."""
    from quality_gates.cli._output import console, emit_json, local_time, table
    from quality_gates.drills import store

    rows = store.list_runs(
        _context.state(ctx).conn(), scenario=scenario, environment=environment, limit=limit
    )
    if _context.wants_json(ctx, json_output):
        emit_json(rows)
        return
    out = console()
    if not rows:
        out.print("no drill runs yet (`quality-gates drill run provider-outage`)")
        return
    grid = table(
        "#",
        "started",
        "scenario",
        "env",
        "provider",
        "status",
        "detect",
        "failover/rb",
        "recovery",
        "lost",
        "incident",
    )
    for row in rows:
        f = row["figures"]
        grid.add_row(
            str(row["id"]),
            local_time(row["started_at"]),
            row["scenario"],
            row["environment"],
            row["provider"] or "all",
            row["status"],
            _secs(f.get("detection_s")),
            _secs(f.get("failover_s", f.get("rollback_s"))),
            _secs(f.get("recovery_s")),
            "-" if f.get("failed_pct") is None else f"{f['requests_failed']}/{f['requests_sent']}",
            f"#{row['incident_id']}" if row["incident_id"] else "-",
        )
    out.print(grid)


def _secs(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f} s"


def _render(result: dict[str, Any]) -> None:
    from quality_gates.cli._output import console, local_time

    out = console()
    f, d = result["figures"], result["details"]
    where = result["provider"] or "every provider"
    out.print(
        f"[bold]Drill #{result['run_id']}: {result['scenario']}[/] in {result['environment']} "
        f"on {where} (fault {d.get('duration_s', 0):g} s, load {d.get('rate', 0):g} req/s)",
        markup=True,
    )
    for line in d.get("substitutions", []):
        out.print(f"  substituted: {line}", markup=False)
    out.print(f"  detection: {d.get('detection_signal')}", markup=False)
    for name, value in (
        ("breaker opened", f.get("breaker_open_s")),
        ("alert firing", f.get("alert_firing_s")),
        ("watch moved traffic", f.get("route_change_s")),
    ):
        if value is not None:
            out.print(f"    {name}: {value:.2f} s after the injection", markup=False)
    if "stale_served" in f:
        out.print(
            f"  emergency: degraded service on {_secs(f.get('degraded_s'))} after the injection; "
            f"{f['stale_served']} answers stale from the cache ({f.get('stale_pct') or 0:.1f}% of "
            f"the fault's requests), deepest queue {f.get('queued_max', 0)}",
            markup=False,
        )
    out.print(
        f"  requests: {f.get('requests_failed')} failed of {f.get('requests_sent')} sent "
        f"({f.get('failed_pct') or 0:.2f}%), {f.get('broken_streams', 0)} broken streams",
        markup=False,
    )
    out.print("")
    out.print(f"  {'figure':<18} {'measured':>10}   {'runbook':<28} {'project':<18}", markup=False)
    for name, v in result["verdicts"].items():
        value = v["value"]
        shown = (
            "never"
            if value is None
            else (f"{value:.2f}%" if name == "failed_pct" else f"{value:.2f} s")
        )
        runbook = _verdict(v["runbook_target"], v["runbook_met"])
        project = _verdict(v["project_target"], v["project_met"])
        out.print(f"  {name:<18} {shown:>10}   {runbook:<28} {project:<18}", markup=False)
    incident = result.get("incident")
    out.print("")
    if incident:
        where = " (in the scratch store)" if incident.get("store") == "scratch" else ""
        out.print(
            f"  incident #{incident['id']}{where} {incident['severity']} ({incident['state']}): "
            f"{incident['title']}",
            markup=False,
        )
        for event in incident["timeline"]:
            out.print(
                f"    {local_time(event['ts'])}  {event['kind']:<10} {event['message']}",
                markup=False,
            )
        sent = ", ".join(
            f"{n['channel']} {n['state']} x{n['count']}" for n in incident["notifications"]
        )
        out.print(f"  notifications: {sent or 'none in the outbox'}", markup=False)
    else:
        out.print("  no incident was opened", markup=False)
    for line in d.get("restore", []):
        out.print(f"  restored: {line}", markup=False)
    scratch = d.get("scratch_store")
    if scratch:
        out.print(f"  {scratch['note']}", markup=False)
        if scratch.get("kept_at"):
            out.print(f"  scratch store kept at {scratch['kept_at']}", markup=False)
    out.print("")
    if result["missed_runbook"]:
        out.print(f"[bold red]MISSED runbook target(s): {', '.join(result['missed_runbook'])}[/]")
    else:
        out.print("[bold green]every runbook target met[/]")
    if result["missed_project"]:
        out.print(f"project targets missed: {', '.join(result['missed_project'])}", markup=False)


def _verdict(target: str | None, met: bool | None) -> str:
    if target is None:
        return "-"
    return f"{target} {'MET' if met else 'MISSED'}"
