"""The canary gate: give the candidate a share of alias `current`'s live traffic through the
gateway, compare it with the rest of that traffic (the baseline) over the same window, then
promote it or take its share away.

The contract with the gateway is the runtime setting `canary` of the environment:
{"model": candidate id, "percent": 5.0, "baseline": model id or null, "run_id": gate run}.
Every change of it is audited and bumps the control version, so running gateways apply it
within a second; the window opens when their heartbeats report it in force. The gateway
records canary-routed requests with canary = 1 and every upstream attempt of each request,
which is what each side is judged on (`canary_samples`); sizing the sample up front and
measuring the share served live in `canary_traffic`, the report in `canary_report`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quality_gates.errors import RegistryError, TooLittleTraffic, UsageError
from quality_gates.gates import (
    canary_analysis,
    canary_report,
    canary_samples,
    canary_traffic,
    runs,
)
from quality_gates.gates.verdict import GateVerdict
from quality_gates.gateway._routing import CANARY_ALIAS, deployment_id
from quality_gates.registry import Actor, promote, resolve_model
from quality_gates.store import audit, settings
from quality_gates.store import gate_runs as store_runs
from quality_gates.store.db import Connection
from quality_gates.store.registry import bump_control_version, control_version, get_alias
from quality_gates.units import capped_duration

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

SETTING = "canary"
APPLY_WITHIN_S = 1.0  # running gateways apply a control change within this
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


async def applied(
    conn: Connection,
    config: QualityGatesConfig,
    environment: str,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.time,
) -> tuple[int, list[str]]:
    """After a share change: (running gateways, those whose heartbeat does not yet report
    it in force), waiting at most a second past two heartbeats for them to."""
    lagging = await canary_traffic.wait_applied(
        conn,
        environment,
        control_version(conn, environment),
        timeout=APPLY_WITHIN_S + 2 * config.gateway.heartbeat,
        sleep=sleep,
        clock=clock,
    )
    return len(canary_traffic.live_gateways(conn, environment, clock())), lagging


@dataclass
class CanaryOptions:
    """What `canary` was asked to do."""

    model_ref: str
    environment: str = "production"
    traffic: float | None = None
    duration_s: float | None = None
    baseline_ref: str = CANARY_ALIAS
    looks: int | None = None
    actor: str = "unknown"
    promote: bool = True
    parent_id: str | None = None
    require_sample: bool = False  # refuse to start when the sample plan falls short


@dataclass
class CanaryResult:
    """How a canary ended."""

    run_id: str
    verdict: GateVerdict
    summary: dict[str, Any]
    looks: list[canary_analysis.Look] = field(default_factory=list)


def _forced_open(
    conn: Connection, config: QualityGatesConfig, env: str, model: str
) -> tuple[str, dict[str, Any]] | None:
    """(deployment, setting) when the model's deployment is forced open."""
    spec = config.model(model)
    if spec is None:
        return None
    deployment = deployment_id(spec.provider, spec.id)
    forced = canary_traffic.forced_open(conn, env, deployment)
    return None if forced is None else (deployment, forced)


def _candidate_reachable(
    conn: Connection, config: QualityGatesConfig, env: str, model: str
) -> None:
    """Refuse a candidate whose deployment is forced open: the canary would send it nothing
    and judge the failover instead."""
    found = _forced_open(conn, config, env, model)
    if found is not None:
        deployment, forced = found
        raise RegistryError(
            f"the candidate's deployment {deployment} is forced open in {env} "
            f"{canary_traffic.forced_reason(forced)}; every canary request would skip it",
            hint="wait until it is failed back (`quality-gates status`), or clear it with "
            f"`quality-gates breaker --deployment {deployment} --state auto -e {env}`",
        )


def plan(
    conn: Connection, config: QualityGatesConfig, options: CanaryOptions, now: float
) -> tuple[str, str, canary_traffic.SamplePlan]:
    """Check the canary can run and size its sample: (candidate, baseline, sample plan).
    The baseline is the model of alias `current`, whose traffic the canary shares."""
    spec = config.gates.canary
    env = options.environment
    candidate = resolve_model(conn, env, options.model_ref).model_id
    baseline = resolve_model(conn, env, options.baseline_ref).model_id
    if candidate == baseline:
        raise UsageError(f"the candidate {candidate} is already the baseline in {env}")
    current = get_alias(conn, env, CANARY_ALIAS)
    if current is None:
        raise RegistryError(f"{env} has no {CANARY_ALIAS} alias whose traffic to share")
    if candidate == current.model_id:
        raise UsageError(
            f"{candidate} is already {CANARY_ALIAS} in {env}: a canary gives a share of "
            f"{CANARY_ALIAS}'s traffic to another model"
        )
    if baseline != current.model_id:
        raise UsageError(
            f"--baseline {options.baseline_ref} ({baseline}): the canary takes its share of "
            f"alias {CANARY_ALIAS} and compares it with the rest of that traffic, which "
            f"{current.model_id} answers",
            hint=f"leave --baseline out: it defaults to {CANARY_ALIAS}",
        )
    existing = active(conn, env)
    if existing and existing.get("percent", 0) > 0 and existing.get("model") != candidate:
        raise RegistryError(
            f"another canary ({existing['model']} at {existing['percent']:g}%) is active in {env}",
            hint="finish it, or `canary --rollback` it first",
        )
    _candidate_reachable(conn, config, env, candidate)
    percent = options.traffic if options.traffic is not None else spec.traffic
    duration = capped_duration(
        options.duration_s if options.duration_s is not None else spec.duration
    )
    sample = canary_traffic.plan_sample(
        conn,
        env,
        alias=CANARY_ALIAS,
        percent=percent,
        duration_s=duration,
        min_requests=spec.min_requests,
        now=now,
    )
    return candidate, baseline, sample


async def run_canary(
    conn: Connection,
    config: QualityGatesConfig,
    options: CanaryOptions,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.time,
    on_look: Callable[[canary_analysis.Look], None] | None = None,
    on_plan: Callable[[canary_traffic.SamplePlan], None] | None = None,
) -> CanaryResult:
    """Start the canary, analyse it at each look, promote or roll back, and store the run."""
    spec = config.gates.canary
    env = options.environment
    candidate, baseline, sample = plan(conn, config, options, clock())
    if on_plan is not None:
        on_plan(sample)
    if options.require_sample and not sample.enough:
        raise TooLittleTraffic(
            f"canary not started: {sample.describe()}",
            hint="--force starts it anyway",
        )
    percent, duration = sample.percent, sample.duration_s
    looks = options.looks or spec.looks
    expected_current = get_alias(conn, env, CANARY_ALIAS)
    inputs = {
        "candidate": candidate,
        "baseline": baseline,
        "percent": percent,
        "duration_s": duration,
        "looks": looks,
        "canary": spec.model_dump(mode="json"),
        "sample_plan": sample.to_json(),
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
    version = control_version(conn, env)
    done: list[canary_analysis.Look] = []
    shares: list[canary_traffic.ShareCheck] = []
    verdict: GateVerdict | None = None
    try:
        # The window opens once every running gateway reports the share in force (their
        # heartbeats say so), so no request it counts was routed before the share held.
        await canary_traffic.wait_applied(
            conn,
            env,
            version,
            timeout=APPLY_WITHIN_S + 2 * config.gateway.heartbeat,
            sleep=sleep,
            clock=clock,
        )
        started = clock()
        for index in range(1, looks + 1):
            await sleep(max(0.0, started + duration * index / looks - clock()))
            now = clock()
            rows = store_runs.alias_requests(conn, env, CANARY_ALIAS, started, now + 1)
            canary_side, base_side = canary_samples.split(
                rows, candidate=candidate, baseline=baseline
            )
            look = canary_analysis.analyze(
                canary_side,
                base_side,
                metrics=spec.metrics,
                alpha=spec.alpha,
                look=index,
                looks=looks,
                min_requests=spec.min_requests,
            )
            share = canary_traffic.measure_share(
                conn,
                env,
                percent=percent,
                canary=canary_side.requests,
                total=canary_side.requests + base_side.requests,
                version=version,
                applied_by=started,
                now=now,
            )
            look.share = share.to_json()
            shares.append(share)
            done.append(look)
            if on_look is not None:
                on_look(look)
            verdict = look.verdict(final=index == looks)
            if verdict is not None:
                break
    except (asyncio.CancelledError, KeyboardInterrupt):
        rollback(conn, env, options.actor, f"canary {run.id} interrupted; share set to 0")
        raise
    final, share = done[-1], shares[-1]
    verdict = verdict or final.verdict(final=True) or GateVerdict.CONDITIONAL
    reasons = canary_report.reasons(final, share, spec.min_requests)
    notes = []
    found = _forced_open(conn, config, env, candidate)
    if found is not None:  # e.g. the watch plane failed its provider over meanwhile
        notes.append(
            f"the candidate's deployment {found[0]} was forced open during the canary "
            f"{canary_traffic.forced_reason(found[1])}: canary requests since then skipped it "
            f"({canary_samples.NOT_TRIED})"
        )
    if share.off and verdict is GateVerdict.APPROVE:
        verdict = GateVerdict.CONDITIONAL  # not judged at the weight it was given
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
        set_share(
            conn,
            env,
            model=candidate,
            percent=0.0,
            baseline=baseline,
            run_id=run.id,
            actor=options.actor,
            reason=f"canary {run.id}: {verdict.value}: {'; '.join(reasons)}",
            action="rollback",
        )
        action = "rolled back: canary share set to 0"
    summary = canary_report.summary(
        verdict,
        reasons,
        action,
        environment=env,
        candidate=candidate,
        baseline=baseline,
        sample=sample,
        share=share,
        looks=done,
        planned_looks=looks,
        run_id=run.id,
        notes=notes,
    )
    runs.finish(
        conn, run, status="completed", verdict=verdict.value, summary=summary, reasons=reasons
    )
    return CanaryResult(run.id, verdict, summary, done)
