"""From firing alerts to incidents: grouping, the severity table, response targets, escalation
and automatic resolution.

One incident per underlying problem: a firing alert joins the open incident of its group
(the environment, with security apart since it has its own owners) while that incident still
has active alerts or saw one within `group_window`; otherwise it opens a new incident.
Severity follows the runbook's table: every service down (client error rate at
`p0_error_rate`, or every provider of the environment that far down) is P0; provider failures
(several providers failing) and high error rates P1; degradation or a single provider's issue
(down, 5xx, 429 or slow) P2; warnings and notices P3. An
incident's severity only rises. When its last alert resolves it moves to monitoring and, after
`auto_resolve_after` of quiet, resolves; channels that heard it open hear it resolve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from quality_gates import incidents
from quality_gates.alerts._rules import (
    FIRING,
    PENDING,
    SEVERITY_RANK,
    AlertState,
    RuleSpec,
    Transition,
    sentence,
)
from quality_gates.alerts._store import add_event, save_state
from quality_gates.notify._routing import notified_channels, notify, route_channels
from quality_gates.store import audit
from quality_gates.store.db import Connection, Row
from quality_gates.units import format_duration

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

WATCH_ACTOR = "watch"
SEVERITY_LEVELS = ("P0", "P1", "P2", "P3")


def group_key(environment: str, incident_type: str) -> str:
    """The grouping key: one incident per environment, security apart."""
    return f"{environment}:{'security' if incident_type == 'security' else 'service'}"


def environment_providers(config: QualityGatesConfig, environment: str) -> set[str]:
    """Providers serving an environment: those of its aliases' and chains' models."""
    env = config.environment(environment)
    if env is None:
        return set()
    model_ids = set(env.aliases.values())
    for chain in env.failover_chains:
        model_ids.update(chain.models)
    providers = {m.provider for m in config.models if m.id in model_ids}
    return providers | set(env.traffic)


def classify(
    alert: AlertState,
    spec: RuleSpec | None,
    firing: Iterable[AlertState],
    env_providers: set[str],
    p0_error_rate: float,
) -> str:
    """The runbook's severity for the incident this alert stands for."""
    if spec is not None and spec.incident_severity:
        return spec.incident_severity
    if alert.severity != "critical":
        return "P3"
    env_wide = alert.metric == "error_rate" and not alert.labels.get("provider")
    if env_wide and alert.value is not None and alert.value >= p0_error_rate:
        return "P0"
    provider = alert.labels.get("provider")
    if alert.type != "provider" and alert.metric != "provider_availability":
        return "P2"
    if not provider:
        return "P1"  # environment-wide provider errors: high error rates
    # One provider failing (down, 5xx, 429 or slow) is a single provider issue (P2);
    # several are provider failures (P1); every provider of the environment down is P0.
    same_env = [
        a
        for a in firing
        if a.severity == "critical"
        and a.environment == alert.environment
        and a.state == FIRING
        and a.labels.get("provider")
        and (a.type == "provider" or a.metric == "provider_availability")
    ]
    failing = {a.labels["provider"] for a in same_env} | {provider}
    down = {
        a.labels["provider"]
        for a in same_env
        if a.metric == "provider_availability"
        and a.value is not None
        and a.value <= 1.0 - p0_error_rate
    }
    if alert.metric == "provider_availability" and env_providers and env_providers <= down:
        return "P0"
    return "P1" if len(failing) >= 2 else "P2"


def _worst(levels: Iterable[str]) -> str:
    return min(levels, key=SEVERITY_LEVELS.index, default="P3")


def sync_alerts(
    conn: Connection,
    config: QualityGatesConfig,
    specs: Mapping[str, RuleSpec],
    states: Mapping[str, AlertState],
    transitions: list[Transition],
    now: float,
) -> None:
    """Record transitions, attach firing alerts to incidents, raise severities, resolve
    incidents whose alerts are gone. Call inside `conn.write()`."""
    for transition in transitions:
        add_event(conn, transition, now)
        alert = transition.alert
        if alert.incident_id is not None:
            incidents.record_event(
                conn,
                "alert",
                f"{alert.rule} {transition.from_state} -> {transition.to_state}: {alert.summary}",
                incident_id=alert.incident_id,
                actor=WATCH_ACTOR,
                details={
                    "fingerprint": alert.fingerprint,
                    "labels": alert.labels,
                    "value": alert.value,
                },
                now=now,
            )
    firing = [s for s in states.values() if s.state == FIRING]
    touched: set[int] = set()
    # An alert still firing after its incident was resolved by hand opens (or joins) a new
    # one: the problem is not over, and a silence is the way to say "known, leave it".
    open_ids = {int(r["id"]) for r in incidents.list_incidents(conn, state="open", limit=1000)}
    for state in states.values():
        if state.notifiable and state.incident_id is not None and state.incident_id not in open_ids:
            state.incident_id = None
    _notify_only(conn, config, specs, transitions, now)
    if config.incidents.auto_open:
        ordered = sorted(
            (
                s
                for s in states.values()
                if s.notifiable and s.incident_id is None and _opens_incident(specs, s.rule)
            ),
            key=lambda s: (SEVERITY_RANK.get(s.severity, 9), s.fired_at or now),
        )
        for alert in ordered:
            incident_id = _attach(conn, config, specs, alert, firing, now)
            touched.add(incident_id)
            save_state(conn, alert)
    for row in incidents.list_incidents(conn, state="open", limit=1000):
        _refresh(conn, config, specs, row, states, firing, now, touched)


def _title(spec: RuleSpec | None, alert: AlertState) -> str:
    """The incident's title: the alert as a sentence, after the rule's own summary if it
    has one (a drill marks its incidents there)."""
    if spec is None:
        return alert.summary
    said = sentence(spec, alert.labels, alert.value)
    return f"{spec.summary}: {said}" if spec.summary else said


def _opens_incident(specs: Mapping[str, RuleSpec], rule: str) -> bool:
    spec = specs.get(rule)
    return spec is None or spec.opens_incident


# How a notify-only alert is routed: by its severity, as the lowest incident of that kind.
NOTIFY_ONLY_LEVEL = {"critical": "P1", "warning": "P2", "info": "P3"}


def _notify_only(
    conn: Connection,
    config: QualityGatesConfig,
    specs: Mapping[str, RuleSpec],
    transitions: list[Transition],
    now: float,
) -> None:
    """Rules that open no incident (info, efficiency) notify their routed channels when they
    fire and when they resolve: Slack and webhooks only (nobody is paged for them)."""
    from quality_gates.notify._outbox import Message, enqueue

    for transition in transitions:
        alert = transition.alert
        if _opens_incident(specs, alert.rule) or alert.muted:
            continue
        if transition.to_state == FIRING:
            event = "firing"
        elif transition.from_state == FIRING:
            event = "resolved"
        else:
            continue
        level = NOTIFY_ONLY_LEVEL.get(alert.severity, "P3")
        for name in route_channels(config, alert.type, level):
            channel = config.notifications.channel(name)
            if channel is None or channel.type == "pagerduty":
                continue
            text = (
                f"[{alert.severity}] {alert.summary} in {alert.environment}: {event} "
                "(notify-only rule: no incident opened)"
            )
            payload = (
                {"text": text}
                if channel.type == "slack"
                else {
                    "kind": "alert",
                    "event": event,
                    "rule": alert.rule,
                    "severity": alert.severity,
                    "environment": alert.environment,
                    "labels": alert.labels,
                    "value": alert.value,
                    "summary": alert.summary,
                    "incident": None,
                }
            )
            key = f"alert-{alert.fingerprint}:{alert.fired_at or now:.3f}:{event}:{name}"
            enqueue(
                conn,
                Message(key, name, channel.type, event, payload, None, alert.fingerprint),
                channel,
                now,
            )


def _attach(
    conn: Connection,
    config: QualityGatesConfig,
    specs: Mapping[str, RuleSpec],
    alert: AlertState,
    firing: list[AlertState],
    now: float,
) -> int:
    key = group_key(alert.environment, alert.type)
    window = config.incidents.group_window
    row = conn.one(
        "SELECT * FROM incidents WHERE group_key = :key AND state IN "
        "('investigating', 'identified', 'monitoring') AND (last_alert_at >= :since OR EXISTS "
        "(SELECT 1 FROM alert_states a WHERE a.incident_id = incidents.id AND a.state IN "
        "('pending', 'firing'))) ORDER BY id DESC LIMIT 1",
        {"key": key, "since": now - window},
    )
    if row is None:
        severity = classify(
            alert,
            specs.get(alert.rule),
            firing,
            environment_providers(config, alert.environment),
            config.incidents.p0_error_rate,
        )
        spec = specs.get(alert.rule)
        row = incidents.open_incident(
            conn,
            config,
            title=_title(spec, alert),
            incident_type=alert.type,
            severity=severity,
            environment=alert.environment,
            group_key=key,
            actor=WATCH_ACTOR,
            now=now,
            detected_at=alert.active_since,
            details={
                "alert": alert.rule,
                "labels": alert.labels,
                "value": alert.value,
                "expression": alert.summary,
            },
        )
    alert.incident_id = int(row["id"])
    conn.execute(
        "UPDATE incidents SET last_alert_at = :now, updated_at = :now WHERE id = :id",
        {"now": now, "id": row["id"]},
    )
    incidents.record_event(
        conn,
        "alert",
        f"{alert.rule} firing: {alert.summary}",
        incident_id=alert.incident_id,
        actor=WATCH_ACTOR,
        details={"fingerprint": alert.fingerprint, "labels": alert.labels, "value": alert.value},
        now=now,
    )
    return alert.incident_id


def _refresh(
    conn: Connection,
    config: QualityGatesConfig,
    specs: Mapping[str, RuleSpec],
    row: Row,
    states: Mapping[str, AlertState],
    firing: list[AlertState],
    now: float,
    touched: set[int],
) -> None:
    incident_id = int(row["id"])
    attached = [s for s in states.values() if s.incident_id == incident_id]
    active = [s for s in attached if s.state in (PENDING, FIRING)]
    if active:
        env_providers = environment_providers(config, str(row["environment"]))
        levels = [
            classify(a, specs.get(a.rule), firing, env_providers, config.incidents.p0_error_rate)
            for a in active
            if a.state == FIRING
        ]
        worst = _worst(levels) if levels else row["severity"]
        if SEVERITY_LEVELS.index(worst) < SEVERITY_LEVELS.index(row["severity"]):
            _raise_severity(conn, config, specs, row, worst, active, now)
        if row["mitigated_at"] is not None and row["opened_by"] == WATCH_ACTOR:
            conn.execute(
                "UPDATE incidents SET mitigated_at = NULL, state = 'investigating', "
                "updated_at = :now WHERE id = :id",
                {"now": now, "id": incident_id},
            )
            incidents.record_event(
                conn,
                "state",
                "alerts firing again: monitoring -> investigating",
                incident_id=incident_id,
                actor=WATCH_ACTOR,
                public=True,
                now=now,
            )
        return
    if row["opened_by"] != WATCH_ACTOR or incident_id in touched:
        return
    if row["mitigated_at"] is None:
        conn.execute(
            "UPDATE incidents SET mitigated_at = :now, state = 'monitoring', updated_at = :now "
            "WHERE id = :id",
            {"now": now, "id": incident_id},
        )
        incidents.record_event(
            conn,
            "state",
            f"all alerts resolved: {row['state']} -> monitoring",
            incident_id=incident_id,
            actor=WATCH_ACTOR,
            public=True,
            now=now,
        )
        mitigated = now
    else:
        mitigated = float(row["mitigated_at"])
    if now - mitigated >= config.incidents.auto_resolve_after:
        quiet = format_duration(now - mitigated) if now > mitigated else "0 s"
        incidents.resolve(
            conn,
            config,
            incident_id,
            actor=WATCH_ACTOR,
            reason=f"all alerts resolved (quiet for {quiet})",
            now=now,
        )


def _raise_severity(
    conn: Connection,
    config: QualityGatesConfig,
    specs: Mapping[str, RuleSpec],
    row: Row,
    severity: str,
    active: list[AlertState],
    now: float,
) -> None:
    incident_id = int(row["id"])
    lead = min(active, key=lambda a: (SEVERITY_RANK.get(a.severity, 9), a.fired_at or now))
    title = _title(specs.get(lead.rule), lead)  # a sentence, as when it opened
    conn.execute(
        "UPDATE incidents SET severity = :severity, type = :type, title = :title, "
        "updated_at = :now WHERE id = :id",
        {
            "severity": severity,
            "type": lead.type,
            "title": title,
            "now": now,
            "id": incident_id,
        },
    )
    incidents.record_event(
        conn,
        "severity",
        f"severity {row['severity']} -> {severity}: {lead.summary}",
        incident_id=incident_id,
        actor=WATCH_ACTOR,
        public=True,
        now=now,
    )
    audit.append(
        conn,
        actor=WATCH_ACTOR,
        action="incident.severity",
        target=f"incident/{incident_id}",
        details={"from": row["severity"], "to": severity},
        ts=now,
    )
    fresh = incidents.get_incident(conn, incident_id)
    heard = notified_channels(conn, incident_id)
    wanted = route_channels(config, lead.type, severity)
    new = [c for c in wanted if c not in heard]
    notify(conn, config, fresh, "open", new, now)
    notify(conn, config, fresh, "severity", list(heard), now, key_suffix=f"-{severity}")


def check_timers(conn: Connection, config: QualityGatesConfig, now: float) -> None:
    """Response targets and automatic escalation of unacknowledged open incidents."""
    for row in incidents.list_incidents(conn, state="open", limit=1000):
        if row["acknowledged_at"] is not None:
            continue
        incident_id = int(row["id"])
        age = now - float(row["opened_at"])
        level = config.incidents.severities.get(row["severity"])
        if level is not None and row["response_breached_at"] is None and age >= level.response_time:
            conn.execute(
                "UPDATE incidents SET response_breached_at = :now, updated_at = :now "
                "WHERE id = :id",
                {"now": now, "id": incident_id},
            )
            message = (
                f"response target breached: {row['severity']} must be acknowledged within "
                f"{format_duration(level.response_time)}, unacknowledged for {format_duration(age)}"
            )
            incidents.record_event(
                conn, "breach", message, incident_id=incident_id, actor=WATCH_ACTOR, now=now
            )
            fresh = incidents.get_incident(conn, incident_id)
            notify(
                conn,
                config,
                fresh,
                "breach",
                route_channels(config, str(row["type"]), str(row["severity"])),
                now,
                note=message,
            )
        rule = config.incidents.escalation_for(str(row["type"]))
        if rule is not None and int(row["escalation_level"]) == 0 and age >= rule.escalation_time:
            after = format_duration(rule.escalation_time) if rule.escalation_time else "immediately"
            incidents.escalate(
                conn,
                config,
                incident_id,
                actor=WATCH_ACTOR,
                reason=f"unacknowledged after {format_duration(age)} ({rule.label}: escalate "
                f"after {after})",
                now=now,
            )
