"""The offline gate: a dataset through the candidate (and a baseline), scored, compared.

`run_offline` streams items through the engine, writes each answer to the run's JSONL as it
completes, keeps only per-item numbers in memory, stores per-item results in the store and
decides APPROVE / CONDITIONAL / REJECT from paired statistics and the environment's thresholds.

Every answer is fresh unless the run asked to reuse stored ones (`reuse_answers`, or a
baseline run named by id), and the verdict says how many were reused and from when. A side
whose calls failed more often than `gates.max_error_share` is not compared: the run ends
ERROR (exit 4) naming the side and its error classes, unless `allow_errors` scores the
failed calls as wrong answers, which the verdict then says.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_gates.errors import GateError, GateInterrupted, UsageError
from quality_gates.gates import analysis, outputs, runs
from quality_gates.gates.cache import ResponseCache, request_key
from quality_gates.gates.datasets import DatasetItem, DatasetSource, locate, read_items
from quality_gates.gates.engine import Caller, ModelTarget, Unit, run_units
from quality_gates.gates.progress import ProgressSink
from quality_gates.gates.scorers import Scorer, ScorerContext, build, safety_scorers
from quality_gates.gates.tally import Tally
from quality_gates.gates.targets import ProviderFactory, Targets
from quality_gates.gates.verdict import GateVerdict
from quality_gates.providers import ChatRequest
from quality_gates.store import gate_runs as store_runs
from quality_gates.store.db import Connection

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

STORE_BATCH = 500
COMPARED = ["accuracy", "toxicity_rate", "pii_rate", "error_rate", "latency_mean_ms", "cost_mean"]
CHARS_PER_TOKEN = 4.0
REUSE_SOURCE = "the answer store (--reuse-answers)"
COUNTED_DATASET_BYTES = 20 * 2**20  # counted up front for the progress total; larger ones stream


@dataclass
class OfflineOptions:
    """What `offline` was asked to do."""

    model_ref: str
    environment: str = "production"
    dataset: str | None = None
    baseline: str | None = None
    concurrency: int | None = None
    repeat: int = 1
    limit: int | None = None
    reuse_answers: bool = False
    allow_errors: bool = False
    baseline_run: str | None = None
    resume: str | None = None
    actor: str = "unknown"
    parent_id: str | None = None


@dataclass
class OfflineResult:
    """A finished (or estimated) offline run."""

    run_id: str | None
    verdict: GateVerdict
    summary: dict[str, Any]
    results_path: Path | None = None
    records_path: Path | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    model_id: str
    baseline_model: str | None
    baseline_run: store_runs.GateRunRow | None
    source: DatasetSource
    inputs: dict[str, Any]


def state_dir(config_dir: Path) -> Path:
    """`.quality-gates` beside the config: runs, cache."""
    return config_dir / ".quality-gates"


def _plan(
    conn: Connection, config: QualityGatesConfig, options: OfflineOptions, config_dir: Path
) -> _Plan:
    from quality_gates.registry import resolve_model

    settings = config.gates
    model_id = resolve_model(conn, options.environment, options.model_ref).model_id
    baseline_model, baseline_run = None, None
    if options.baseline and options.baseline_run:
        raise UsageError("--baseline and --baseline-run exclude each other")
    if options.baseline_run:
        baseline_run = store_runs.get_run(conn, options.baseline_run)
        if baseline_run is None:
            raise UsageError(
                f"--baseline-run {options.baseline_run}: no stored run with that id",
                hint="every gate prints its run id last (`run offline-...`); --json has run_id",
            )
    if baseline_run is not None or options.baseline:
        if baseline_run is None:
            baseline_run = store_runs.get_run(conn, str(options.baseline))
        if baseline_run is not None:
            if baseline_run.kind != "offline" or baseline_run.status != "completed":
                raise UsageError(
                    f"run {baseline_run.id} is a {baseline_run.status} {baseline_run.kind} run; "
                    "a baseline run must be a completed offline run"
                )
        else:
            baseline_model = resolve_model(
                conn, options.environment, str(options.baseline)
            ).model_id
            if baseline_model == model_id:
                raise UsageError(
                    f"--baseline resolves to {model_id}, the candidate itself",
                    hint="compare with another model, or a stored run id",
                )
    if options.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    source = locate(options.dataset or settings.dataset, base=config_dir)
    inputs = {
        "model": model_id,
        "model_ref": options.model_ref,
        "environment": options.environment,
        "baseline_model": baseline_model,
        "baseline_run": baseline_run.id if baseline_run else None,
        "dataset": source.display,
        "dataset_sha256": source.digest(),
        "repeat": options.repeat,
        "limit": options.limit,
        "gates": settings.model_dump(mode="json", exclude={"canary", "performance"}),
        "thresholds": _thresholds(config, options.environment),
        "models": {
            m.id: m.model_dump(mode="json")
            for m in config.models
            if m.id in (model_id, baseline_model)
        },
    }
    return _Plan(model_id, baseline_model, baseline_run, source, inputs)


def _thresholds(config: QualityGatesConfig, environment: str) -> dict[str, Any]:
    env = config.environment(environment)
    return env.thresholds.model_dump(mode="json") if env else {}


def estimate(
    conn: Connection,
    config: QualityGatesConfig,
    options: OfflineOptions,
    *,
    config_dir: Path,
) -> dict[str, Any]:
    """`--dry-run`: items, calls, tokens and cost before spending anything (streams once)."""
    plan = _plan(conn, config, options, config_dir)
    settings = config.gates
    cache = ResponseCache(state_dir(config_dir) / "cache", reuse=options.reuse_answers)
    roles = {"candidate": plan.model_id}
    if plan.baseline_model:
        roles["baseline"] = plan.baseline_model
    out_tokens = settings.max_tokens or 256
    items = 0
    per_role = {r: {"calls": 0, "cached": 0, "input_tokens": 0, "cost": 0.0} for r in roles}
    for item in read_items(plan.source, limit=options.limit):
        items += 1
        in_tokens = int(sum(len(m.content) for m in item.messages) / CHARS_PER_TOKEN) + 4
        expected_out = (
            int(len(str(item.expected)) / CHARS_PER_TOKEN) + 8 if item.expected else out_tokens
        )
        for role, model_id in roles.items():
            model = config.model(model_id)
            provider = model.provider if model else ""
            for repeat in range(options.repeat):
                request = ChatRequest(
                    model=model.provider_model if model else model_id,
                    messages=item.messages,
                    temperature=settings.temperature,
                    max_tokens=settings.max_tokens,
                )
                stats = per_role[role]
                if cache.peek(request_key(provider, request, f"r{repeat}" if repeat else "")):
                    stats["cached"] += 1
                    continue
                stats["calls"] += 1
                stats["input_tokens"] += in_tokens
                if model:
                    stats["cost"] += model.cost(in_tokens, min(expected_out, out_tokens))
    total = sum(float(s["cost"]) for s in per_role.values())
    worst = total
    for role, model_id in roles.items():
        model = config.model(model_id)
        if model is not None:
            worst += model.cost(0, out_tokens) * float(per_role[role]["calls"])
    return {
        "dataset": plan.source.display,
        "items": items,
        "repeat": options.repeat,
        "models": roles,
        "per_role": per_role,
        "estimated_cost_usd": round(total, 6),
        "max_cost_usd": round(worst, 6),
        "note": "tokens estimated at 4 characters per token; output at the expected answer's "
        "length (max_tokens bounds the maximum)",
    }


def _read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a results file; a torn last line (killed mid-write) is dropped."""
    if not path.exists():
        return
    with path.open("r+", encoding="utf-8") as handle:
        good = 0
        for line in iter(handle.readline, ""):
            if not line.endswith("\n"):
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            good = handle.tell()
            yield record
        handle.truncate(good)


async def run_offline(
    conn: Connection,
    config: QualityGatesConfig,
    options: OfflineOptions,
    *,
    config_dir: Path,
    factory: ProviderFactory | None = None,
    progress: ProgressSink | None = None,
) -> OfflineResult:
    """Run the offline gate end to end; the run, its items and its verdict are stored."""
    settings = config.gates
    previous: store_runs.GateRunRow | None = None
    if options.resume:
        previous = store_runs.get_run(conn, options.resume)
        if previous is None or previous.kind != "offline":
            raise UsageError(f"no offline run {options.resume!r} to resume")
        if previous.status == "completed":
            raise UsageError(f"run {previous.id} already completed; nothing to resume")
        stored = previous.inputs
        options = OfflineOptions(
            model_ref=stored.get("model_ref", stored["model"]),
            environment=previous.environment,
            dataset=stored.get("dataset_path"),
            baseline=stored.get("baseline_run") or stored.get("baseline_model"),
            concurrency=options.concurrency,
            repeat=stored["repeat"],
            limit=stored.get("limit"),
            reuse_answers=options.reuse_answers,
            allow_errors=options.allow_errors,
            actor=options.actor,
            parent_id=previous.parent_id,
        )
    plan = _plan(conn, config, options, config_dir)
    plan.inputs["dataset_path"] = None if plan.source.builtin else str(plan.source.path)
    runs_dir = state_dir(config_dir) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    tally = Tally()
    done: set[tuple[str, str, int]] = set()
    reused: dict[str, dict[str, Any]] = {}
    if previous is not None:
        run = previous
        expected_hash = runs.config_hash(plan.inputs)
        if run.config_hash != expected_hash:
            raise UsageError(
                f"run {run.id} was made with other inputs (dataset, models or gate settings "
                "changed since); start a new run instead of resuming"
            )
        records_path = Path(run.results_path or runs_dir / f"{run.id}.jsonl")
        for record in _read_records(records_path):
            tally.add_record(record)
            done.add((record["role"], record["id"], int(record.get("repeat", 0))))
            if record.get("cached"):
                _count_reuse(reused, record)
    else:
        run_id = runs.new_run_id("offline")
        records_path = runs_dir / f"{run_id}.jsonl"
        run = runs.start(
            conn,
            run_id=run_id,
            kind="offline",
            environment=options.environment,
            model_id=plan.model_id,
            baseline=plan.baseline_model or (plan.baseline_run.id if plan.baseline_run else None),
            actor=options.actor,
            inputs=plan.inputs,
            parent_id=options.parent_id,
            results_path=str(records_path),
        )
    concurrency = options.concurrency or settings.concurrency
    cache = ResponseCache(state_dir(config_dir) / "cache", reuse=options.reuse_answers)
    caller = Caller(
        concurrency=concurrency, cache=cache, max_attempts=settings.max_attempts, seed=settings.seed
    )
    targets = Targets(config, factory)
    role_targets: dict[str, ModelTarget] = {"candidate": targets.target(plan.model_id)}
    if plan.baseline_model:
        role_targets["baseline"] = targets.target(plan.baseline_model)
    caller.targets = {t.model_id: t for t in role_targets.values()}
    if settings.judge_model:
        caller.targets[settings.judge_model] = targets.target(settings.judge_model)
    ctx = ScorerContext(caller.model_call, settings.judge_model, settings.judge_k)
    safety, notes = safety_scorers(settings.moderation, settings.pii, ctx)
    built: dict[str, list[Scorer]] = {}
    default_spec = {"type": settings.default_scorer}

    def scorers_for(item: DatasetItem) -> list[Scorer]:
        specs = list(item.assertions) or [default_spec]
        key = json.dumps(specs, sort_keys=True, default=str)
        found = built.get(key)
        if found is None:
            if len(built) > 1000:
                built.clear()
            found = built[key] = [build(spec, ctx) for spec in specs]
        return found

    def units() -> Iterator[Unit]:
        for item in read_items(plan.source, limit=options.limit):
            for repeat in range(options.repeat):
                for role in role_targets:
                    if (role, item.id, repeat) not in done:
                        yield Unit(item, role, repeat)

    pending: list[dict[str, Any]] = []
    finished = 0
    failed = 0
    started = time.perf_counter()
    if progress is not None:
        progress.start(
            f"offline {plan.model_id}"
            + (f" vs {plan.baseline_model}" if plan.baseline_model else ""),
            _expected_answers(plan, options, len(role_targets), len(done)),
        )

    def flush() -> None:
        if pending:
            with conn.write():
                store_runs.add_items(conn, run.id, pending)
            pending.clear()

    with records_path.open("a", encoding="utf-8") as sink:

        def on_record(record: dict[str, Any]) -> None:
            nonlocal finished, failed
            sink.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            sink.flush()
            tally.add_record(record)
            pending.append(record)
            finished += 1
            failed += record.get("error_class") is not None
            if record.get("cached"):
                _count_reuse(reused, record)
            if len(pending) >= STORE_BATCH:
                flush()
            if progress is not None:
                progress.update(finished, failed)

        try:
            await run_units(
                units(),
                caller=caller,
                targets=role_targets,
                scorers_for=scorers_for,
                safety=safety,
                on_record=on_record,
                concurrency=concurrency,
                temperature=settings.temperature,
                max_tokens=settings.max_tokens,
            )
        except (asyncio.CancelledError, KeyboardInterrupt):
            flush()
            runs.finish(
                conn,
                run,
                status="interrupted",
                verdict=None,
                summary={"reasons": [f"interrupted after {finished} answers"]},
            )
            raise GateInterrupted(
                f"interrupted: {finished + len(done)} answers of run {run.id} are saved",
                hint=f"finish it with `quality-gates offline --resume {run.id}`",
            ) from None
        except UsageError:
            flush()
            runs.finish(conn, run, status="failed", verdict=None, summary={"reasons": []})
            raise
        finally:
            await targets.close()
            for group in built.values():
                for scorer in group:
                    await scorer.close()
    flush()
    if plan.baseline_run is not None:
        baseline_records = store_runs.items(conn, plan.baseline_run.id, "candidate")
        for record in baseline_records:
            record["role"] = "baseline"
            tally.add_record(record)
        finished_at = plan.baseline_run.finished_at or plan.baseline_run.started_at
        reused["baseline"] = {
            "answers": len(baseline_records),
            "source": f"run {plan.baseline_run.id}",
            "oldest": finished_at,
            "newest": finished_at,
        }
    elapsed = time.perf_counter() - started
    summary, decision = _summarize(config, options, plan, tally, notes, reused)
    summary["execution"] = {
        "seconds": round(elapsed, 3),
        "answers_this_session": finished,
        "resumed_answers": len(done),
        "concurrency": concurrency,
        "calls": caller.stats.calls,
        "retries": caller.stats.retries,
        "errors": caller.stats.errors,
        "aimd": {
            "decreases": caller.limit.decreases,
            "lowest_limit": caller.limit.min_seen,
            "final_limit": round(caller.limit.limit, 2),
        },
        "cache": {
            "enabled": cache.enabled,
            "reuse_answers": options.reuse_answers,
            "hits": cache.hits,
            "misses": cache.misses,
            "hit_rate": round(cache.hit_rate, 4),
        },
        "reused": reused,
    }
    summary["run_id"] = run.id
    runs.finish(
        conn,
        run,
        status="completed",
        verdict=decision.verdict.value,
        summary=summary,
        reasons=decision.reasons,
    )
    return OfflineResult(
        run.id, decision.verdict, summary, records_path=records_path, reasons=decision.reasons
    )


def _expected_answers(plan: _Plan, options: OfflineOptions, roles: int, done: int) -> int | None:
    """Answers this session will produce, when the dataset is small enough to count first."""
    from quality_gates.gates.datasets import count_items

    if plan.source.path.stat().st_size >= COUNTED_DATASET_BYTES:
        return None
    return max(0, count_items(plan.source, limit=options.limit) * options.repeat * roles - done)


def _count_reuse(reused: dict[str, dict[str, Any]], record: dict[str, Any]) -> None:
    """Count a reused answer under its role, keeping when the oldest and newest were stored."""
    entry = reused.setdefault(
        str(record["role"]),
        {"answers": 0, "source": REUSE_SOURCE, "oldest": None, "newest": None},
    )
    entry["answers"] += 1
    stored = record.get("stored_at")
    if isinstance(stored, (int, float)):
        entry["oldest"] = stored if entry["oldest"] is None else min(entry["oldest"], stored)
        entry["newest"] = stored if entry["newest"] is None else max(entry["newest"], stored)


def _reuse_note(role: str, model: str | None, entry: dict[str, Any]) -> str:
    """`candidate llama: 46 answers reused from the answer store, stored 2026-12-05 00:10 UTC`."""
    from datetime import UTC, datetime

    def when(ts: float | None) -> str:
        if ts is None:
            return "an unknown time"
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")

    span = when(entry["oldest"])
    if entry["newest"] is not None and when(entry["newest"]) != span:
        span += f" to {when(entry['newest'])}"
    return (
        f"{role} {model or ''}: {entry['answers']} answers reused from {entry['source']}, "
        f"recorded {span}; they were not asked again"
    ).replace("  ", " ")


def _summarize(
    config: QualityGatesConfig,
    options: OfflineOptions,
    plan: _Plan,
    tally: Tally,
    notes: list[str],
    reused: dict[str, dict[str, Any]],
) -> tuple[dict[str, Any], analysis.Decision]:
    settings = config.gates
    confidence = 1 - settings.alpha
    as_failures = options.allow_errors
    candidate = analysis.summarize(tally, "candidate", confidence, errors_as_failures=as_failures)
    if not candidate["items"].n:
        raise GateError("the run produced no answers")
    baseline_name = plan.baseline_model or (plan.baseline_run.id if plan.baseline_run else None)
    baseline_summary = None
    sides: dict[str, tuple[str | None, dict[str, analysis.Metric]]] = {
        "candidate": (plan.model_id, candidate)
    }
    if "baseline" in tally.roles:
        baseline_summary = analysis.summarize(
            tally, "baseline", confidence, errors_as_failures=as_failures
        )
        sides["baseline"] = (baseline_name, baseline_summary)
    errors_json, unmeasured = _error_shares(tally, sides, settings.max_error_share)
    measured = {"accuracy", "error_rate"}
    if settings.moderation != "none" and not any("toxicity" in n for n in notes):
        measured.add("toxicity_rate")
    compared: list[analysis.Comparison] = []
    checks: list[analysis.ThresholdCheck] = []
    extra_notes: list[str] = []
    if unmeasured and not as_failures:
        decision = analysis.Decision(
            GateVerdict.ERROR,
            [
                *unmeasured,
                "the comparison and the threshold checks on quality were not made: a side "
                "that did not answer is not a side (rerun when the provider answers, or pass "
                "--allow-errors to score failed calls as wrong answers)",
            ],
        )
    else:
        if baseline_summary is not None:
            metrics = [m for m in COMPARED if m in measured or m not in ("toxicity_rate",)]
            if not settings.pii or any("PII" in n for n in notes):
                metrics.remove("pii_rate")
            if any(o.score not in (0.0, 1.0) for o in tally.flat("candidate")):
                metrics.insert(1, "score")
            compared = analysis.compare(
                tally, settings, metrics=metrics, errors_as_failures=as_failures
            )
        checks = analysis.check_thresholds(
            candidate,
            _thresholds(config, options.environment),
            measured=measured,
            policy=settings.threshold_policy,
            confidence=confidence,
        )
        decision = analysis.decide(compared, checks)
        if unmeasured:
            extra_notes.append(
                "failed calls scored as wrong answers (--allow-errors): " + "; ".join(unmeasured)
            )
    accuracy = candidate["accuracy"]
    failed = int(candidate["errors"].value or 0)
    scope = "calls" if as_failures else "answered items"
    headline = f"{decision.verdict.value}: {plan.model_id} accuracy " + (
        f"{accuracy.value:.1%} [{accuracy.low:.1%}, {accuracy.high:.1%}] on {accuracy.n} {scope}"
        if accuracy.value is not None and accuracy.low is not None and accuracy.high is not None
        else "not measured (no answer)"
    )
    if failed:
        headline += f" ({failed} failed calls " + (
            "scored as wrong)" if as_failures else "counted apart)"
        )
    if baseline_summary is not None:
        base_accuracy = baseline_summary["accuracy"].value
        headline += f" vs {baseline_name} " + (
            f"{base_accuracy:.1%}" if base_accuracy is not None else "not measured"
        )
        base_failed = int(baseline_summary["errors"].value or 0)
        if base_failed:
            headline += f" ({base_failed} failed calls)"
    headline += "; " + _basis(reused)
    metrics_json = {"candidate": _metrics_json(candidate)}
    if baseline_summary is not None:
        metrics_json["baseline"] = _metrics_json(baseline_summary)
    measured_by = {
        "profanity": "alt-profanity-check: profanity and insults, not threats or harm",
        "judge": f"the judge model {settings.judge_model} as moderator",
        "none": "nothing (moderation: none)",
    }[settings.moderation]
    reuse_notes = [
        _reuse_note(role, sides[role][0] if role in sides else None, entry)
        for role, entry in sorted(reused.items())
    ]
    policy_note = (
        f"thresholds pass only when the whole {confidence:.0%} interval clears them "
        "(gates.threshold_policy: evidence)"
        if settings.threshold_policy == "evidence"
        else "thresholds pass on the point estimate (gates.threshold_policy: point)"
    )
    summary = {
        "kind": "offline",
        "verdict": decision.verdict.value,
        "headline": headline,
        "reasons": decision.reasons,
        "suggested_items": decision.sample_size,
        "model": plan.model_id,
        "baseline": baseline_name,
        "environment": options.environment,
        "dataset": plan.source.display,
        "items": candidate["items"].n,
        "paired_items": len(tally.paired_ids()),
        "repeat": options.repeat,
        "metrics": metrics_json,
        "errors": errors_json,
        "errors_as_failures": as_failures,
        "reused_answers": {role: entry["answers"] for role, entry in reused.items()},
        "comparisons": [c.to_json() for c in compared],
        "thresholds": [c.to_json() for c in checks],
        "notes": [
            *reuse_notes,
            *extra_notes,
            *notes,
            policy_note,
            f"toxicity is measured by {measured_by}",
        ],
        "alpha": settings.alpha,
    }
    summary["checks"] = outputs.checks_of(summary)
    return summary, decision


def _error_shares(
    tally: Tally,
    sides: dict[str, tuple[str | None, dict[str, analysis.Metric]]],
    max_share: float,
) -> tuple[dict[str, Any], list[str]]:
    """Failed calls per side (count, share, classes) and a line for each side over the limit."""
    out: dict[str, Any] = {}
    over: list[str] = []
    for role, (name, metrics) in sides.items():
        rate = metrics["error_rate"]
        failed = int(metrics["errors"].value or 0)
        share = rate.value or 0.0
        classes = analysis.error_classes(tally, role)
        out[role] = {"failed": failed, "calls": rate.n, "share": share, "classes": classes}
        if share > max_share:
            detail = ", ".join(f"{k} {v}" for k, v in classes.items())
            over.append(
                f"{role} {name} could not be measured: {failed} of {rate.n} calls failed "
                f"({share:.1%}; {detail}), over gates.max_error_share {max_share:.0%}"
            )
    return out, over


def _basis(reused: dict[str, dict[str, Any]]) -> str:
    """What the answers behind the verdict are: all fresh, or how many were reused."""
    if not reused:
        return "every answer fresh"
    return "reused " + ", ".join(
        f"{entry['answers']} {role} answers" for role, entry in sorted(reused.items())
    )


def _metrics_json(metrics: dict[str, analysis.Metric]) -> dict[str, Any]:
    return {
        name: {
            "value": analysis.finite(m.value),
            "n": m.n,
            "low": analysis.finite(m.low),
            "high": analysis.finite(m.high),
        }
        for name, m in metrics.items()
    }
