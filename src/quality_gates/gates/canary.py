"""The canary gate: give the candidate a share of live traffic through the gateway, compare
it with the baseline over the same window, then promote it or take its share away.

The contract with the gateway is the runtime setting `canary` of the environment:
{"model": candidate id, "percent": 5.0, "baseline": model id or null, "run_id": gate run}.
Every change of it is audited and bumps the control version, so running gateways apply it
within a second. The gateway records canary-routed requests with canary = 1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quality_gates.errors import RegistryError, UsageError
from quality_gates.gates import canary_analysis, runs
from quality_gates.gates.verdict import GateVerdict
from quality_gates.registry import Actor, promote, resolve_model
from quality_gates.store import audit, settings
from quality_gates.store import gate_runs as store_runs
from quality_gates.store.db import Connection
from quality_gates.store.registry import bump_control_version, get_alias
from quality_gates.units import capped_duration

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

SETTING = "canary"
Sleep = Callable[[float], Awaitable[None]]


def active(conn: Connection, environment: str) -> dict[str, Any] | None:
    """The canary setting in force for the environment, if any."""
    value = settings.get(conn, environment, SETTING)
    return value if isinstance(value, dict) else None


def set_share(
    conn: Connection,
    environment: str,
    *,
    model: str,
    percent: float,
    baseline: str | None,
    run_id: str | None,
    actor: str,
    reason: str,
    action: str,
) -> dict[str, Any]:
    """Write the canary setting, audit it and bump the control version (one transaction)."""
    if not 0 <= percent <= 100:
        raise UsageError(f"canary traffic {percent}% is not between 0 and 100")
    value = {"model": model, "percent": float(percent), "baseline": baseline, "run_id": run_id}
    with conn.write():
        previous = settings.put(conn, environment, SETTING, value, actor=actor)
        bump_control_version(conn, environment)
        audit.append(
            conn,
            actor=actor,
            action=f"canary.{action}",
            target=f"{environment}/{model}",
            details={"from": previous, "to": value, "reason": reason},
        )
    return value


def clear(conn: Connection, environment: str, *, actor: str, reason: str) -> Any:
    """Remove the canary setting (after a promotion), audited."""
    with conn.write():
        previous = settings.clear(conn, environment, SETTING)
        bump_control_version(conn, environment)
        audit.append(
            conn,
            actor=actor,
            action="canary.clear",
            target=environment,
            details={"previous": previous, "reason": reason},
        )
    return previous


def update_traffic(conn: Connection, environment: str, percent: float, actor: str) -> Any:
    """`--update-traffic P`: change the share of the canary in force."""
    current = active(conn, environment)
    if current is None:
        raise RegistryError(f"no canary is active in {environment}", hint="start one with canary")
    return set_share(
        conn,
        environment,
        model=current["model"],
        percent=percent,
        baseline=current.get("baseline"),
        run_id=current.get("run_id"),
        actor=actor,
        reason=f"manual traffic change to {percent:g}%",
        action="traffic",
    )


def rollback(conn: Connection, environment: str, actor: str, reason: str) -> dict[str, Any]:
    """`--rollback`: share 0 now; the running gate run (if any) is recorded as REJECT."""
    current = active(conn, environment)
    if current is None:
        raise RegistryError(f"no canary is active in {environment}")
    value = set_share(
        conn,
        environment,
        model=current["model"],
        percent=0.0,
        baseline=current.get("baseline"),
        run_id=current.get("run_id"),
        actor=actor,
        reason=reason,
        action="rollback",
    )
    run = store_runs.get_run(conn, current["run_id"]) if current.get("run_id") else None
    if run is not None and run.status == "running":
        runs.finish(
            conn,
            run,
            status="completed",
            verdict=GateVerdict.REJECT.value,
            summary={"kind": "canary", "verdict": "REJECT", "reasons": [reason]},
            reasons=[reason],
        )
    return value


@dataclass
class CanaryOptions:
    """What `canary` was asked to do."""

    model_ref: str
    environment: str = "production"
    traffic: float | None = None
    duration_s: float | None = None
    baseline_ref: str = "current"
    looks: int | None = None
    actor: str = "unknown"
    promote: bool = True
    parent_id: str | None = None


@dataclass
class CanaryResult:
    """How a canary ended."""

    run_id: str
    verdict: GateVerdict
    summary: dict[str, Any]
    looks: list[canary_analysis.Look] = field(default_factory=list)


def _check(m: canary_analysis.MetricResult) -> dict[str, Any]:
    """One metric of the last look as a report check."""
    if m.outcome == "nodata":
        return {
            "name": m.metric,
            "verdict": "CONDITIONAL",
            "critical": m.critical,
            "informational": True,
            "detail": f"no data ({m.n_canary} canary, {m.n_baseline} baseline values)",
        }
    verdict = "APPROVE" if m.outcome == "pass" else ("REJECT" if m.critical else "CONDITIONAL")
    return {
        "name": m.metric,
        "verdict": verdict,
        "critical": m.critical,
        "detail": f"{m.test}: canary {m.canary:.4g} vs baseline {m.baseline:.4g}, effect "
        f"{m.effect:+.1%} (matters from {m.min_effect:.0%} {m.bad}), p {m.p_value:.2g}, "
        f"n {m.n_canary}/{m.n_baseline}" + ("" if m.critical else " (not critical)"),
    }


async def run_canary(
    conn: Connection,
    config: QualityGatesConfig,
    options: CanaryOptions,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.time,
    on_look: Callable[[canary_analysis.Look], None] | None = None,
) -> CanaryResult:
    """Start the canary, analyse it at each look, promote or roll back, and store the run."""
    spec = config.gates.canary
    env = options.environment
    candidate = resolve_model(conn, env, options.model_ref).model_id
    baseline = resolve_model(conn, env, options.baseline_ref).model_id
    if candidate == baseline:
        raise UsageError(f"the candidate {candidate} is already the baseline in {env}")
    existing = active(conn, env)
    if existing and existing.get("percent", 0) > 0 and existing.get("model") != candidate:
        raise RegistryError(
            f"another canary ({existing['model']} at {existing['percent']:g}%) is active in {env}",
            hint="finish it, or `canary --rollback` it first",
        )
    percent = options.traffic if options.traffic is not None else spec.traffic
    duration = capped_duration(
        options.duration_s if options.duration_s is not None else spec.duration
    )
    looks = options.looks or spec.looks
    expected_current = get_alias(conn, env, "current")
    inputs = {
        "candidate": candidate,
        "baseline": baseline,
        "percent": percent,
        "duration_s": duration,
        "looks": looks,
        "canary": spec.model_dump(mode="json"),
    }
    run = runs.start(
        conn,
        run_id=runs.new_run_id("canary"),
        kind="canary",
        environment=env,
        model_id=candidate,
        baseline=baseline,
        actor=options.actor,
        inputs=inputs,
        parent_id=options.parent_id,
    )
    set_share(
        conn,
        env,
        model=candidate,
        percent=percent,
        baseline=baseline,
        run_id=run.id,
        actor=options.actor,
        reason=f"canary gate {run.id}",
        action="start",
    )
    started = clock()
    done: list[canary_analysis.Look] = []
    verdict: GateVerdict | None = None
    try:
        for index in range(1, looks + 1):
            await sleep(max(0.0, started + duration * index / looks - clock()))
            rows = store_runs.request_rows(conn, env, started, clock() + 1, [candidate, baseline])
            look = canary_analysis.analyze(
                rows,
                canary_model=candidate,
                baseline_model=baseline,
                metrics=spec.metrics,
                alpha=spec.alpha,
                look=index,
                looks=looks,
                min_requests=spec.min_requests,
            )
            done.append(look)
            if on_look is not None:
                on_look(look)
            verdict = look.verdict(final=index == looks)
            if verdict is not None:
                break
    except (asyncio.CancelledError, KeyboardInterrupt):
        rollback(conn, env, options.actor, f"canary {run.id} interrupted; share set to 0")
        raise
    final = done[-1]
    verdict = verdict or final.verdict(final=True) or GateVerdict.CONDITIONAL
    reasons = [
        f"{m.metric}: canary {m.canary:.4g} vs baseline {m.baseline:.4g} "
        f"(effect {m.effect:+.2%}, p {m.p_value:.2g}, minimum {m.min_effect:.0%})"
        for m in final.failures
        if m.canary is not None and m.baseline is not None and m.effect is not None
    ]
    if not final.enough_data:
        reasons.append(
            f"too little traffic: {final.metrics[0].n_canary if final.metrics else 0} canary "
            f"requests, {spec.min_requests} needed per side"
        )
    action = "kept at its share"
    if verdict is GateVerdict.APPROVE and options.promote:
        promote(
            conn,
            environment=env,
            candidate_ref=candidate,
            reason=f"canary {run.id} passed",
            actor=Actor(options.actor, "canary"),
            expect_current=expected_current.model_id if expected_current else None,
        )
        clear(conn, env, actor=options.actor, reason=f"{candidate} promoted by canary {run.id}")
        action = f"promoted: {candidate} is now current in {env}"
    elif verdict is not GateVerdict.APPROVE:
        rollback(
            conn, env, options.actor, f"canary {run.id}: {verdict.value}: {'; '.join(reasons)}"
        )
        action = "rolled back: canary share set to 0"
    summary = {
        "kind": "canary",
        "verdict": verdict.value,
        "headline": f"{verdict.value}: {candidate} vs {baseline} at {percent:g}% over "
        f"{len(done)} look(s); {action}",
        "reasons": reasons,
        "action": action,
        "model": candidate,
        "baseline": baseline,
        "environment": env,
        "looks": [look.to_json() for look in done],
        "early_stop": len(done) < looks,
        "checks": [_check(m) for m in final.metrics],
        "run_id": run.id,
    }
    current = store_runs.get_run(conn, run.id)
    if current is not None and current.status == "running":
        runs.finish(
            conn, run, status="completed", verdict=verdict.value, summary=summary, reasons=reasons
        )
    else:  # rollback() already closed it as REJECT; keep the full summary
        with conn.write():
            store_runs.update_run(
                conn,
                run.id,
                status="completed",
                verdict=verdict.value,
                summary=summary,
                finished_at=clock(),
            )
    return CanaryResult(run.id, verdict, summary, done)
