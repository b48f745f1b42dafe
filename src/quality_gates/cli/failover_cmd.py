"""`failover`, `failback` and `breaker`: move traffic between providers, live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, environment_option, json_option

if TYPE_CHECKING:
    from quality_gates.gateway.failover import Step, TrafficMove

MODES = ("immediate", "gradual", "canary")


def register(group: click.Group) -> None:
    """Add `failover`, `failback` and `breaker`."""
    group.add_command(failover)
    group.add_command(failback)
    group.add_command(breaker)


def _pause(value: str | None, default: float) -> float:
    from quality_gates.units import parse_duration

    if value is None:
        return default
    try:
        return parse_duration(value, bare_unit="s")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--pause") from None


def _progress(json_output: bool) -> Any:
    from quality_gates.cli._output import info
    from quality_gates.gateway._routing import describe_weights

    def show(step: Step) -> None:
        if json_output:
            return
        check = step.check
        verdict = (
            ""
            if check is None
            else (f" - check {'ok' if check.healthy else 'FAILED'}: {check.reason}")
        )
        info(f"step {step.label}: {describe_weights(step.weights)}{verdict}")

    return show


def _report(move: TrafficMove, extra: dict[str, Any] | None, json_output: bool) -> int:
    from quality_gates.cli._output import console, emit_json
    from quality_gates.gateway._routing import describe_weights

    if json_output:
        emit_json(
            {
                "operation_id": move.operation_id,
                "action": move.action,
                "mode": move.mode,
                "environment": move.environment,
                "from": move.source,
                "to": move.target,
                "before": move.before,
                "final": move.final,
                "completed": move.completed,
                "outcome": move.outcome,
                "steps": [
                    {
                        "label": s.label,
                        "weights": s.weights,
                        "at": s.at,
                        "check": s.check.to_dict() if s.check else None,
                    }
                    for s in move.steps
                ],
                **(extra or {}),
            }
        )
    else:
        from quality_gates.cli._output import warn

        style = "green" if move.completed else "red"
        console().print(
            f"[{style}]{move.action} {move.outcome}[/{style}]: {move.environment} "
            f"{describe_weights(move.before)} -> {describe_weights(move.final)} "
            f"(operation {move.operation_id})"
        )
        for route in (extra or {}).get("routes", []):
            console().print(f"  route: {route}", markup=False)
        for warning in (extra or {}).get("route_warnings", []):
            warn(str(warning))
    return 0 if move.completed else 1


def _route(state: Any, environment: str, weights: dict[str, float] | None = None) -> dict[str, Any]:
    """Where every alias's requests go after the move (or would go with `weights`), as the
    gateway routes them, and why an alias's model does not answer all of them."""
    from quality_gates.gateway.route_view import alias_routes

    routes = alias_routes(state.conn(), state.loaded().config, environment, weights=weights)
    return {
        "routes": [r.describe() for r in routes],
        "route_warnings": [w for w in (r.warning() for r in routes) if w],
    }


@click.command()
@click.option("--from", "source", required=True, metavar="PROVIDER", help="Provider to leave.")
@click.option("--to", "target", required=True, metavar="PROVIDER", help="Provider to move to.")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="immediate",
    show_default=True,
    help="immediate: one step; gradual: source at 50%, 25%, 0%; canary: target gets "
    "5, 10, 25, 50, 75, 100% with a health check at each step.",
)
@click.option("--reason", required=True, help="Why (kept in the audit log and history).")
@click.option(
    "--pause",
    metavar="DURATION",
    help="Wait between steps before each check [default: gateway.failover_pause].",
)
@click.option(
    "--force",
    is_flag=True,
    help="Move even when the target provider fails its health check (recorded as forced).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the weights and every alias's route the move would give; change nothing.",
)
@environment_option("production")
@actor_option
@json_option
@click.pass_context
def failover(
    ctx: click.Context,
    source: str,
    target: str,
    mode: str,
    reason: str,
    pause: str | None,
    force: bool,
    dry_run: bool,
    environment: str,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Move PROVIDER traffic to another provider, live. Exit 1 if the target fails its
    health check first (live probes, breakers, recent errors; --force overrides) or a check
    stopped it."""
    from quality_gates.cli._output import info, warn
    from quality_gates.gateway.failover import failover as run
    from quality_gates.gateway.failover import live_probe
    from quality_gates.gateway.target_checks import check_provider, refuse_unhealthy

    state = _context.state(ctx)
    config = state.loaded().config
    conn = state.conn()
    json_mode = _context.wants_json(ctx, json_output)
    if dry_run:
        ctx.exit(_dry_run(state, environment, source, target, json_mode))
    probe = live_probe(config)
    if config.provider(target) is not None:
        check = check_provider(conn, config, environment, target, probe=probe)
        forced = refuse_unhealthy(f"failover to {target}", [check], force=force)
        if forced:
            reason = f"{reason} [{forced}]"
        if not json_mode:
            info(f"target check: {check.evidence()}")
            for note in [*check.problems, *check.notes]:
                warn(note)
    move = run(
        conn,
        config,
        environment=environment,
        source=source,
        target=target,
        mode=mode,
        reason=reason,
        actor=_context.actor(actor_name).name,
        probe=probe,
        pause=_pause(pause, config.gateway.failover_pause),
        progress=_progress(json_mode),
    )
    ctx.exit(_report(move, _route(state, environment), json_mode))


def _dry_run(state: Any, environment: str, source: str, target: str, json_mode: bool) -> int:
    """`failover --dry-run`: the weights and routes after the move, with nothing changed."""
    from quality_gates.cli._output import console, emit_json
    from quality_gates.gateway._routing import describe_weights
    from quality_gates.gateway.failover import check_move, current_weights, moved

    config = state.loaded().config
    conn = state.conn()
    check_move(conn, config, environment, source, target)
    before = current_weights(conn, config, environment)
    after = moved(before, source, target, 1.0)
    routes = _route(state, environment, after)
    if json_mode:
        emit_json({"dry_run": True, "before": before, "after": after, **routes})
        return 0
    console().print(
        f"dry run: failover {source} -> {target} in {environment} would set "
        f"{describe_weights(before)} -> {describe_weights(after)}; nothing changed",
        markup=False,
    )
    for route in routes["routes"]:
        console().print(f"  route: {route}", markup=False)
    for warning in routes["route_warnings"]:
        console().print(f"  {warning}", markup=False)
    return 0


@click.command()
@click.option(
    "--provider",
    "provider",
    metavar="PROVIDER",
    help="The provider to bring traffic back to.",
)
@click.option("--original-provider", "legacy_provider", hidden=True, metavar="PROVIDER")
@click.option(
    "--health-threshold",
    default="99%",
    show_default=True,
    help="Success rate of probes and recent calls it must reach first.",
)
@click.option("--mode", type=click.Choice(MODES), default="canary", show_default=True)
@click.option(
    "--probes",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="Live probes counted in the health rate.",
)
@click.option("--reason", default="", help="Why (default: names the failover it undoes).")
@click.option(
    "--pause",
    metavar="DURATION",
    help="Wait between steps before each check [default: gateway.failover_pause].",
)
@environment_option("production")
@actor_option
@json_option
@click.pass_context
def failback(
    ctx: click.Context,
    provider: str | None,
    legacy_provider: str | None,
    health_threshold: str,
    mode: str,
    probes: int,
    reason: str,
    pause: str | None,
    environment: str,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Restore the weights from before the last failover away from PROVIDER, once it is
    healthy. Exit 1 when it is below the threshold or a check stopped the restore."""
    from quality_gates.cli._output import info
    from quality_gates.gateway.failover import failback as run
    from quality_gates.gateway.failover import live_probe
    from quality_gates.units import parse_ratio

    if provider and legacy_provider and provider != legacy_provider:
        raise click.UsageError("--provider and --original-provider name different providers")
    provider = provider or legacy_provider
    if not provider:
        raise click.UsageError("failback needs --provider PROVIDER (the one to bring back)")
    try:
        threshold = parse_ratio(health_threshold)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--health-threshold") from None
    state = _context.state(ctx)
    config = state.loaded().config
    json_mode = _context.wants_json(ctx, json_output)
    move, health = run(
        state.conn(),
        config,
        environment=environment,
        provider=provider,
        threshold=threshold,
        mode=mode,
        reason=reason,
        actor=_context.actor(actor_name).name,
        probe=live_probe(config),
        pause=_pause(pause, config.gateway.failover_pause),
        probes=probes,
        progress=_progress(json_mode),
    )
    if not json_mode:
        info(
            f"{provider}: {health['success_rate']:.1%} healthy ({health['probe_successes']}/"
            f"{health['probes']} probes, {health['recent_successes']}/"
            f"{health['recent_attempts']} recent calls), threshold {threshold:.1%}"
        )
    ctx.exit(_report(move, {"health": health, **_route(state, environment)}, json_mode))


@click.command()
@click.option(
    "--deployment",
    required=True,
    metavar="PROVIDER/MODEL",
    help="The deployment, e.g. bedrock/claude-3-5-haiku.",
)
@click.option(
    "--state",
    "forced",
    type=click.Choice(["open", "closed", "auto"]),
    required=True,
    help="open: no traffic; closed: traffic whatever its health; auto: the breaker decides again.",
)
@click.option("--reason", default="", help="Why (kept in the audit log).")
@click.option(
    "--for",
    "for_",
    metavar="DURATION",
    help="End the forced state after this long (e.g. 30m); every gateway returns the breaker "
    "to automatic then.",
)
@environment_option("production")
@actor_option
@json_option
@click.pass_context
def breaker(
    ctx: click.Context,
    deployment: str,
    forced: str,
    reason: str,
    for_: str | None,
    environment: str,
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Force a deployment's circuit breaker open or closed on every gateway, live."""
    from quality_gates.cli._output import console, emit_json
    from quality_gates.errors import UsageError
    from quality_gates.gateway.runtime import force_breaker

    state = _context.state(ctx)
    config = state.loaded().config
    known = [f"{m.provider}/{m.id}" for m in config.models]
    if deployment not in known:
        raise UsageError(f"unknown deployment {deployment!r}", hint=f"known: {', '.join(known)}")
    until = None
    if for_ is not None:
        import time

        from quality_gates.units import parse_duration

        if forced == "auto":
            raise UsageError("--for goes with --state open or closed, not auto")
        try:
            until = time.time() + parse_duration(for_, bare_unit="m")
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--for") from None
    previous = force_breaker(
        state.conn(),
        environment=environment,
        deployment=deployment,
        state=None if forced == "auto" else forced,
        reason=reason,
        actor=_context.actor(actor_name).name,
        until=until,
    )
    if _context.wants_json(ctx, json_output):
        emit_json(
            {
                "deployment": deployment,
                "environment": environment,
                "state": forced,
                "until": until,
                "previous": previous,
            }
        )
        return
    ends = ""
    if until is not None:
        from datetime import datetime

        ends = f" until {datetime.fromtimestamp(until).strftime('%H:%M:%S')} (then automatic)"
    console().print(f"{environment} {deployment}: breaker {forced}{ends}", markup=False)
