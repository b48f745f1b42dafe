"""Automatic failback: a provider taken out of the route comes back in steps.

While a failover is `active`, the provider is probed every `failback.probe_interval`; once the
probes have passed for `failback.healthy_for` and none of its failover-trigger alerts fires,
its forced breakers return to automatic and its weight comes back in `failback.steps`
(25%, 50%, 100% of what it had), one step per `step_interval`, each after a check: a probe,
no trigger alert firing on it, and its error rate in the gateways' attempts since the step
began under the environment's threshold. A failed check puts the failed-over weights and the
forced breakers back and starts the healthy clock again. If someone else moved the weights
meanwhile (a person, or another automatic failover), their weights win: the failback keeps
probing, and once the provider is healthy it returns the breakers it forced open to automatic
and ends `superseded`, saying who changed the weights and that it left them as they are. What
the watch forced, the watch clears: a superseded failover never leaves a breaker forced.

The healthy clock and the step live in the row's details, so a new leader carries on.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from quality_gates import incidents
from quality_gates.alerts._store import load_states
from quality_gates.remediation import _remedy_store as store
from quality_gates.store.db import Connection
from quality_gates.units import format_duration

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig
    from quality_gates.remediation._remediator import ActionReport
    from quality_gates.signals.probes import AdapterPool

MIN_ATTEMPTS_FOR_RATE = 10
WEIGHT_TOLERANCE = 0.01  # percentage points: weights this close are the same weights


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    names = set(a) | set(b)
    return all(abs(a.get(k, 0.0) - b.get(k, 0.0)) <= WEIGHT_TOLERANCE for k in names)


class Failback:
    """Probes failed-over providers and steps their traffic back."""

    def __init__(self, config: QualityGatesConfig, pool: AdapterPool) -> None:
        self.config = config
        self.pool = pool
        self._probed_at: dict[int, float] = {}

    async def advance(self, db: Any, now: float) -> list[ActionReport]:
        """One pass over every active failover (probing those that are due)."""
        active = await db(
            lambda conn: store.find(conn, action="failover", states=store.ACTIVE_FAILOVER)
        )
        reports = []
        for remedy in active:
            policy = self.config.remediation.policy(remedy.environment).failback
            if not policy.enabled:
                continue
            probe: tuple[bool, str] | None = None
            if now - self._probed_at.get(remedy.id, 0.0) >= policy.probe_interval:
                self._probed_at[remedy.id] = now
                result = await self.pool.probe(remedy.target)
                detail = "probe ok" if result.healthy else f"probe {result.error_class}"
                probe = (result.healthy, detail)
            report = await db(step, self.config, remedy.id, probe, now)
            if report is not None:
                reports.append(report)
        return reports


def step(
    conn: Connection,
    config: QualityGatesConfig,
    remedy_id: int,
    probe: tuple[bool, str] | None,
    now: float,
) -> ActionReport | None:
    """Advance one failover's failback by what the probe and the store say now."""
    from quality_gates.gateway.failover import raw_weights
    from quality_gates.remediation._remediator import ACTOR, failing_providers

    with conn.write():
        remedy = store.get(conn, remedy_id)
        if remedy is None or remedy.state not in store.ACTIVE_FAILOVER:
            return None
        env, provider, d = remedy.environment, remedy.target, dict(remedy.details)
        policy = config.remediation.policy(env).failback
        weights_now = raw_weights(conn, config, env)
        if d.get("superseded_by") is None and not _same(weights_now, d.get("last_weights", {})):
            change = _last_weight_change(conn, env, weights_now)
            if change["actor"] == ACTOR:
                d["last_weights"] = weights_now  # another automatic move: changes add up
            else:
                d["superseded_by"] = change
        if d.get("superseded_by") is not None and remedy.state != "active":
            return _hand_over(conn, remedy, d, now)
        firing = failing_providers(load_states(conn, active_only=True), config, env).get(provider)
        if probe is not None:
            d["last_probe"] = probe[1]
            d["last_probe_ok"] = probe[0]
        healthy = bool(d.get("last_probe_ok")) and firing is None
        why = firing or d.get("last_probe", "not probed yet")
        if remedy.state == "active":
            # The healthy clock runs on the probes; a trigger alert still firing (its
            # recovery window not yet past) holds the first step without resetting it.
            if not d.get("last_probe_ok"):
                d["healthy_since"] = None
            elif d.get("healthy_since") is None:
                d["healthy_since"] = now
            since = d.get("healthy_since")
            if since is not None and now - since >= policy.healthy_for and firing is None:
                if d.get("superseded_by") is not None:
                    return _hand_over(conn, remedy, d, now)
                return _apply_step(conn, config, remedy, d, 0, now)
            store.update(conn, remedy.id, state=remedy.state, now=now, step=remedy.step, details=d)
            return None
        # failing back: check before each further step, revert at once on a failed probe
        if healthy and now - float(d.get("step_at", now)) < policy.step_interval:
            return None
        rate = _error_rate(conn, env, provider, float(d.get("step_at", now)))
        env_config = config.environment(env)
        limit = env_config.thresholds.error_rate if env_config is not None else 0.02
        if healthy and rate is not None and rate > limit:
            healthy, why = False, f"error rate {rate:.1%} over {limit:.1%} since the last step"
        if not healthy:
            return _revert(conn, config, remedy, d, now, str(why))
        index = int(d.get("step_index", 0)) + 1
        if index >= len(policy.steps):
            return _finish(conn, remedy, "restored", d, now, None)
        return _apply_step(conn, config, remedy, d, index, now)


def _last_weight_change(conn: Connection, env: str, weights: dict[str, float]) -> dict[str, Any]:
    """Who set the weights in force, and when (the newest `traffic_history` line)."""
    row = conn.one(
        "SELECT actor, ts, reason FROM traffic_history WHERE environment = :env "
        "ORDER BY id DESC LIMIT 1",
        {"env": env},
    )
    return {
        "actor": row["actor"] if row else "unknown",
        "at": float(row["ts"]) if row else None,
        "reason": row["reason"] if row else None,
        "weights": weights,
    }


def _hand_over(
    conn: Connection, remedy: store.Remedy, d: dict[str, Any], now: float
) -> ActionReport:
    """Someone else set the weights: return the breakers this failover forced open to
    automatic, leave the weights alone, and say exactly that."""
    from quality_gates.gateway._routing import describe_weights
    from quality_gates.remediation._remediator import ACTOR

    env, provider = remedy.environment, remedy.target
    by = d["superseded_by"]
    who = "another automatic failover" if by.get("actor") == ACTOR else str(by.get("actor"))
    released = list(d.get("breakers", []))
    _breakers(conn, env, released, None)
    why = (
        f"{who} changed the weights (to {describe_weights(by.get('weights', {}))}), so the "
        f"watch left them as they are; {provider} "
        + ("is healthy again" if remedy.state == "active" else "was failing back")
        + (f" and its breakers ({', '.join(released)}) are automatic again" if released else "")
        + f"; its weight comes back with `quality-gates failback --provider {provider}` or "
        "`config set --traffic-distribution`"
    )
    return _finish(conn, remedy, "superseded", d, now, why)


def _error_rate(conn: Connection, environment: str, provider: str, since: float) -> float | None:
    from quality_gates.gateway.failover import provider_attempts

    n, errors = provider_attempts(conn, environment, provider, since)
    return errors / n if n >= MIN_ATTEMPTS_FOR_RATE else None


def _set_weights(
    conn: Connection,
    env: str,
    weights: dict[str, float],
    current: dict[str, float],
    *,
    step: str,
    reason: str,
    incident_id: int | None,
) -> None:
    from quality_gates.gateway.runtime import set_traffic
    from quality_gates.remediation._remediator import ACTOR

    if _same(weights, current):
        return
    set_traffic(
        conn,
        environment=env,
        weights=weights,
        current=current,
        actor=ACTOR,
        source="auto",
        reason=reason,
        mode="failback:auto",
        step=step,
        operation_id=uuid.uuid4().hex[:12],
        incident_id=incident_id,
    )


def _breakers(conn: Connection, env: str, deployments: list[str], state: str | None) -> None:
    from quality_gates.gateway.runtime import force_breaker
    from quality_gates.remediation._remediator import ACTOR

    for deployment in deployments:
        force_breaker(
            conn,
            environment=env,
            deployment=deployment,
            state=state,
            reason="automatic failback" if state is None else "automatic failback stopped",
            actor=ACTOR,
        )


def _apply_step(
    conn: Connection,
    config: QualityGatesConfig,
    remedy: store.Remedy,
    d: dict[str, Any],
    index: int,
    now: float,
) -> ActionReport:
    from quality_gates.gateway._routing import describe_weights
    from quality_gates.gateway.failover import change_of, raw_weights, undo

    env, provider = remedy.environment, remedy.target
    policy = config.remediation.policy(env).failback
    share = policy.steps[index]
    if index == 0:
        _breakers(conn, env, list(d.get("breakers", [])), None)
    current = raw_weights(conn, config, env)
    taken_back = float(d.get("taken_back") or 0.0)
    change = change_of(d.get("before", {}), d.get("after", {}))
    weights = undo(current, change, share - taken_back)
    label = f"{provider} back to {share:.0%} of its share"
    healthy_for = now - float(d.get("healthy_since") or now)
    message = (
        f"failback step {index + 1}/{len(policy.steps)} in {env}: {label} (weights "
        f"{describe_weights(weights)}; healthy for {format_duration(healthy_for)})"
    )
    _set_weights(
        conn, env, weights, current, step=label, reason=message, incident_id=remedy.incident_id
    )
    d.update(step_index=index, step_at=now, last_weights=weights, taken_back=share)
    return _event(conn, remedy, "failing_back", d, now, message, label)


def _revert(
    conn: Connection,
    config: QualityGatesConfig,
    remedy: store.Remedy,
    d: dict[str, Any],
    now: float,
    why: str,
) -> ActionReport:
    from quality_gates.gateway.failover import change_of, raw_weights, undo

    env, provider = remedy.environment, remedy.target
    message = (
        f"failback of {provider} in {env} stopped at step {int(d.get('step_index', 0)) + 1}: "
        f"{why}; traffic back on {d.get('to')}"
    )
    current = raw_weights(conn, config, env)
    change = change_of(d.get("before", {}), d.get("after", {}))
    weights = undo(current, change, -float(d.get("taken_back") or 0.0))  # the move, whole again
    _set_weights(
        conn,
        env,
        weights,
        current,
        step=f"{provider} at 0%",
        reason=message,
        incident_id=remedy.incident_id,
    )
    if config.remediation.policy(env).failover.open_breakers:
        _breakers(conn, env, list(d.get("breakers", [])), "open")
    d.update(
        step_index=None, step_at=None, healthy_since=None, last_weights=weights, taken_back=0.0
    )
    return _event(conn, remedy, "active", d, now, message, f"{provider} at 0%")


def _finish(
    conn: Connection,
    remedy: store.Remedy,
    state: str,
    d: dict[str, Any],
    now: float,
    why: str | None,
) -> ActionReport:
    provider, env = remedy.target, remedy.environment
    if state == "restored":
        took = format_duration(now - remedy.started_at)
        message = f"failback of {provider} in {env} complete: its traffic is back ({took} after)"
    else:
        message = f"automatic failback of {provider} in {env} stopped: {why}"
    return _event(conn, remedy, state, d, now, message, remedy.step, finished=True)


def _event(
    conn: Connection,
    remedy: store.Remedy,
    state: str,
    d: dict[str, Any],
    now: float,
    message: str,
    step_label: str | None,
    *,
    finished: bool = False,
) -> ActionReport:
    from quality_gates.remediation._remediator import ACTOR, ActionReport
    from quality_gates.store import audit

    store.update(
        conn, remedy.id, state=state, now=now, step=step_label, details=d, finished=finished
    )
    incidents.record_event(
        conn,
        "failback",
        message,
        incident_id=remedy.incident_id,
        actor=ACTOR,
        details={"remediation": remedy.id, "step": step_label, "state": state},
        public=True,
        now=now,
    )
    audit.append(
        conn,
        actor=ACTOR,
        action="remediation.failback",
        target=f"{remedy.environment}/{remedy.target}",
        details={"remediation": remedy.id, "state": state, "step": step_label, "note": message},
    )
    return ActionReport(
        remedy.environment,
        "failback",
        remedy.target,
        state,
        message,
        remedy.incident_id,
        remedy.rule or "",
        remedy_id=remedy.id,
    )
