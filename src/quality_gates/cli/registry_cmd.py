"""`rollback`, `promote` and `history`: move `current` back or forward, see every alias move."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, environment_option, json_option

if TYPE_CHECKING:
    from quality_gates.gateway.target_checks import TargetCheck


def register(group: click.Group) -> None:
    """Add `rollback`, `promote` and `history`."""
    group.add_command(rollback)
    group.add_command(promote)
    group.add_command(history)


@click.command()
@click.option(
    "--model-id",
    required=True,
    metavar="MODEL",
    help="The model now current (a model id, or an alias such as current-model).",
)
@click.option(
    "--previous-model",
    required=True,
    metavar="MODEL",
    help="The model to go back to (id or alias: previous-stable, last-known-good, backup).",
)
@click.option("--reason", required=True, help="Why; kept in the history and the audit log.")
@click.option(
    "--force",
    is_flag=True,
    help="Move even when the target model fails its health check (recorded as forced).",
)
@environment_option("production")
@actor_option
@json_option
@click.pass_context
def rollback(
    ctx: click.Context,
    model_id: str,
    previous_model: str,
    reason: str,
    force: bool,
    environment: str,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Point `current` from --model-id back to --previous-model; previous-stable becomes the
    model rolled back from. Refuses (exit 1) if --model-id is not current there, or if the
    model to go back to fails its health check (live probes, breakers, recent errors) unless
    --force."""
    from quality_gates.cli._output import console, emit_json
    from quality_gates.incidents import current_incident, record_event
    from quality_gates.registry import check_environment, resolve_model
    from quality_gates.registry import rollback as do_rollback

    state = _context.state(ctx)
    conn = state.conn()
    check_environment(conn, environment, state.snapshot())
    actor = _context.actor(actor_name)
    target = resolve_model(conn, environment, previous_model).model_id
    current = resolve_model(conn, environment, "current").model_id
    check, forced = None, None
    if resolve_model(conn, environment, model_id).model_id == current != target:
        # Only a rollback that can happen is worth a probe; the others are refused below.
        check, forced = _check_target(state, environment, target, f"rollback to {target}", force)
    if forced:
        reason = f"{reason} [{forced}]"
    incident = current_incident(conn, environment)
    result = do_rollback(
        conn,
        environment=environment,
        model_ref=model_id,
        previous_ref=previous_model,
        reason=reason,
        actor=actor,
        incident_id=incident,
    )
    if incident is not None:
        record_event(
            conn,
            "rollback",
            f"rolled back {environment} from {result.from_model} to {result.to_model} by "
            f"{actor.name}: {reason}",
            incident_id=incident,
            actor=actor.name,
            details={"operation_id": result.operation_id},
            public=True,
        )
    if _context.wants_json(ctx, json_output):
        emit_json(
            {
                "environment": result.environment,
                "from": result.from_model,
                "to": result.to_model,
                "moves": [
                    {
                        "alias": c.alias,
                        "from": c.from_model,
                        "to": c.to_model,
                        "history_id": c.history_id,
                    }
                    for c in result.changes
                ],
                "resolved": result.resolved,
                "duration_ms": round(result.duration_ms, 3),
                "audit_seq": result.audit_seq,
                "operation_id": result.operation_id,
                "target_check": check.to_json() if check else None,
                "forced": bool(forced),
            }
        )
        return
    out = console()
    out.print(
        f"[bold green]Rolled back {environment}[/bold green] in "
        f"{result.duration_ms:.1f} ms (operation {result.operation_id})"
    )
    for change in result.changes:
        out.print(
            f"  {change.alias:<16} {change.from_model or '-'} -> {change.to_model}", markup=False
        )
    if result.resolved:
        out.print(f"  resolved: {'; '.join(result.resolved)}", markup=False)
    out.print(f"  reason: {reason}", markup=False)
    if check is not None:
        _print_check(check)
    _warn_route(state, environment)
    out.print(
        "  Running gateways apply this within 1 s. Audit entry "
        f"#{result.audit_seq}; see `quality-gates history -e {environment}`."
    )


@click.command()
@click.option(
    "--model-id",
    required=True,
    metavar="MODEL",
    help="The model to make current (a model id or an alias).",
)
@click.option("--reason", required=True, help="Why; kept in the history and the audit log.")
@click.option(
    "--gate-run",
    metavar="RUN_ID",
    help="Refuse unless this gate run (offline, pipeline, canary, ...) approved the model.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Move even when the model fails its health check (recorded as forced).",
)
@environment_option("production")
@actor_option
@json_option
@click.pass_context
def promote(
    ctx: click.Context,
    model_id: str,
    reason: str,
    gate_run: str | None,
    force: bool,
    environment: str,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Make --model-id `current`; the model it replaces becomes previous-stable, so a
    `rollback --previous-model previous-stable` undoes it."""
    from quality_gates.cli._output import console, emit_json, warn
    from quality_gates.errors import NotFound, RegistryError
    from quality_gates.registry import check_environment, resolve_model
    from quality_gates.registry import promote as do_promote
    from quality_gates.store.gate_runs import get_run

    state = _context.state(ctx)
    conn = state.conn()
    check_environment(conn, environment, state.snapshot())
    candidate = resolve_model(conn, environment, model_id).model_id
    if gate_run is not None:
        run = get_run(conn, gate_run)
        if run is None:
            raise NotFound(
                f"--gate-run {gate_run}: no such gate run",
                hint="see the run id printed by offline/pipeline/canary, or `gates list`",
            )
        if run.model_id != candidate or run.verdict != "APPROVE":
            raise RegistryError(
                f"gate run {run.id} gave {run.verdict or 'no verdict'} for {run.model_id}; "
                f"promoting {candidate} needs an APPROVE for it"
            )
    check, forced = _check_target(state, environment, candidate, f"promote {candidate}", force)
    if forced:
        reason = f"{reason} [{forced}]"
    changes = do_promote(
        conn,
        environment=environment,
        candidate_ref=candidate,
        reason=reason + (f" (gate run {gate_run})" if gate_run else ""),
        actor=_context.actor(actor_name),
    )
    if _context.wants_json(ctx, json_output):
        emit_json(
            {
                "environment": environment,
                "to": candidate,
                "gate_run": gate_run,
                "moves": [
                    {"alias": c.alias, "from": c.from_model, "to": c.to_model} for c in changes
                ],
                "target_check": check.to_json(),
                "forced": bool(forced),
            }
        )
        return
    out = console()
    out.print(f"[bold green]Promoted {candidate} in {environment}[/bold green]", highlight=False)
    for change in changes:
        out.print(
            f"  {change.alias:<16} {change.from_model or '-'} -> {change.to_model}", markup=False
        )
    out.print(f"  reason: {reason}", markup=False)
    _print_check(check)
    _warn_route(state, environment)
    out.print("  Running gateways apply this within 1 s; undo with `rollback`.")
    env_config = state.loaded().config.environment(environment)
    if env_config is not None and env_config.chain_for(candidate) is None:
        warn(
            f"{candidate} has no failover chain in {environment}: when its provider fails, "
            f"its requests fail; add one under environments.{environment}.failover_chains"
        )


@click.command()
@environment_option(help_text="Only this environment.")
@click.option("--alias", help="Only this alias.")
@click.option("--limit", "-n", type=click.IntRange(1, 100000), default=20, show_default=True)
@json_option
@click.pass_context
def history(
    ctx: click.Context, environment: str | None, alias: str | None, limit: int, json_output: bool
) -> None:
    """Deployments and alias moves, newest first."""
    from quality_gates.cli._output import console, emit_json, iso_utc, local_time, table
    from quality_gates.registry import check_environment
    from quality_gates.store import registry as sql

    state = _context.state(ctx)
    conn = state.conn()
    if environment:
        check_environment(conn, environment, state.snapshot())
    moves = sql.history(conn, environment=environment, alias=alias, limit=limit)
    if _context.wants_json(ctx, json_output):
        emit_json(
            [
                {
                    "id": m.id,
                    "time": iso_utc(m.ts),
                    "environment": m.environment,
                    "alias": m.alias,
                    "from": m.from_model,
                    "to": m.to_model,
                    "operation": m.operation,
                    "actor": m.actor,
                    "source": m.source,
                    "reason": m.reason,
                    "duration_ms": m.duration_ms,
                    "operation_id": m.operation_id,
                    "incident_id": m.incident_id,
                }
                for m in moves
            ]
        )
        return
    if not moves:
        console().print("No alias moves recorded yet.")
        return
    view = table(
        "time",
        "env",
        "alias",
        "move",
        "kind",
        "actor",
        "source",
        "reason",
        title="Alias history (newest first)",
    )
    for m in moves:
        kind = (
            "deploy"
            if m.alias == "current" and m.operation in ("promote", "set")
            else (m.operation)
        )
        view.add_row(
            local_time(m.ts),
            m.environment,
            m.alias,
            f"{m.from_model or '-'} -> {m.to_model}",
            kind,
            m.actor,
            m.source,
            m.reason,
        )
    console().print(view)


def _check_target(
    state: _context.CliContext, environment: str, model_id: str, action: str, force: bool
) -> tuple[TargetCheck, str | None]:
    """The target model's health check; raises (exit 1) when unhealthy and not forced."""
    from quality_gates.gateway.failover import live_probe
    from quality_gates.gateway.target_checks import check_model, refuse_unhealthy

    config = state.loaded().config
    check = check_model(state.conn(), config, environment, model_id, probe=live_probe(config))
    return check, refuse_unhealthy(action, [check], force=force)


def _print_check(check: TargetCheck) -> None:
    from quality_gates.cli._output import console, warn

    console().print(f"  target check: {check.evidence()}", markup=False)
    for note in [*check.problems, *check.notes]:
        warn(note)


def _warn_route(state: _context.CliContext, environment: str) -> None:
    """Say where `current`'s requests go now, and warn when weights pick another model."""
    from quality_gates.cli._output import console, warn
    from quality_gates.gateway.route_view import alias_route

    route = alias_route(state.conn(), state.loaded().config, environment)
    if route is None:
        return
    console().print(f"  route: {route.describe()}", markup=False)
    warning = route.warning()
    if warning:
        warn(warning)
