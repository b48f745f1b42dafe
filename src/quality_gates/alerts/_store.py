"""SQL for alert states, alert events and silences."""

from __future__ import annotations

import json
from typing import Any

from quality_gates.alerts._rules import AlertState, Matcher, Silence, Transition, parse_matcher
from quality_gates.store.db import Connection, Row

_STATE_COLUMNS = (
    "fingerprint",
    "rule",
    "labels",
    "environment",
    "metric",
    "severity",
    "type",
    "state",
    "value",
    "threshold",
    "active_since",
    "fired_at",
    "last_true_at",
    "resolved_at",
    "updated_at",
    "silenced_by",
    "inhibited_by",
    "incident_id",
    "summary",
)


def _state(row: Row) -> AlertState:
    return AlertState(
        fingerprint=row["fingerprint"],
        rule=row["rule"],
        labels=json.loads(row["labels"]),
        environment=row["environment"],
        metric=row["metric"],
        severity=row["severity"],
        type=row["type"],
        state=row["state"],
        value=row["value"],
        threshold=row["threshold"],
        active_since=row["active_since"],
        updated_at=row["updated_at"],
        summary=row["summary"],
        fired_at=row["fired_at"],
        last_true_at=row["last_true_at"],
        resolved_at=row["resolved_at"],
        silenced_by=row["silenced_by"],
        inhibited_by=row["inhibited_by"],
        incident_id=row["incident_id"],
    )


def load_states(conn: Connection, *, active_only: bool = False) -> dict[str, AlertState]:
    """Every stored alert state by fingerprint (pending and firing only, if asked)."""
    sql = "SELECT * FROM alert_states"
    if active_only:
        sql += " WHERE state IN ('pending', 'firing')"
    return {row["fingerprint"]: _state(row) for row in conn.execute(sql)}


def save_state(conn: Connection, state: AlertState) -> None:
    """Insert or update one alert state."""
    values: dict[str, Any] = {name: getattr(state, name) for name in _STATE_COLUMNS}
    values["labels"] = json.dumps(state.labels, sort_keys=True)
    columns = ", ".join(_STATE_COLUMNS)
    params = ", ".join(f":{c}" for c in _STATE_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS if c != "fingerprint")
    conn.execute(
        f"INSERT INTO alert_states ({columns}) VALUES ({params}) "
        f"ON CONFLICT (fingerprint) DO UPDATE SET {updates}",
        values,
    )


def delete_state(conn: Connection, fingerprint: str) -> None:
    """Forget an alert (a pending alert that stopped holding)."""
    conn.execute("DELETE FROM alert_states WHERE fingerprint = :f", {"f": fingerprint})


def prune_resolved(conn: Connection, before: float) -> None:
    """Drop resolved states older than `before` (their events stay)."""
    conn.execute(
        "DELETE FROM alert_states WHERE state = 'resolved' AND resolved_at < :before",
        {"before": before},
    )


def add_event(conn: Connection, transition: Transition, now: float) -> None:
    """Record an alert transition."""
    alert = transition.alert
    conn.execute(
        "INSERT INTO alert_events (ts, fingerprint, rule, labels, environment, severity, "
        "from_state, to_state, value, incident_id) VALUES (:ts, :fp, :rule, :labels, :env, "
        ":severity, :from_state, :to_state, :value, :incident)",
        {
            "ts": now,
            "fp": alert.fingerprint,
            "rule": alert.rule,
            "labels": json.dumps(alert.labels, sort_keys=True),
            "env": alert.environment,
            "severity": alert.severity,
            "from_state": transition.from_state,
            "to_state": transition.to_state,
            "value": alert.value,
            "incident": alert.incident_id,
        },
    )


def alert_events(conn: Connection, *, since: float = 0.0, limit: int = 100) -> list[Row]:
    """Recent alert transitions, newest first."""
    return conn.execute(
        "SELECT * FROM alert_events WHERE ts >= :since ORDER BY id DESC LIMIT :limit",
        {"since": since, "limit": limit},
    )


# --- silences ------------------------------------------------------------------------------


def _silence(row: Row) -> Silence:
    matchers = tuple(parse_matcher(text) for text in json.loads(row["matchers"]))
    return Silence(row["id"], matchers, row["starts_at"], row["ends_at"], row["expired_at"])


def insert_silence(
    conn: Connection,
    *,
    matchers: list[Matcher],
    comment: str,
    created_by: str,
    starts_at: float,
    ends_at: float,
    now: float,
) -> int:
    """Store a silence; returns its id."""
    row = conn.one(
        "INSERT INTO silences (matchers, comment, created_by, created_at, starts_at, ends_at) "
        "VALUES (:m, :comment, :by, :now, :starts, :ends) RETURNING id",
        {
            "m": json.dumps([str(m) for m in matchers]),
            "comment": comment,
            "by": created_by,
            "now": now,
            "starts": starts_at,
            "ends": ends_at,
        },
    )
    return int(row["id"]) if row else 0


def silence_rows(conn: Connection, *, include_expired: bool, now: float) -> list[Row]:
    """Silences as stored, newest first; expired ones only if asked."""
    sql = "SELECT * FROM silences"
    params: dict[str, Any] = {}
    if not include_expired:
        sql += " WHERE expired_at IS NULL AND ends_at > :now"
        params["now"] = now
    return conn.execute(sql + " ORDER BY id DESC", params)


def active_silences(conn: Connection, now: float) -> list[Silence]:
    """Silences in force (or scheduled) now."""
    return [_silence(r) for r in silence_rows(conn, include_expired=False, now=now)]


def get_silence(conn: Connection, silence_id: int, *, lock: bool = False) -> Row | None:
    """One silence row."""
    return conn.one(
        "SELECT * FROM silences WHERE id = :id" + (conn.for_update if lock else ""),
        {"id": silence_id},
    )


def expire_silence(conn: Connection, silence_id: int, *, actor: str, now: float) -> None:
    """End a silence now."""
    conn.execute(
        "UPDATE silences SET expired_at = :now, expired_by = :actor WHERE id = :id",
        {"now": now, "actor": actor, "id": silence_id},
    )
