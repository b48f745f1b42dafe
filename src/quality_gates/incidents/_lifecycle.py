"""Incidents: open, acknowledge, annotate, escalate, resolve, and their timelines.

Other planes put what they do on the open incident's timeline with `record_event` (the act
plane's rollbacks and failovers, the gates' runs); `current_incident` gives the id that the
registry functions take as `incident_id`. Every change here is one transaction with its
audit entry, its timeline event and its outbox messages.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from quality_gates.errors import NotFound, RegistryError, StoreError, UsageError
from quality_gates.notify._routing import (
    contact_channels,
    incident_owner,
    notified_channels,
    notify,
)
from quality_gates.store import audit
from quality_gates.store.db import Connection, Row

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

OPEN_STATES = ("investigating", "identified", "monitoring")
STATES = (*OPEN_STATES, "resolved", "postmortem")
SEVERITIES = ("P0", "P1", "P2", "P3")
# Timeline kinds other planes use; any short word is accepted.
EVENT_KINDS = (
    "opened",
    "alert",
    "severity",
    "ack",
    "note",
    "state",
    "escalation",
    "breach",
    "rollback",
    "traffic_shift",
    "failover",
    "gate_run",
    "notification",
    "resolved",
    "postmortem",
)
__all__ = [
    "EVENT_KINDS",
    "OPEN_STATES",
    "STATES",
    "acknowledge",
    "add_note",
    "current_incident",
    "escalate",
    "get_incident",
    "incident_owner",
    "list_incidents",
    "open_incident",
    "record_event",
    "resolve",
    "timeline",
]
_OPEN_SQL = "state IN ('investigating', 'identified', 'monitoring')"


def get_incident(conn: Connection, incident_id: int, *, lock: bool = False) -> Row:
    """One incident; NotFound (exit 1) names the open ones."""
    row = conn.one(
        "SELECT * FROM incidents WHERE id = :id" + (conn.for_update if lock else ""),
        {"id": incident_id},
    )
    if row is None:
        open_ids = [
            str(r["id"]) for r in conn.execute(f"SELECT id FROM incidents WHERE {_OPEN_SQL}")
        ]
        hint = f"open incidents: {', '.join(open_ids)}" if open_ids else "no incident is open"
        raise NotFound(f"there is no incident #{incident_id}", hint=hint)
    return row


def list_incidents(
    conn: Connection,
    *,
    state: str = "open",
    environment: str | None = None,
    limit: int = 50,
) -> list[Row]:
    """Incidents newest first; `state` is open, all, or one state name."""
    clauses: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if state == "open":
        clauses.append(_OPEN_SQL)
    elif state != "all":
        if state not in STATES:
            raise UsageError(
                f"unknown incident state {state!r}",
                hint=f"use open, all or one of {', '.join(STATES)}",
            )
        clauses.append("state = :state")
        params["state"] = state
    if environment:
        clauses.append("environment = :env")
        params["env"] = environment
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return conn.execute(f"SELECT * FROM incidents{where} ORDER BY id DESC LIMIT :limit", params)


def current_incident(conn: Connection, environment: str | None = None) -> int | None:
    """The most recent open incident (in `environment`, if given), or None."""
    sql = f"SELECT id FROM incidents WHERE {_OPEN_SQL}"
    params: dict[str, Any] = {}
    if environment:
        sql += " AND environment = :env"
        params["env"] = environment
    value = conn.scalar(sql + " ORDER BY id DESC LIMIT 1", params)
    return int(value) if value is not None else None


def record_event(
    conn: Connection,
    kind: str,
    message: str,
    *,
    incident_id: int | None = None,
    environment: str | None = None,
    actor: str = "system",
    details: dict[str, Any] | None = None,
    public: bool = False,
    now: float | None = None,
) -> int | None:
    """Put an event on an incident's timeline: `incident_id`, else the open incident of
    `environment` (or the latest open one). Returns the event id, None when none is open.

    Safe inside the caller's `conn.write()`: it joins that transaction.
    """
    with conn.write():
        target = incident_id if incident_id is not None else current_incident(conn, environment)
        if target is None:
            return None
        row = conn.one(
            "INSERT INTO incident_events (incident_id, ts, kind, actor, message, details, public) "
            "VALUES (:incident, :ts, :kind, :actor, :message, :details, :public) RETURNING id",
            {
                "incident": target,
                "ts": time.time() if now is None else now,
                "kind": kind,
                "actor": actor,
                "message": message,
                "details": json.dumps(details or {}, sort_keys=True, default=str),
                "public": 1 if public else 0,
            },
        )
        conn.execute(
            "UPDATE incidents SET updated_at = :ts WHERE id = :id",
            {"ts": time.time() if now is None else now, "id": target},
        )
    return int(row["id"]) if row else None


def timeline(conn: Connection, incident_id: int, *, public_only: bool = False) -> list[Row]:
    """The incident's events in order (public ones only for a status page)."""
    sql = "SELECT * FROM incident_events WHERE incident_id = :id"
    if public_only:
        sql += " AND public = 1"
    rows = conn.execute(sql + " ORDER BY ts, id", {"id": incident_id})
    for row in rows:
        row["details"] = json.loads(row["details"]) if row["details"] else {}
    return rows


def open_incident(
    conn: Connection,
    config: QualityGatesConfig,
    *,
    title: str,
    incident_type: str,
    severity: str,
    environment: str,
    group_key: str,
    actor: str,
    now: float,
    detected_at: float | None = None,
    details: dict[str, Any] | None = None,
) -> Row:
    """Open an incident, put it on the timeline and in the audit log (call inside a write)."""
    from quality_gates.notify._routing import route_channels

    if severity not in SEVERITIES:
        raise UsageError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    with conn.write():
        row = conn.one(
            "INSERT INTO incidents (title, type, severity, state, environment, group_key, "
            "dedup_key, opened_at, opened_by, detected_at, last_alert_at, escalation_level, "
            "updated_at) VALUES (:title, :type, :severity, 'investigating', :env, :group, "
            ":dedup, :now, :actor, :detected, :now, 0, :now) RETURNING *",
            {
                "title": title,
                "type": incident_type,
                "severity": severity,
                "env": environment,
                "group": group_key,
                "dedup": f"{config.project}-{environment}-{uuid.uuid4().hex[:16]}",
                "now": now,
                "actor": actor,
                "detected": detected_at or now,
            },
        )
        if row is None:
            raise StoreError("the store did not return the incident it inserted")
        record_event(
            conn,
            "opened",
            f"{severity} {incident_type} incident opened: {title}",
            incident_id=row["id"],
            actor=actor,
            details=details,
            public=True,
            now=now,
        )
        audit.append(
            conn,
            actor=actor,
            action="incident.open",
            target=f"incident/{row['id']}",
            details={
                "severity": severity,
                "type": incident_type,
                "environment": environment,
                "title": title,
            },
            ts=now,
        )
        notify(conn, config, row, "open", route_channels(config, incident_type, severity), now)
    return row


def _require_open(row: Row, verb: str) -> None:
    if row["state"] not in OPEN_STATES:
        raise RegistryError(
            f"cannot {verb} incident #{row['id']}: it is {row['state']}",
            hint="only investigating, identified or monitoring incidents change",
        )


def acknowledge(
    conn: Connection,
    config: QualityGatesConfig,
    incident_id: int,
    *,
    actor: str,
    now: float | None = None,
) -> list[str]:
    """Acknowledge: stops escalation and the response clock; PagerDuty hears `acknowledge`."""
    now = time.time() if now is None else now
    with conn.write():
        row = get_incident(conn, incident_id, lock=True)
        _require_open(row, "acknowledge")
        if row["acknowledged_at"] is not None:
            raise RegistryError(
                f"incident #{incident_id} was already acknowledged by {row['acknowledged_by']}"
            )
        conn.execute(
            "UPDATE incidents SET acknowledged_at = :now, acknowledged_by = :actor, "
            "updated_at = :now WHERE id = :id",
            {"now": now, "actor": actor, "id": incident_id},
        )
        response = now - float(row["opened_at"])
        record_event(
            conn,
            "ack",
            f"acknowledged by {actor} after {response:.0f} s",
            incident_id=incident_id,
            actor=actor,
            details={"response_seconds": response},
            public=True,
            now=now,
        )
        audit.append(
            conn,
            actor=actor,
            action="incident.ack",
            target=f"incident/{incident_id}",
            details={},
            ts=now,
        )
        fresh = get_incident(conn, incident_id)
        return notify(conn, config, fresh, "ack", list(notified_channels(conn, incident_id)), now)


def add_note(
    conn: Connection,
    incident_id: int,
    text: str,
    *,
    actor: str,
    public: bool = False,
    state: str | None = None,
    now: float | None = None,
) -> int:
    """A note on the timeline (public ones appear on the status page); optionally a state
    change (investigating -> identified -> monitoring)."""
    now = time.time() if now is None else now
    if not text.strip():
        raise UsageError("a note needs text")
    if state is not None and state not in OPEN_STATES:
        raise UsageError(
            f"a note can move an incident to {', '.join(OPEN_STATES)}, not {state!r}",
            hint="use `incident resolve` to resolve it",
        )
    with conn.write():
        row = get_incident(conn, incident_id, lock=True)
        event = record_event(
            conn, "note", text, incident_id=incident_id, actor=actor, public=public, now=now
        )
        if state is not None and state != row["state"]:
            _require_open(row, "change the state of")
            stamp = {
                "identified": ", identified_at = :now",
                "monitoring": ", mitigated_at = :now",
            }.get(state, "")
            conn.execute(
                f"UPDATE incidents SET state = :state, updated_at = :now{stamp} WHERE id = :id",
                {"state": state, "now": now, "id": incident_id},
            )
            record_event(
                conn,
                "state",
                f"{row['state']} -> {state}",
                incident_id=incident_id,
                actor=actor,
                public=True,
                now=now,
            )
        audit.append(
            conn,
            actor=actor,
            action="incident.note",
            target=f"incident/{incident_id}",
            details={"public": public, "state": state, "text": text},
            ts=now,
        )
    return event or 0


def resolve(
    conn: Connection,
    config: QualityGatesConfig,
    incident_id: int,
    *,
    actor: str,
    reason: str | None = None,
    root_cause: str | None = None,
    now: float | None = None,
) -> list[str]:
    """Resolve; channels that heard of the incident hear the resolve (PagerDuty `resolve`)."""
    now = time.time() if now is None else now
    with conn.write():
        row = get_incident(conn, incident_id, lock=True)
        _require_open(row, "resolve")
        conn.execute(
            "UPDATE incidents SET state = 'resolved', resolved_at = :now, resolved_by = :actor, "
            "mitigated_at = COALESCE(mitigated_at, :now), "
            "root_cause = COALESCE(:cause, root_cause), updated_at = :now WHERE id = :id",
            {"now": now, "actor": actor, "id": incident_id, "cause": root_cause},
        )
        message = f"resolved by {actor}" + (f": {reason}" if reason else "")
        record_event(
            conn, "resolved", message, incident_id=incident_id, actor=actor, public=True, now=now
        )
        audit.append(
            conn,
            actor=actor,
            action="incident.resolve",
            target=f"incident/{incident_id}",
            details={"reason": reason, "root_cause": root_cause},
            ts=now,
        )
        fresh = get_incident(conn, incident_id)
        return notify(
            conn,
            config,
            fresh,
            "resolve",
            list(notified_channels(conn, incident_id)),
            now,
            note=reason,
        )


def escalate(
    conn: Connection,
    config: QualityGatesConfig,
    incident_id: int,
    *,
    actor: str,
    reason: str,
    to: str | None = None,
    now: float | None = None,
) -> tuple[str, list[str]]:
    """Escalate to the matrix's secondary contact (or `to`); returns who and the keys sent."""
    now = time.time() if now is None else now
    with conn.write():
        row = get_incident(conn, incident_id, lock=True)
        _require_open(row, "escalate")
        rule = config.incidents.escalation_for(row["type"])
        level = int(row["escalation_level"]) + 1
        contact = to or (rule.secondary if rule is not None else None)
        if contact is None:
            raise UsageError(
                f"the escalation matrix has no row for {row['type']!r} incidents",
                hint="pass --to CONTACT or add a row under incidents.escalation",
            )
        channels = contact_channels(config, contact)
        conn.execute(
            "UPDATE incidents SET escalation_level = :level, escalated_at = :now, "
            "updated_at = :now WHERE id = :id",
            {"level": level, "now": now, "id": incident_id},
        )
        conn.execute(
            "INSERT INTO escalations (incident_id, ts, level, contact, reason, actor) "
            "VALUES (:id, :now, :level, :contact, :reason, :actor)",
            {
                "id": incident_id,
                "now": now,
                "level": level,
                "contact": contact,
                "reason": reason,
                "actor": actor,
            },
        )
        record_event(
            conn,
            "escalation",
            f"escalated to {contact} (level {level}): {reason}",
            incident_id=incident_id,
            actor=actor,
            details={"contact": contact, "channels": channels, "level": level},
            now=now,
        )
        audit.append(
            conn,
            actor=actor,
            action="incident.escalate",
            target=f"incident/{incident_id}",
            details={"contact": contact, "level": level, "reason": reason},
            ts=now,
        )
        fresh = get_incident(conn, incident_id)
        keys = notify(
            conn,
            config,
            fresh,
            "escalate",
            channels,
            now,
            key_suffix=f"-{level}",
            note=f"Escalated to {contact}: {reason}",
        )
    return contact, keys
