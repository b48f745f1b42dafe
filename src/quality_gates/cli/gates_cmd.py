"""`offline`: evaluate a model on a dataset, paired against a baseline, with a verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, environment_option, json_option
from quality_gates.cli._gates import output_option


def register(group: click.Group) -> None:
    """Add `offline` and `performance`."""
    group.add_command(offline)
    group.add_command(performance)


@click.command()
@click.option("--model-id", metavar="MODEL", help="Candidate (id or alias); not with --resume.")
@click.option("--dataset", metavar="PATH", help="JSONL, JSON, CSV or YAML (default: built-in).")
@click.option("--baseline", metavar="MODEL|RUN", help="Model (id or alias) or stored run id.")
@click.option(
    "--baseline-run",
    metavar="RUN_ID",
    help="Compare with a stored offline run's answers instead of calling a baseline.",
)
@click.option("-j", "--concurrency", type=click.IntRange(1, 1024), help="Parallel calls.")
@click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True)
@click.option("--limit", type=click.IntRange(1), help="Only the first N items.")
@click.option(
    "--reuse-answers",
    is_flag=True,
    help="Reuse stored answers to identical requests instead of asking again (said in the "
    "verdict; a provider change behind the same model id goes unseen).",
)
@click.option(
    "--allow-errors",
    is_flag=True,
    help="Score failed calls as wrong answers instead of ending with exit 4 when a side's "
    "calls fail more often than gates.max_error_share.",
)
@click.option("--no-cache", is_flag=True, hidden=True, help="Deprecated no-op: answers are fresh.")
@click.option("--dry-run", is_flag=True, help="Estimate calls and cost; call nothing.")
@click.option("--resume", metavar="RUN_ID", help="Finish an interrupted run.")
@environment_option("production")
@output_option
@actor_option
@json_option
@click.pass_context
def offline(
    ctx: click.Context,
    model_id: str | None,
    dataset: str | None,
    baseline: str | None,
    baseline_run: str | None,
    concurrency: int | None,
    repeat: int,
    limit: int | None,
    reuse_answers: bool,
    allow_errors: bool,
    no_cache: bool,
    dry_run: bool,
    resume: str | None,
    environment: str,
    outputs: tuple[Path, ...],
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Offline evaluation: exit 0 APPROVE, 1 REJECT, 3 CONDITIONAL, 4 could not complete."""
    from quality_gates.cli._gates import finish, gate_progress, run_async
    from quality_gates.cli._output import console, emit_json, info
    from quality_gates.errors import UsageError
    from quality_gates.gates.offline import OfflineOptions, estimate, run_offline
    from quality_gates.gates.outputs import check_paths
    from quality_gates.registry import check_environment

    check_paths(list(outputs))
    if not model_id and not resume:
        raise UsageError("offline needs --model-id (or --resume RUN_ID)")
    if no_cache and reuse_answers:
        raise UsageError("--no-cache and --reuse-answers contradict each other")
    if no_cache:
        info("--no-cache is no longer needed: answers are fresh unless --reuse-answers")
    state = _context.state(ctx)
    conn = state.conn()
    config = state.loaded().config
    check_environment(conn, environment, state.snapshot())
    config_dir = state.config_file()[0].parent
    options = OfflineOptions(
        model_ref=model_id or "",
        environment=environment,
        dataset=dataset,
        baseline=baseline,
        baseline_run=baseline_run,
        concurrency=concurrency,
        repeat=repeat,
        limit=limit,
        reuse_answers=reuse_answers,
        allow_errors=allow_errors,
        resume=resume,
        actor=_context.actor(actor_name).name,
    )
    wants_json = _context.wants_json(ctx, json_output)
    if dry_run:
        plan = estimate(conn, config, options, config_dir=config_dir)
        if wants_json:
            emit_json(plan)
        else:
            _render_estimate(plan)
        return
    with gate_progress(enabled=not wants_json) as progress:
        result = run_async(
            run_offline(conn, config, options, config_dir=config_dir, progress=progress)
        )
    if not wants_json:
        console().print(_execution_line(result.summary.get("execution", {})), markup=False)
    finish(ctx, result.summary, outputs, json_output=json_output, records=result.records_path)


def _execution_line(execution: dict[str, Any]) -> str:
    cache = execution.get("cache", {})
    retries = sum(execution.get("retries", {}).values())
    errors = execution.get("errors", {})
    reuse = (
        f"reused {cache.get('hits', 0)} stored answers, asked {cache.get('misses', 0)} afresh"
        if cache.get("reuse_answers")
        else "every answer asked afresh"
    )
    return (
        f"{execution.get('answers_this_session', 0)} answers in "
        f"{execution.get('seconds', 0):.1f} s "
        f"at -j {execution.get('concurrency')}; {reuse}; {retries} retries"
        + (
            "; failed calls " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items()))
            if errors
            else ""
        )
        + (
            f"; 429 back-off to {execution['aimd']['lowest_limit']}"
            if execution.get("aimd", {}).get("decreases")
            else ""
        )
    )


def _render_estimate(plan: dict[str, Any]) -> None:
    from quality_gates.cli._output import console, table

    out = console()
    out.print(f"Dry run on {plan['dataset']}: {plan['items']} items x {plan['repeat']} repeat(s)")
    view = table("role", "model", "calls", "cached", "input tokens", "est. cost")
    for role, stats in plan["per_role"].items():
        view.add_row(
            role,
            plan["models"][role],
            str(stats["calls"]),
            str(stats["cached"]),
            f"{stats['input_tokens']:,}",
            f"${stats['cost']:.4f}",
        )
    out.print(view)
    out.print(
        f"Estimated ${plan['estimated_cost_usd']:.4f} (at most ${plan['max_cost_usd']:.4f} if "
        f"every answer used max_tokens). {plan['note']}."
    )


@click.command()
@click.option("--model-id", required=True, metavar="MODEL", help="Model (id or alias).")
@click.option(
    "--duration",
    default="5",
    show_default=True,
    metavar="DURATION",
    help="Load length, or the telemetry window in production (bare number: minutes).",
)
@click.option("--rps", type=click.FloatRange(0, min_open=True), help="Open loop: requests/s.")
@click.option("--concurrency", type=click.IntRange(1, 100000), help="Closed loop: workers.")
@click.option(
    "--target",
    type=click.Choice(["gateway", "provider"]),
    help="Where load goes (default: gates.performance.target).",
)
@click.option(
    "--source",
    type=click.Choice(["telemetry", "load"]),
    help="Default: telemetry in production, load elsewhere.",
)
@environment_option("production")
@output_option
@actor_option
@json_option
@click.pass_context
def performance(
    ctx: click.Context,
    model_id: str,
    duration: str,
    rps: float | None,
    concurrency: int | None,
    target: str | None,
    source: str | None,
    environment: str,
    outputs: tuple[Path, ...],
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Performance gate: P50/P95/P99, throughput, errors by class, TTFT vs the thresholds."""
    from quality_gates.cli._gates import finish, run_async
    from quality_gates.errors import UsageError
    from quality_gates.gates.outputs import check_paths
    from quality_gates.gates.performance import PerformanceOptions, run_performance
    from quality_gates.registry import check_environment
    from quality_gates.units import parse_duration

    check_paths(list(outputs))
    if rps and concurrency:
        raise UsageError("--rps (open loop) and --concurrency (closed loop) exclude each other")
    try:
        seconds = parse_duration(duration, bare_unit="m")
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}") from None
    state = _context.state(ctx)
    conn = state.conn()
    check_environment(conn, environment, state.snapshot())
    options = PerformanceOptions(
        model_ref=model_id,
        environment=environment,
        duration_s=seconds,
        rps=rps,
        concurrency=concurrency,
        target=target,
        source=source,
        actor=_context.actor(actor_name).name,
    )
    from quality_gates.cli._gates import gate_progress

    with gate_progress(enabled=not _context.wants_json(ctx, json_output)) as progress:
        _verdict, summary = run_async(
            run_performance(conn, state.loaded().config, options, progress=progress)
        )
    finish(ctx, summary, outputs, json_output=json_output)
