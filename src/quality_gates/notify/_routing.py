"""From an incident event to outbox messages: which channels hear it and what they get."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from quality_gates.notify._channels import pagerduty_payload, slack_payload, webhook_payload
from quality_gates.notify._outbox import Message, enqueue
from quality_gates.store.db import Connection, Row

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig


def route_channels(config: QualityGatesConfig, incident_type: str, severity: str) -> list[str]:
    """Channels whose routes match this incident type and severity, in config order."""
    names: list[str] = []
    for route in config.notifications.routes:
        if route.matches(incident_type, severity):
            names.extend(c for c in route.channels if c not in names)
    return names


def contact_channels(config: QualityGatesConfig, contact: str) -> list[str]:
    """Channels that reach a contact of the escalation matrix."""
    spec = config.incidents.contacts.get(contact)
    return list(spec.channels) if spec else []


def notified_channels(conn: Connection, incident_id: int) -> dict[str, set[str]]:
    """channel -> events already put in the outbox for this incident."""
    out: dict[str, set[str]] = {}
    for row in conn.execute(
        "SELECT channel, event FROM notifications WHERE incident_id = :id AND status <> 'skipped'",
        {"id": incident_id},
    ):
        out.setdefault(row["channel"], set()).add(row["event"])
    return out


def incident_alerts(conn: Connection, incident_id: int) -> list[dict[str, Any]]:
    """The incident's alerts as channels show them."""
    rows = conn.execute(
        "SELECT rule, labels, severity, state, value, summary FROM alert_states "
        "WHERE incident_id = :id ORDER BY fired_at",
        {"id": incident_id},
    )
    return [
        {
            "rule": r["rule"],
            "labels": json.loads(r["labels"]),
            "severity": r["severity"],
            "state": r["state"],
            "value": r["value"],
            "summary": r["summary"],
        }
        for r in rows
    ]


def notify(
    conn: Connection,
    config: QualityGatesConfig,
    incident: Row,
    event: str,
    channels: list[str],
    now: float,
    *,
    key_suffix: str = "",
    note: str | None = None,
) -> list[str]:
    """Put one message per channel in the outbox; returns the idempotency keys enqueued.

    Acknowledgements and resolves go only to channels that heard of the incident before
    (and resolves only where `send_resolved`); PagerDuty hears only events it has an
    action for.
    """
    incident_view = dict(incident)
    incident_view["owner"] = incident_owner(conn, config, incident)
    alerts = incident_alerts(conn, int(incident["id"]))
    heard = notified_channels(conn, int(incident["id"]))
    keys = []
    for name in channels:
        channel = config.notifications.channel(name)
        if event in ("resolve", "ack") and name not in heard:
            continue
        if event == "resolve" and channel is not None and not channel.send_resolved:
            continue
        kind = channel.type if channel is not None else "unknown"
        payload: dict[str, Any] | None
        if kind == "slack":
            payload = slack_payload(event, incident_view, alerts, note)
        elif kind == "pagerduty":
            payload = pagerduty_payload(event, incident_view, alerts, config.project)
        else:
            payload = webhook_payload(event, incident_view, alerts, note)
        if payload is None:
            continue
        key = f"incident-{incident['id']}:{event}{key_suffix}:{name}"
        message = Message(
            key, name, kind, event, payload, int(incident["id"]), str(incident["dedup_key"])
        )
        if enqueue(conn, message, channel, now):
            keys.append(key)
    return keys


def incident_owner(conn: Connection, config: QualityGatesConfig, incident: Row) -> str | None:
    """Who holds the incident now: the last escalation's contact, else the matrix's primary."""
    last = conn.scalar(
        "SELECT contact FROM escalations WHERE incident_id = :id ORDER BY level DESC LIMIT 1",
        {"id": incident["id"]},
    )
    if last:
        return str(last)
    rule = config.incidents.escalation_for(str(incident["type"]))
    return rule.primary if rule else None
