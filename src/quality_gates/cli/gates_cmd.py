"""`offline`: evaluate a model on a dataset, paired against a baseline, with a verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, environment_option, json_option
from quality_gates.cli._gates import output_option

SMALL_DATASET_BYTES = 20 * 2**20  # counted up front for the progress bar; larger ones stream


def register(group: click.Group) -> None:
    """Add `offline` and `performance`."""
    group.add_command(offline)
    group.add_command(performance)


@click.command()
@click.option("--model-id", metavar="MODEL", help="Candidate (id or alias); not with --resume.")
@click.option("--dataset", metavar="PATH", help="JSONL, JSON, CSV or YAML (default: built-in).")
@click.option("--baseline", metavar="MODEL|RUN", help="Model (id or alias) or stored run id.")
@click.option("-j", "--concurrency", type=click.IntRange(1, 1024), help="Parallel calls.")
@click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True)
@click.option("--limit", type=click.IntRange(1), help="Only the first N items.")
@click.option("--no-cache", is_flag=True, help="Call the models even for cached answers.")
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
    concurrency: int | None,
    repeat: int,
    limit: int | None,
    no_cache: bool,
    dry_run: bool,
    resume: str | None,
    environment: str,
    outputs: tuple[Path, ...],
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Offline evaluation: exit 0 APPROVE, 1 REJECT, 3 CONDITIONAL, 4 could not complete."""
    from quality_gates.cli._gates import finish, progress_bar, run_async
    from quality_gates.cli._output import console, emit_json
    from quality_gates.errors import UsageError
    from quality_gates.gates.datasets import count_items, locate
    from quality_gates.gates.offline import OfflineOptions, estimate, run_offline
    from quality_gates.gates.outputs import check_paths
    from quality_gates.registry import check_environment

    check_paths(list(outputs))
    if not model_id and not resume:
        raise UsageError("offline needs --model-id (or --resume RUN_ID)")
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
        concurrency=concurrency,
        repeat=repeat,
        limit=limit,
        use_cache=not no_cache,
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
    total = None
    source = locate(dataset or config.gates.dataset, base=config_dir)
    if not resume and source.path.stat().st_size < SMALL_DATASET_BYTES:
        roles = 2 if baseline else 1
        total = count_items(source, limit=limit) * repeat * roles
    with progress_bar("answering", total, enabled=not wants_json) as update:
        result = run_async(
            run_offline(conn, config, options, config_dir=config_dir, progress=update)
        )
    if not wants_json:
        console().print(_execution_line(result.summary.get("execution", {})), markup=False)
    finish(ctx, result.summary, outputs, json_output=json_output, records=result.records_path)


def _execution_line(execution: dict[str, Any]) -> str:
    cache = execution.get("cache", {})
    retries = sum(execution.get("retries", {}).values())
    errors = execution.get("errors", {})
    return (
        f"{execution.get('answers_this_session', 0)} answers in "
        f"{execution.get('seconds', 0):.1f} s "
        f"at -j {execution.get('concurrency')}; cache {cache.get('hits', 0)} hits / "
        f"{cache.get('misses', 0)} misses; {retries} retries"
        + (f"; errors {errors}" if errors else "")
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
    _verdict, summary = run_async(run_performance(conn, state.loaded().config, options))
    finish(ctx, summary, outputs, json_output=json_output)
