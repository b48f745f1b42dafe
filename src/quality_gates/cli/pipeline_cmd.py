"""`pipeline` chains the gates into one verdict; `batch` compares several models."""

from __future__ import annotations

from pathlib import Path

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, json_option
from quality_gates.cli._gates import output_option


def register(group: click.Group) -> None:
    """Add `pipeline` and `batch`."""
    group.add_command(pipeline)
    group.add_command(batch)


@click.command()
@click.argument("kind", type=click.Choice(["dev", "staging", "prod", "custom"]))
@click.option("--model-id", required=True, metavar="MODEL", help="Candidate (id or alias).")
@click.option("--environment", "-e", metavar="ENV", help="For custom pipelines.")
@click.option("--skip-offline", is_flag=True)
@click.option("--skip-canary", is_flag=True)
@click.option("--skip-performance", is_flag=True)
@click.option("--auto-rollback", is_flag=True, help="Revert a promotion that fails monitoring.")
@click.option("--monitoring", metavar="DURATION", default="0", help="Watch after promotion "
              "(bare number: minutes).")  # fmt: skip
@click.option("--dataset", metavar="PATH", help="Offline dataset (default: gates.dataset).")
@click.option(
    "--allow-errors",
    is_flag=True,
    help="Score failed calls as wrong answers instead of exit 4 past gates.max_error_share.",
)
@output_option
@actor_option
@json_option
@click.pass_context
def pipeline(
    ctx: click.Context,
    kind: str,
    model_id: str,
    environment: str | None,
    skip_offline: bool,
    skip_canary: bool,
    skip_performance: bool,
    auto_rollback: bool,
    monitoring: str,
    dataset: str | None,
    allow_errors: bool,
    outputs: tuple[Path, ...],
    actor_name: str | None,
    json_output: bool,
) -> None:
    """dev | staging: offline, performance; prod: offline, canary, monitoring; custom: all.
    Exit 0 APPROVE, 1 REJECT, 3 CONDITIONAL, 4 could not complete."""
    from quality_gates.cli._gates import finish, gate_progress, run_async
    from quality_gates.errors import UsageError
    from quality_gates.gates.outputs import check_paths
    from quality_gates.gates.pipeline import PipelineOptions, run_pipeline
    from quality_gates.units import parse_duration

    check_paths(list(outputs))
    try:
        monitoring_s = parse_duration(monitoring, bare_unit="m")
    except ValueError as exc:
        raise UsageError(f"--monitoring: {exc}") from None
    skip = {
        name
        for name, flag in (
            ("offline", skip_offline),
            ("canary", skip_canary),
            ("performance", skip_performance),
        )
        if flag
    }
    state = _context.state(ctx)
    conn = state.conn()
    options = PipelineOptions(
        kind=kind,
        model_ref=model_id,
        environment=environment,
        skip=skip,
        auto_rollback=auto_rollback,
        monitoring_s=monitoring_s,
        dataset=dataset,
        allow_errors=allow_errors,
        actor=_context.actor(actor_name, "pipeline").name,
    )
    with gate_progress(enabled=not _context.wants_json(ctx, json_output)) as progress:
        _verdict, summary = run_async(
            run_pipeline(
                conn,
                state.loaded().config,
                options,
                config_dir=state.config_file()[0].parent,
                progress=progress,
            )
        )
    finish(ctx, summary, outputs, json_output=json_output)


@click.command()
@click.option("--models", metavar="A,B", help="Comma-separated model ids or aliases.")
@click.option(
    "--config-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML: models, dataset, baseline, environment, limit.",
)
@click.option("--dataset", metavar="PATH")
@click.option("--baseline", metavar="MODEL", help="Compare each model with this one.")
@click.option("--environment", "-e", default="production", show_default=True, metavar="ENV")
@click.option("--limit", type=click.IntRange(1), help="Only the first N items.")
@click.option(
    "--reuse-answers",
    is_flag=True,
    help="Reuse stored answers to identical requests (said in the report).",
)
@click.option(
    "--allow-errors",
    is_flag=True,
    help="Score failed calls as wrong answers instead of exit 4 past gates.max_error_share.",
)
@output_option
@actor_option
@json_option
@click.pass_context
def batch(
    ctx: click.Context,
    models: str | None,
    config_file: Path | None,
    dataset: str | None,
    baseline: str | None,
    environment: str,
    limit: int | None,
    reuse_answers: bool,
    allow_errors: bool,
    outputs: tuple[Path, ...],
    actor_name: str | None,
    json_output: bool,
) -> None:
    """Offline evaluation of several models on one dataset, with a comparison report."""
    from quality_gates.cli._gates import finish, gate_progress, run_async
    from quality_gates.errors import UsageError
    from quality_gates.gates.outputs import check_paths
    from quality_gates.gates.pipeline import run_batch

    check_paths(list(outputs))
    names = [m.strip() for m in (models or "").split(",") if m.strip()]
    if config_file is not None:
        import yaml

        try:
            spec = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise UsageError(f"{config_file}: not valid YAML: {exc}") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("models"), list):
            raise UsageError(f"{config_file}: expected a mapping with a 'models' list")
        names += [str(m) for m in spec["models"]]
        dataset = dataset or spec.get("dataset")
        baseline = baseline or spec.get("baseline")
        environment = spec.get("environment", environment)
        limit = limit or spec.get("limit")
    state = _context.state(ctx)
    conn = state.conn()
    with gate_progress(enabled=not _context.wants_json(ctx, json_output)) as progress:
        _verdict, summary = run_async(
            run_batch(
                conn,
                state.loaded().config,
                names,
                environment=environment,
                dataset=dataset,
                baseline=baseline,
                config_dir=state.config_file()[0].parent,
                actor=_context.actor(actor_name).name,
                limit=limit,
                reuse_answers=reuse_answers,
                allow_errors=allow_errors,
                progress=progress,
            )
        )
    finish(ctx, summary, outputs, json_output=json_output)
