"""Pipelines chain the gates with one environment's thresholds into one verdict, and batch
runs the offline gate over several models into a comparison.

    dev      offline -> performance (load)                      environment development
    staging  offline -> performance (load)                      environment staging
    prod     offline -> canary (promotes) -> monitoring window   environment production
             (performance from telemetry; --auto-rollback reverts a failed promotion)
    custom   every stage not skipped, in --environment

A stage that REJECTs (or cannot complete) stops the pipeline; later stages are recorded as
skipped. Each stage is a gate run of its own whose parent is the pipeline run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_gates.errors import UsageError
from quality_gates.gates import runs
from quality_gates.gates.progress import ProgressSink
from quality_gates.gates.verdict import GateVerdict, combine
from quality_gates.store.db import Connection
from quality_gates.units import capped_duration

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig
    from quality_gates.gates.targets import ProviderFactory

ENVIRONMENTS = {"dev": "development", "staging": "staging", "prod": "production"}
STAGES = {
    "dev": ("offline", "performance"),
    "staging": ("offline", "performance"),
    "prod": ("offline", "canary", "monitoring"),
    "custom": ("offline", "performance", "canary", "monitoring"),
}
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class PipelineOptions:
    """What `pipeline` was asked to do."""

    kind: str
    model_ref: str
    environment: str | None = None
    skip: set[str] = field(default_factory=set)
    auto_rollback: bool = False
    monitoring_s: float = 0.0
    dataset: str | None = None
    performance_duration_s: float | None = None
    allow_errors: bool = False
    actor: str = "unknown"


def _baseline(conn: Connection, environment: str, candidate: str) -> str | None:
    from quality_gates.store.registry import get_alias

    for alias in ("current", "previous-stable"):
        row = get_alias(conn, environment, alias)
        if row is not None and row.model_id != candidate:
            return row.model_id
    return None


async def run_pipeline(
    conn: Connection,
    config: QualityGatesConfig,
    options: PipelineOptions,
    *,
    config_dir: Path,
    factory: ProviderFactory | None = None,
    sleep: Sleep = asyncio.sleep,
    progress: ProgressSink | None = None,
) -> tuple[GateVerdict, dict[str, Any]]:
    """Run the stages in order; returns the combined verdict and the summary. Every stage
    asks its models afresh (no stored answer is reused)."""
    from quality_gates.gates.canary import CanaryOptions, run_canary
    from quality_gates.gates.offline import OfflineOptions, run_offline
    from quality_gates.gates.performance import PerformanceOptions, run_performance
    from quality_gates.registry import Actor, resolve_model, rollback

    if options.kind not in STAGES:
        raise UsageError(f"unknown pipeline {options.kind!r}; use dev, staging, prod or custom")
    env = options.environment or ENVIRONMENTS.get(options.kind)
    if env is None:
        raise UsageError("a custom pipeline needs --environment")
    candidate = resolve_model(conn, env, options.model_ref).model_id
    stages = [s for s in STAGES[options.kind] if s not in options.skip]
    if "monitoring" in stages and (options.monitoring_s <= 0 or "canary" not in stages):
        stages.remove("monitoring")
    parent = runs.start(
        conn,
        run_id=runs.new_run_id("pipeline"),
        kind="pipeline",
        environment=env,
        model_id=candidate,
        baseline=_baseline(conn, env, candidate),
        actor=options.actor,
        inputs={
            "pipeline": options.kind,
            "model": candidate,
            "stages": stages,
            "skipped": sorted(options.skip),
            "auto_rollback": options.auto_rollback,
            "monitoring_s": options.monitoring_s,
        },
    )
    results: list[dict[str, Any]] = []
    stopped = False
    promoted_from: str | None = None
    for stage in stages:
        if stopped:
            stopped_by = "skipped: an earlier stage stopped the pipeline"
            results.append({"stage": stage, "verdict": "SKIPPED", "detail": stopped_by})
            continue
        if stage == "offline":
            baseline = _baseline(conn, env, candidate)
            offline = await run_offline(
                conn,
                config,
                OfflineOptions(
                    model_ref=candidate,
                    environment=env,
                    dataset=options.dataset,
                    baseline=baseline,
                    allow_errors=options.allow_errors,
                    actor=options.actor,
                    parent_id=parent.id,
                ),
                config_dir=config_dir,
                factory=factory,
                progress=progress,
            )
            verdict, summary = offline.verdict, offline.summary
        elif stage == "performance":
            verdict, summary = await run_performance(
                conn,
                config,
                PerformanceOptions(
                    model_ref=candidate,
                    environment=env,
                    source="load",
                    duration_s=options.performance_duration_s,
                    actor=options.actor,
                    parent_id=parent.id,
                ),
                factory=factory,
                progress=progress,
            )
        elif stage == "canary":
            baseline = _baseline(conn, env, candidate)
            if baseline is None:
                results.append({"stage": stage, "verdict": "SKIPPED", "detail": "no baseline"})
                continue
            before = resolve_model(conn, env, "current").model_id
            canary = await run_canary(
                conn,
                config,
                CanaryOptions(
                    model_ref=candidate,
                    environment=env,
                    baseline_ref=baseline,
                    actor=options.actor,
                    parent_id=parent.id,
                ),
                sleep=sleep,
            )
            verdict, summary = canary.verdict, canary.summary
            if verdict is GateVerdict.APPROVE:
                promoted_from = before
        else:  # monitoring: the promoted model's live figures over the window
            await sleep(capped_duration(options.monitoring_s))
            verdict, summary = await run_performance(
                conn,
                config,
                PerformanceOptions(
                    model_ref=candidate,
                    environment=env,
                    source="telemetry",
                    duration_s=options.monitoring_s,
                    actor=options.actor,
                    parent_id=parent.id,
                ),
            )
            if verdict in (GateVerdict.REJECT, GateVerdict.ERROR) and promoted_from:
                if options.auto_rollback:
                    rollback(
                        conn,
                        environment=env,
                        model_ref=candidate,
                        previous_ref=promoted_from,
                        reason=f"pipeline {parent.id}: monitoring failed after promotion",
                        actor=Actor(options.actor, "pipeline"),
                    )
                    summary["action"] = f"rolled back to {promoted_from}"
                else:
                    summary["action"] = "no rollback (--auto-rollback not given)"
        results.append(
            {
                "stage": stage,
                "verdict": verdict.value,
                "run_id": summary.get("run_id"),
                "detail": summary.get("headline", ""),
                "reasons": summary.get("reasons", []),
                "action": summary.get("action"),
            }
        )
        stopped = verdict in (GateVerdict.REJECT, GateVerdict.ERROR)
    decided = [GateVerdict(r["verdict"]) for r in results if r["verdict"] != "SKIPPED"]
    verdict = combine(decided) if decided else GateVerdict.CONDITIONAL
    reasons = [f"{r['stage']}: {reason}" for r in results for reason in r.get("reasons") or []]
    summary = {
        "kind": "pipeline",
        "pipeline": options.kind,
        "verdict": verdict.value,
        "headline": f"{verdict.value}: {options.kind} pipeline for {candidate} in {env}: "
        + ", ".join(f"{r['stage']} {r['verdict']}" for r in results),
        "reasons": reasons,
        "model": candidate,
        "environment": env,
        "stages": results,
        "checks": [
            {
                "name": r["stage"],
                "verdict": r["verdict"] if r["verdict"] != "SKIPPED" else "CONDITIONAL",
                "critical": True,
                "detail": r["detail"],
            }
            for r in results
        ],
        "run_id": parent.id,
    }
    runs.finish(conn, parent, status="completed", verdict=verdict.value, summary=summary,
                reasons=reasons)  # fmt: skip
    return verdict, summary


async def run_batch(
    conn: Connection,
    config: QualityGatesConfig,
    models: list[str],
    *,
    environment: str,
    dataset: str | None,
    baseline: str | None,
    config_dir: Path,
    actor: str,
    limit: int | None = None,
    factory: ProviderFactory | None = None,
    reuse_answers: bool = False,
    allow_errors: bool = False,
    progress: ProgressSink | None = None,
) -> tuple[GateVerdict, dict[str, Any]]:
    """The offline gate for each model on the same dataset, and a comparison table. Answers
    are fresh unless `reuse_answers`."""
    from quality_gates.gates.offline import OfflineOptions, run_offline
    from quality_gates.registry import resolve_model

    if not models:
        raise UsageError("batch needs at least one model (--models a,b or --config-file)")
    resolved = [resolve_model(conn, environment, m).model_id for m in models]
    parent = runs.start(
        conn,
        run_id=runs.new_run_id("batch"),
        kind="batch",
        environment=environment,
        model_id=",".join(resolved)[:200],
        baseline=baseline,
        actor=actor,
        inputs={"models": resolved, "dataset": dataset, "baseline": baseline, "limit": limit},
    )
    rows = []
    verdicts = []
    for model in resolved:
        result = await run_offline(
            conn,
            config,
            OfflineOptions(
                model_ref=model,
                environment=environment,
                dataset=dataset,
                baseline=baseline if baseline and baseline != model else None,
                limit=limit,
                reuse_answers=reuse_answers,
                allow_errors=allow_errors,
                actor=actor,
                parent_id=parent.id,
            ),
            config_dir=config_dir,
            factory=factory,
            progress=progress,
        )
        metrics = result.summary["metrics"]["candidate"]
        verdicts.append(result.verdict)
        rows.append(
            {
                "model": model,
                "verdict": result.verdict.value,
                "accuracy": metrics["accuracy"],
                "latency_p95_ms": metrics["latency_p95_ms"]["value"],
                "cost_total": metrics["cost_total"]["value"],
                "toxicity_rate": metrics["toxicity_rate"]["value"],
                "errors": result.summary["errors"]["candidate"],
                "reused_answers": result.summary["reused_answers"].get("candidate", 0),
                "reasons": result.reasons,
                "run_id": result.run_id,
            }
        )
    ranking = sorted(rows, key=lambda r: -(r["accuracy"]["value"] or 0.0))
    verdict = combine(verdicts)
    summary = {
        "kind": "batch",
        "verdict": verdict.value,
        "headline": "ranking by accuracy on answered items: "
        + ", ".join(f"{r['model']} {_share(r['accuracy']['value'])}" for r in ranking)
        + (
            "; answers reused: "
            + ", ".join(f"{r['model']} {r['reused_answers']}" for r in rows if r["reused_answers"])
            if any(r["reused_answers"] for r in rows)
            else "; every answer fresh"
        ),
        "reasons": [
            f"{r['model']}: {r['verdict']}" + (f" ({r['reasons'][0]})" if r["reasons"] else "")
            for r in rows
            if r["verdict"] != "APPROVE"
        ],
        "model": ",".join(resolved),
        "environment": environment,
        "baseline": baseline,
        "models": rows,
        "checks": [
            {
                "name": r["model"],
                "verdict": r["verdict"],
                "critical": True,
                "detail": f"accuracy {_share(r['accuracy']['value'])} "
                f"[{_share(r['accuracy']['low'])}, {_share(r['accuracy']['high'])}] on "
                f"{r['accuracy']['n']} answered, {r['errors']['failed']} failed calls, "
                f"p95 {r['latency_p95_ms']} ms, cost ${r['cost_total']:.4f}",
            }
            for r in ranking
        ],
        "run_id": parent.id,
    }
    runs.finish(conn, parent, status="completed", verdict=verdict.value, summary=summary)
    return verdict, summary


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"
