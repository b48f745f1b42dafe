"""Automatic remediation: what the watch plane does about a firing alert, leader only.

After each evaluation the evaluator calls `Remediator.react`. It looks at every firing,
unmuted alert whose rule an environment's policy (`remediation:` in the config) names:

- a **rollback trigger** (error rate, latency, a quality drop) moves `current` from the
  failing model back to `previous-stable` with `registry.rollback` (source `auto`, the
  incident's id), after checking the target is not failing itself: no alert of its own, its
  provider in the route, recent probe samples and a fresh golden probe good enough;
- a **failover trigger** (availability, 5xx, 429, slow provider) forces the provider's
  breakers open and moves its traffic weight to the next provider of the current model's
  failover chain that is not failing; `_failback` brings it back in steps later.

Guards against flapping: one action per incident and target; a cool-down per environment
(rollbacks) and per provider (failovers); never onto a failing target; nothing while the
alert is silenced or inhibited; never when an operator's change already moved the target.
Every action (and every skip, once per reason) is a `remediations` row, an audit entry and an
event on the incident's timeline naming the alert that caused it. With `dry_run` the rows,
audit entries and timeline say what would have been done and nothing else changes.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quality_gates import incidents
from quality_gates._jsonlog import log_event
from quality_gates.alerts._rules import AlertState
from quality_gates.alerts._store import load_states
from quality_gates.errors import QualityGatesError
from quality_gates.gateway.runtime import AUTO_REMEDIATION_ACTOR
from quality_gates.remediation import _remedy_store as store
from quality_gates.store import audit
from quality_gates.store import settings as runtime_settings
from quality_gates.store.db import Connection
from quality_gates.store.registry import list_aliases
from quality_gates.units import format_duration

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig, RemediationPolicy
    from quality_gates.signals.probes import GoldenProbes, ModelScore

log = logging.getLogger("quality_gates.watch")
ACTOR = AUTO_REMEDIATION_ACTOR
QUALITY_METRICS = ("quality_score", "quality_score_decrease")
TARGET_QUALITY_WINDOW = 900.0
TARGET_QUALITY_MIN_SAMPLES = 5
VERIFY_ITEMS = 10


@dataclass
class Decision:
    """What to do about one firing alert (or why not)."""

    environment: str
    action: str  # rollback | failover
    target: str  # the failing model (rollback) or provider (failover)
    alert: AlertState
    dry_run: bool
    to: str | None = None  # the model rolled back to, or the provider traffic moves to
    skip: str | None = None
    skip_key: str | None = None  # a stable name for the reason: a skip is recorded once
    verify: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def refuse(self, key: str, reason: str) -> Decision:
        """Mark this decision a skip for `reason` (`key` names the kind of reason)."""
        self.skip_key, self.skip = key, reason
        return self


@dataclass
class ActionReport:
    """What one action did, for logs, tests and `monitor`."""

    environment: str
    action: str
    target: str
    state: str
    summary: str
    incident_id: int | None
    rule: str
    latency_s: float | None = None
    remedy_id: int = 0


def _firing_triggers(
    states: dict[str, AlertState], config: QualityGatesConfig
) -> list[tuple[AlertState, str, RemediationPolicy]]:
    out = []
    for alert in states.values():
        # Info never moves traffic; an alert without an incident (notify-only) neither.
        if not alert.notifiable or alert.incident_id is None or alert.severity == "info":
            continue
        policy = config.remediation.policy(alert.environment)
        if not policy.enabled:
            continue
        if policy.rollback.enabled and alert.rule in policy.rollback.triggers:
            out.append((alert, "rollback", policy))
        if policy.failover.enabled and alert.rule in policy.failover.triggers:
            out.append((alert, "failover", policy))
    out.sort(key=lambda t: (t[0].fired_at or 0.0, t[0].rule))
    return out


def failing_providers(
    states: dict[str, AlertState],
    config: QualityGatesConfig,
    environment: str,
    *,
    pending: bool = False,
) -> dict[str, str]:
    """provider -> the failover-trigger alert firing on it in `environment` (with
    `pending`, also one that holds and waits out its `for`: "rule (pending)")."""
    policy = config.remediation.policy(environment)
    out: dict[str, str] = {}
    for alert in states.values():
        if (
            alert.environment == environment
            and alert.rule in policy.failover.triggers
            and alert.labels.get("provider")
        ):
            if alert.state == "firing":
                out[alert.labels["provider"]] = alert.rule
            elif pending and alert.state == "pending":
                out.setdefault(alert.labels["provider"], f"{alert.rule} (pending)")
    return out


def plan(conn: Connection, config: QualityGatesConfig, now: float) -> list[Decision]:
    """Decisions for every firing trigger alert; guards applied (skips carry their reason)."""
    states = load_states(conn, active_only=True)
    decisions = []
    for alert, action, policy in _firing_triggers(states, config):
        if action == "rollback":
            decision = _plan_rollback(conn, config, states, alert, policy, now)
        else:
            decision = _plan_failover(conn, config, states, alert, policy, now)
        if decision is not None:
            decisions.append(decision)
    return decisions


def _aliases(conn: Connection, environment: str) -> dict[str, str]:
    return {a.name: a.model_id for a in list_aliases(conn, environment)}


def _plan_rollback(
    conn: Connection,
    config: QualityGatesConfig,
    states: dict[str, AlertState],
    alert: AlertState,
    policy: RemediationPolicy,
    now: float,
) -> Decision | None:
    env = alert.environment
    aliases = _aliases(conn, env)
    current = aliases.get("current")
    failing = alert.labels.get("model_id") or current
    if current is None or failing is None or failing != current:
        return None  # the alert is about a model no longer current: nothing to roll back
    done = store.find(
        conn,
        environment=env,
        action="rollback",
        target=failing,
        incident_id=alert.incident_id,
        states=("done", "dry_run"),
        limit=1,
    )
    if done:
        return None  # one action per incident and target
    decision = Decision(env, "rollback", failing, alert, policy.dry_run)
    target = aliases.get(policy.rollback.target)
    decision.to = target
    if target is None:
        return decision.refuse(
            "no_target",
            f"{env} has no {policy.rollback.target} alias to roll back to "
            "(`quality-gates validate --fix` sets it from the history)",
        )
    if target == current:
        return decision.refuse("same_target", f"{policy.rollback.target} is {current} itself")
    if alert.metric not in QUALITY_METRICS:
        # A provider trigger that holds, even before its `for` ends, says the provider is
        # the cause: its failover comes, and a rollback (often onto the same provider)
        # would only stall the watch on probing a slow or failing target.
        down = failing_providers(states, config, env, pending=True)
        if down:
            listing = ", ".join(f"{p} ({r})" for p, r in sorted(down.items()))
            return decision.refuse(
                "provider_alerts",
                f"provider alerts are firing or pending ({listing}): failover, not a rollback",
            )
        moving = store.find(conn, environment=env, action="failover", states=store.ACTIVE_FAILOVER)
        if moving:
            names = ", ".join(sorted({r.target for r in moving}))
            return decision.refuse(
                "failover_active",
                f"the automatic failover of {names} is in force: the symptoms it leaves "
                "(slow or failed calls still in the window) are not the model's",
            )
    recent = store.find(
        conn, environment=env, action="rollback", states=("done",), since=now - policy.cooldown
    )
    if recent:
        last = recent[0]
        return decision.refuse(
            "cooldown",
            f"cool-down: {last.summary.split(':')[0]} {format_duration(now - last.updated_at)} "
            f"ago; the next automatic rollback waits {format_duration(policy.cooldown)}",
        )
    reason = target_failing(conn, config, states, env, target, now)
    if reason:
        return decision.refuse("target_failing", f"{target} is failing itself: {reason}")
    decision.verify = policy.rollback.verify_target
    return decision


def target_failing(
    conn: Connection,
    config: QualityGatesConfig,
    states: dict[str, AlertState],
    environment: str,
    model_id: str,
    now: float,
) -> str | None:
    """Why `model_id` cannot take traffic now (an alert of its own, its provider failing or
    forced out, poor recent golden-probe scores), or None."""
    for alert in states.values():
        if (
            alert.environment == environment
            and alert.state == "firing"
            and alert.labels.get("model_id") == model_id
        ):
            return f"{alert.rule} is firing for it"
    model = config.model(model_id)
    if model is not None:
        down = failing_providers(states, config, environment, pending=True)
        if model.provider in down:
            return f"its provider {model.provider} is failing ({down[model.provider]})"
        forced = runtime_settings.get(conn, environment, f"breaker:{model.provider}/{model_id}")
        if isinstance(forced, dict) and forced.get("state") == "open":
            return f"its breaker is forced open ({forced.get('reason', '')})"
    row = conn.one(
        "SELECT COUNT(*) AS n, AVG(score) AS mean FROM quality_samples WHERE environment = :env "
        "AND model_id = :model AND ts >= :since AND scorer = 'golden'",
        {"env": environment, "model": model_id, "since": now - TARGET_QUALITY_WINDOW},
    )
    policy = config.remediation.policy(environment)
    if row and int(row["n"] or 0) >= TARGET_QUALITY_MIN_SAMPLES:
        mean = float(row["mean"])
        if mean < policy.rollback.min_target_score:
            return (
                f"its golden-probe score over the last {format_duration(TARGET_QUALITY_WINDOW)} "
                f"is {mean:.2f}, under {policy.rollback.min_target_score:.2f}"
            )
    return None


def _plan_failover(
    conn: Connection,
    config: QualityGatesConfig,
    states: dict[str, AlertState],
    alert: AlertState,
    policy: RemediationPolicy,
    now: float,
) -> Decision | None:
    from quality_gates.gateway._routing import RouteTable

    env = alert.environment
    provider = alert.labels.get("provider")
    if not provider:
        return None
    active = store.find(
        conn,
        environment=env,
        action="failover",
        target=provider,
        states=(*store.ACTIVE_FAILOVER, "dry_run"),
        limit=1,
    )
    if active and (active[0].state != "dry_run" or active[0].incident_id == alert.incident_id):
        return None  # already out of the route (or already said so for this incident)
    aliases = _aliases(conn, env)
    current = aliases.get("current")
    if current is None:
        return None
    runtime = runtime_settings.get_all(conn, env)
    chain = RouteTable(config, env, aliases, runtime).chain(current)
    providers = list(dict.fromkeys(d.provider for d in chain))
    if provider not in providers:
        return None  # it serves nothing of the current route
    decision = Decision(env, "failover", provider, alert, policy.dry_run)
    decision.details["chain"] = providers
    recent = store.find(
        conn,
        environment=env,
        action="failover",
        target=provider,
        states=("restored", "superseded"),
        since=now - policy.cooldown,
        limit=1,
    )
    if recent:
        return decision.refuse(
            "cooldown",
            f"cool-down: {provider} came back {format_duration(now - recent[0].updated_at)} ago; "
            f"the next automatic failover of it waits {format_duration(policy.cooldown)}",
        )
    down = failing_providers(states, config, env)
    out_of_route = {
        r.target
        for r in store.find(conn, environment=env, action="failover", states=store.ACTIVE_FAILOVER)
    }
    from quality_gates.gateway.runtime import forced_breakers

    forced = forced_breakers(runtime, now)
    forced_open = {
        d.provider
        for d in chain
        if forced.get(d.id, ("", None))[0] == "open"
        and all(
            forced.get(o.id, ("", None))[0] == "open" for o in chain if o.provider == d.provider
        )
    }  # a provider whose every deployment here is forced open cannot take traffic
    healthy = [
        p
        for p in providers
        if p != provider and p not in down and p not in out_of_route and p not in forced_open
    ]
    if not healthy:
        return decision.refuse(
            "no_healthy_provider",
            f"no healthy provider left in the chain ({' -> '.join(providers)}): consider "
            "`quality-gates emergency --mode multi-provider-outage --enable-degraded-service`",
        )
    decision.to = healthy[0]
    decision.details["deployments"] = sorted({d.id for d in chain if d.provider == provider})
    return decision


def execute(
    conn: Connection,
    config: QualityGatesConfig,
    decision: Decision,
    now: float,
    verification: ModelScore | None = None,
) -> ActionReport | None:
    """Carry out (or record) one decision in one transaction; None when a skip was already
    recorded for this incident with the same reason."""
    policy = config.remediation.policy(decision.environment)
    if decision.skip is None and verification is not None:
        mean = verification.mean
        if mean is None or mean < policy.rollback.min_target_score:
            decision.refuse(
                "verify_failed",
                f"{decision.to} failed its golden probe before the rollback: "
                f"{verification.describe()}, needs {policy.rollback.min_target_score:.2f}",
            )
    if decision.skip is not None:
        return _record_skip(conn, decision, now)
    if decision.action == "rollback":
        return _rollback(conn, decision, now, verification)
    return _failover(conn, config, decision, now)


def _describe_alert(alert: AlertState) -> str:
    return f"{alert.rule}: {alert.summary}"


def _record_action(
    conn: Connection,
    alert: AlertState,
    *,
    environment: str,
    action: str,
    target: str,
    state: str,
    summary: str,
    now: float,
    details: dict[str, Any],
    public: bool,
    event_details: dict[str, Any] | None = None,
    audit_target: str | None = None,
    audit_action: str | None = None,
    **row: Any,
) -> int:
    """One remediation as the system records it: its row, the line on the alert's incident
    timeline and (with `audit_target`) the audit entry. Call inside `conn.write()`."""
    remedy_id = store.insert(
        conn,
        environment=environment,
        action=action,
        target=target,
        state=state,
        summary=summary,
        now=now,
        incident_id=alert.incident_id,
        rule=alert.rule,
        fingerprint=alert.fingerprint,
        alert_at=alert.fired_at,
        details=details,
        **row,
    )
    incidents.record_event(
        conn,
        action,
        f"{summary} (alert {_describe_alert(alert)})",
        incident_id=alert.incident_id,
        actor=ACTOR,
        details={"remediation": remedy_id, **(details if event_details is None else event_details)},
        public=public,
        now=now,
    )
    if audit_target is not None:
        audit.append(
            conn,
            actor=ACTOR,
            action=audit_action or f"remediation.{action}",
            target=audit_target,
            details={**details, "incident_id": alert.incident_id, "remediation": remedy_id},
        )
    return remedy_id


def _record_skip(conn: Connection, decision: Decision, now: float) -> ActionReport | None:
    alert = decision.alert
    summary = f"automatic {decision.action} of {decision.target} skipped: {decision.skip}"
    with conn.write():
        seen = store.find(
            conn,
            environment=decision.environment,
            action=decision.action,
            target=decision.target,
            incident_id=alert.incident_id,
            states=("skipped",),
            limit=50,
        )
        if any(r.details.get("skip_key") == decision.skip_key for r in seen):
            return None
        remedy_id = _record_action(
            conn,
            alert,
            environment=decision.environment,
            action=decision.action,
            target=decision.target,
            state="skipped",
            summary=summary,
            now=now,
            details={
                **decision.details,
                "to": decision.to,
                "reason": decision.skip,
                "skip_key": decision.skip_key,
            },
            public=False,
            event_details={"alert": alert.rule, "skipped": decision.skip},
            finished=True,
        )
    return ActionReport(
        decision.environment,
        decision.action,
        decision.target,
        "skipped",
        summary,
        alert.incident_id,
        alert.rule,
        remedy_id=remedy_id,
    )


def _rollback(
    conn: Connection, decision: Decision, now: float, verification: ModelScore | None
) -> ActionReport:
    from quality_gates.registry import Actor, rollback

    alert = decision.alert
    env, failing, target = decision.environment, decision.target, str(decision.to)
    details: dict[str, Any] = {"from": failing, "to": target, "alert": alert.rule}
    if verification is not None:
        details["target_probe"] = verification.describe()
    with conn.write():
        if decision.dry_run:
            state = "dry_run"
            summary = f"dry run: would roll back {env} from {failing} to {target}"
        else:
            result = rollback(
                conn,
                environment=env,
                model_ref=failing,
                previous_ref=target,
                reason=f"automatic rollback: {_describe_alert(alert)}",
                actor=Actor(ACTOR, "auto"),
                incident_id=alert.incident_id,
            )
            details["operation_id"] = result.operation_id
            state = "done"
        done_at = now
        latency = done_at - alert.fired_at if alert.fired_at else None
        details["seconds_after_alert"] = latency
        if state == "done":
            after = f" {latency:.1f} s after the alert" if latency is not None else ""
            summary = f"rolled back {env} from {failing} to {target}{after}"
        remedy_id = _record_action(
            conn,
            alert,
            environment=env,
            action="rollback",
            target=failing,
            state=state,
            summary=summary,
            now=done_at,
            details=details,
            public=state == "done",
            audit_target=f"{env}/current",
            audit_action=f"remediation.rollback{'.dry_run' if decision.dry_run else ''}",
            operation_id=details.get("operation_id"),
            finished=True,
        )
    return ActionReport(
        env, "rollback", failing, state, summary, alert.incident_id, alert.rule, latency, remedy_id
    )


def _failover(
    conn: Connection, config: QualityGatesConfig, decision: Decision, now: float
) -> ActionReport:
    from quality_gates.gateway._routing import describe_weights
    from quality_gates.gateway.failover import moved, raw_weights
    from quality_gates.gateway.runtime import force_breaker, set_traffic

    alert = decision.alert
    env, provider, target = decision.environment, decision.target, str(decision.to)
    policy = config.remediation.policy(env)
    operation_id = uuid.uuid4().hex[:12]
    reason = f"automatic failover: {_describe_alert(alert)}"
    with conn.write():
        before = raw_weights(conn, config, env)
        after = moved(before, provider, target, 1.0) if before.get(provider, 0.0) > 0 else before
        deployments = list(decision.details.get("deployments", []))
        details: dict[str, Any] = {
            "from": provider,
            "to": target,
            "before": before,
            "after": after,
            "last_weights": after,
            "breakers": deployments if policy.failover.open_breakers else [],
            "alert": alert.rule,
            "chain": decision.details.get("chain", []),
        }
        if decision.dry_run:
            state = "dry_run"
            summary = (
                f"dry run: would take {provider} out of {env} (weights "
                f"{describe_weights(before)} -> {describe_weights(after)})"
            )
        else:
            state = "active"
            if policy.failover.open_breakers:
                for deployment in deployments:
                    force_breaker(
                        conn,
                        environment=env,
                        deployment=deployment,
                        state="open",
                        reason=reason,
                        actor=ACTOR,
                    )
            if after != before:
                set_traffic(
                    conn,
                    environment=env,
                    weights=after,
                    current=before,
                    actor=ACTOR,
                    source="auto",
                    reason=reason,
                    mode="failover:auto",
                    step=f"{provider} at 0%",
                    operation_id=operation_id,
                    incident_id=alert.incident_id,
                )
            summary = f"failed over {env} from {provider} to {target}"
        done_at = now
        latency = done_at - alert.fired_at if alert.fired_at else None
        details["seconds_after_alert"] = latency
        if state == "active":
            opened = f", breakers forced open: {', '.join(deployments)}" if deployments else ""
            after_s = f" {latency:.1f} s after the alert" if latency is not None else ""
            summary += (
                f"{after_s} (weights {describe_weights(before)} -> "
                f"{describe_weights(after)}{opened})"
            )
        remedy_id = _record_action(
            conn,
            alert,
            environment=env,
            action="failover",
            target=provider,
            state=state,
            summary=summary,
            now=done_at,
            details=details,
            public=state == "active",
            audit_target=f"{env}/{provider}",
            audit_action=f"remediation.failover{'.dry_run' if decision.dry_run else ''}",
            step=f"{provider} at 0%",
            operation_id=operation_id,
            finished=decision.dry_run,
        )
    return ActionReport(
        env, "failover", provider, state, summary, alert.incident_id, alert.rule, latency, remedy_id
    )


class Remediator:
    """Reacts to firing alerts after each evaluation; drives failbacks forward."""

    def __init__(
        self,
        config: QualityGatesConfig,
        probes: GoldenProbes,
        *,
        rollback_enabled: bool = True,
    ) -> None:
        from quality_gates.remediation._failback import Failback

        self.config = config
        self.probes = probes
        self.rollback_enabled = rollback_enabled
        self.failback = Failback(config, probes.pool)

    async def react(self, db: Any, now: float) -> list[ActionReport]:
        """One pass: plan, verify targets, act, then advance failbacks. `db(func, *args)`
        runs `func(conn, *args)` on the store thread."""
        reports: list[ActionReport] = []
        started = time.perf_counter()
        decisions = await db(plan, self.config, now)
        for decision in decisions:
            if decision.action == "rollback" and not self.rollback_enabled:
                continue
            verification = None
            if decision.verify and decision.skip is None and not decision.dry_run:
                verification = await self._verify(str(decision.to))
            try:
                at = now + (time.perf_counter() - started)  # on the evaluator's clock
                report = await db(execute, self.config, decision, at, verification)
            except QualityGatesError as exc:
                # e.g. an operator moved `current` meanwhile: the rollback refuses, nothing moved
                log_event(log, logging.WARNING, "REMEDIATION", f"{decision.action} refused: {exc}")
                continue
            if report is not None:
                reports.append(report)
        reports += await self.failback.advance(db, now)
        for report in reports:
            log_event(
                log,
                logging.WARNING if report.state in ("done", "active") else logging.INFO,
                "REMEDIATION",
                report.summary,
                environment=report.environment,
                action=report.action,
                target=report.target,
                state=report.state,
                incident=report.incident_id,
                rule=report.rule,
                seconds_after_alert=report.latency_s,
            )
        return reports

    async def _verify(self, model_id: str) -> ModelScore:
        count = max(VERIFY_ITEMS, self.config.remediation.probes.items)
        return await self.probes.score_model(model_id, self.probes.next_items(count))
