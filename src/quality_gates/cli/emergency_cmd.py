"""`emergency`: the failover runbook's emergency procedure as one command."""

from __future__ import annotations

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, environment_option, json_option

MODES = ("multi-provider-outage", "shutdown")


def register(group: click.Group) -> None:
    """Add `emergency`."""
    group.add_command(emergency)


@click.command()
@click.option(
    "--mode",
    type=click.Choice(MODES),
    help="multi-provider-outage (with --enable-degraded-service) or shutdown.",
)
@click.option(
    "--enable-degraded-service",
    is_flag=True,
    help="Serve stale cache answers, queue requests, hold to the relaxed targets.",
)
@click.option("--off", "switch_off", is_flag=True, help="Leave the emergency mode.")
@click.option("--reason", help="Why; kept in the audit log and on the incident's timeline.")
@environment_option("production")
@actor_option
@json_option
@click.pass_context
def emergency(
    ctx: click.Context,
    mode: str | None,
    enable_degraded_service: bool,
    switch_off: bool,
    reason: str | None,
    environment: str,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Degraded service in a multi-provider outage, a controlled stop, or back to normal.

    \b
    emergency --mode multi-provider-outage --enable-degraded-service
    emergency --mode shutdown --reason "security incident"
    emergency --off
    """
    from quality_gates.cli._output import console, emit_json
    from quality_gates.errors import UsageError
    from quality_gates.gateway import emergency as service
    from quality_gates.registry import check_environment

    if switch_off == (mode is not None):
        raise UsageError("give either --mode multi-provider-outage|shutdown or --off")
    if mode == "multi-provider-outage" and not enable_degraded_service:
        raise UsageError(
            "--mode multi-provider-outage needs --enable-degraded-service",
            hint="or stop the service with --mode shutdown --reason R",
        )
    if mode == "shutdown" and not (reason and reason.strip()):
        raise UsageError("--mode shutdown needs --reason (clients and the audit log see it)")
    state = _context.state(ctx)
    conn = state.conn()
    check_environment(conn, environment, state.snapshot())
    actor = _context.actor(actor_name).name
    out = console()
    if switch_off:
        before = service.switch_off(conn, environment=environment, actor=actor, reason=reason or "")
        if _context.wants_json(ctx, json_output):
            emit_json({"environment": environment, "mode": "off", "was": before})
            return
        out.print(f"[bold green]{environment}: emergency {before['mode']} switched off[/]")
        if before["mode"] == "degraded":
            out.print("  cache mode and request queue are back to what they were before")
        out.print("  Running gateways apply this within 1 s.")
        return
    config = state.loaded().config
    value = service.switch_on(
        conn,
        config,
        environment=environment,
        mode=service.RUNBOOK_MODES[str(mode)],
        reason=reason or "multi-provider outage",
        actor=actor,
    )
    if _context.wants_json(ctx, json_output):
        emit_json({"environment": environment, **value})
        return
    if value["mode"] == "degraded":
        targets = value["targets"]
        out.print(f"[bold yellow]{environment}: degraded service on[/] ({value['reason']})")
        out.print("  stale cache answers when every provider fails (marked x-qg-cache: stale)")
        out.print(
            f"  requests over the limits queue (up to {config.emergency.queue_size}, "
            f"{config.emergency.queue_timeout:g} s)"
        )
        out.print(
            f"  relaxed targets: P95 < {targets['p95_latency_ms'] / 1000:g} s, accuracy > "
            f"{targets['accuracy'] * 100:g}%, availability > {targets['availability'] * 100:g}%"
        )
    else:
        out.print(f"[bold red]{environment}: service stopped[/] ({value['reason']})")
        out.print(
            f"  new requests get 503 with retry-after {value['retry_after']:g} s; requests in "
            "flight finish and are recorded"
        )
    if value["incident_id"] is not None:
        out.print(f"  on incident #{value['incident_id']}'s timeline")
    out.print(
        f"  Running gateways apply this within 1 s. `quality-gates emergency --off -e "
        f"{environment}` ends it."
    )
