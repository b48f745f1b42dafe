"""`canary`: a share of live traffic to a candidate, compared with the baseline; then promote
or roll back. `--update-traffic P` and `--rollback` for manual steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, environment_option, json_option
from quality_gates.cli._gates import output_option


def register(group: click.Group) -> None:
    """Add `canary`."""
    group.add_command(canary)


def _duration(value: str | None) -> float | None:
    from quality_gates.errors import UsageError
    from quality_gates.units import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value, bare_unit="m")
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}") from None


@click.command()
@click.option("--model-id", metavar="MODEL", help="Candidate (id or alias).")
@click.option("--traffic", type=click.FloatRange(0, 100, min_open=True), help="Percent share.")
@click.option("--duration", metavar="DURATION", help="How long (bare number: minutes).")
@click.option("--baseline", default="current", show_default=True, metavar="MODEL")
@click.option("--looks", type=click.IntRange(1, 100), help="Interim analyses (early stop).")
@click.option("--no-promote", is_flag=True, help="Report only; leave aliases as they are.")
@click.option(
    "--force",
    is_flag=True,
    help="Start even when the alias's recent rate says the duration cannot reach the "
    "minimum sample.",
)
@click.option("--update-traffic", type=click.FloatRange(0, 100), help="Set the active share.")
@click.option("--rollback", "do_rollback", is_flag=True, help="Set the active share to 0.")
@click.option("--reason", default="manual canary rollback", show_default=True)
@environment_option("production")
@output_option
@actor_option
@json_option
@click.pass_context
def canary(
    ctx: click.Context,
    model_id: str | None,
    traffic: float | None,
    duration: str | None,
    baseline: str,
    looks: int | None,
    no_promote: bool,
    force: bool,
    update_traffic: float | None,
    do_rollback: bool,
    reason: str,
    environment: str,
    outputs: tuple[Path, ...],
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Canary analysis: exit 0 promoted, 1 rolled back, 3 undecided (or too little traffic
    to decide, said before it starts), 4 could not complete."""
    from quality_gates.cli._gates import finish, run_async
    from quality_gates.cli._output import console, emit_json, info
    from quality_gates.errors import UsageError
    from quality_gates.gates import canary as gate
    from quality_gates.gates.outputs import check_paths
    from quality_gates.registry import check_environment

    check_paths(list(outputs))
    state = _context.state(ctx)
    conn = state.conn()
    check_environment(conn, environment, state.snapshot())
    actor = _context.actor(actor_name, "canary").name
    if update_traffic is not None or do_rollback:
        if update_traffic is not None and do_rollback:
            raise UsageError("--update-traffic and --rollback exclude each other")
        value = (
            gate.rollback(conn, environment, actor, reason)
            if do_rollback
            else gate.update_traffic(conn, environment, update_traffic or 0.0, actor)
        )
        gateways, lagging = run_async(gate.applied(conn, state.loaded().config, environment))
        if _context.wants_json(ctx, json_output):
            emit_json(
                {
                    "environment": environment,
                    "canary": value,
                    "gateways": gateways,
                    "not_applied_by": lagging,
                }
            )
        else:
            if not gateways:
                where = f"no gateway runs {environment}: one applies it when it starts"
            elif lagging:
                where = f"not yet in force on {', '.join(lagging)} of {gateways} gateway(s)"
            else:
                where = f"in force on the {gateways} running gateway(s)"
            console().print(
                f"canary in {environment}: {value['model']} at {value['percent']:g}% ({where})",
                markup=False,
            )
        return
    if not model_id:
        raise UsageError("canary needs --model-id (or --update-traffic / --rollback)")
    wants_json = _context.wants_json(ctx, json_output)

    from quality_gates.cli._gates import GateProgress

    progress = GateProgress(enabled=not wants_json)
    seen = {"judged": 0, "failed": 0}
    from quality_gates.units import capped_duration

    length = capped_duration(_duration(duration) or state.loaded().config.gates.canary.duration)

    def on_plan(plan: Any) -> None:
        if plan.enough or force:  # otherwise the refusal says it
            started = "" if plan.enough else " (started anyway: --force)"
            info(f"canary sample{started}: {plan.describe()}")
            progress.start(
                f"canary {model_id} at {traffic or 'the configured'}%",
                None,
                unit="candidate requests judged",
                seconds=length,
            )

    def on_look(look: Any) -> None:
        canary, share = look.sides["canary"], look.share
        seen.update(judged=int(canary["judged"]), failed=int(canary["failures"]))
        progress.update(seen["judged"], seen["failed"])
        if not wants_json:
            failed = ", ".join(m.metric for m in look.failures) or "none"
            info(
                f"look {look.index}/{look.of}: share {share['detail']}; candidate failed "
                f"{canary['failures']} of {canary['judged']} requests that reached it; "
                f"enough data {look.enough_data}; failing: {failed}"
            )

    async def ticking(seconds: float) -> None:
        """The canary's waits, with the progress line kept fresh (time left) meanwhile."""
        import asyncio

        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(1.0, left))
            progress.update(seen["judged"], seen["failed"])

    options = gate.CanaryOptions(
        model_ref=model_id,
        environment=environment,
        traffic=traffic,
        duration_s=_duration(duration),
        baseline_ref=baseline,
        looks=looks,
        actor=actor,
        promote=not no_promote,
        require_sample=not force,
    )
    try:
        result = run_async(
            gate.run_canary(
                conn,
                state.loaded().config,
                options,
                on_look=on_look,
                on_plan=on_plan,
                sleep=ticking,
            )
        )
    finally:
        progress.close()
    finish(ctx, result.summary, outputs, json_output=json_output)
