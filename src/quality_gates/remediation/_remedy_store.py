"""SQL for the `remediations` table: what automatic remediation did, weighed or skipped.

A row per action: `rollback` (state done, dry_run or skipped), `failover` (active while the
provider is out of the route, failing_back during the steps back, then restored; dry_run or
skipped when nothing changed; superseded when an operator moved the weights meanwhile).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from quality_gates.store.db import Connection, Row

ACTIVE_FAILOVER = ("active", "failing_back")
RECENT_LIMIT = 20


@dataclass
class Remedy:
    """One row of `remediations`."""

    id: int
    environment: str
    action: str
    target: str
    state: str
    incident_id: int | None
    rule: str | None
    alert_at: float | None
    started_at: float
    updated_at: float
    finished_at: float | None
    step: str | None
    summary: str
    details: dict[str, Any]


def _remedy(row: Row) -> Remedy:
    return Remedy(
        int(row["id"]),
        str(row["environment"]),
        str(row["action"]),
        str(row["target"]),
        str(row["state"]),
        row["incident_id"],
        row["rule"],
        row["alert_at"],
        float(row["started_at"]),
        float(row["updated_at"]),
        row["finished_at"],
        row["step"],
        str(row["summary"]),
        json.loads(row["details"] or "{}"),
    )


def insert(
    conn: Connection,
    *,
    environment: str,
    action: str,
    target: str,
    state: str,
    summary: str,
    now: float,
    incident_id: int | None = None,
    rule: str | None = None,
    fingerprint: str | None = None,
    alert_at: float | None = None,
    step: str | None = None,
    details: dict[str, Any] | None = None,
    operation_id: str | None = None,
    finished: bool = False,
) -> int:
    """Record an action; returns its id. Call inside `conn.write()`."""
    row = conn.one(
        "INSERT INTO remediations (environment, action, target, state, incident_id, rule, "
        "fingerprint, alert_at, started_at, updated_at, finished_at, step, summary, details, "
        "operation_id) VALUES (:env, :action, :target, :state, :incident, :rule, :fp, "
        ":alert_at, :now, :now, :finished, :step, :summary, :details, :op) RETURNING id",
        {
            "env": environment,
            "action": action,
            "target": target,
            "state": state,
            "incident": incident_id,
            "rule": rule,
            "fp": fingerprint,
            "alert_at": alert_at,
            "now": now,
            "finished": now if finished else None,
            "step": step,
            "summary": summary,
            "details": json.dumps(details or {}, sort_keys=True, default=str),
            "op": operation_id,
        },
    )
    return int(row["id"]) if row else 0


def update(
    conn: Connection,
    remedy_id: int,
    *,
    state: str,
    now: float,
    step: str | None,
    details: dict[str, Any],
    finished: bool = False,
) -> None:
    """Move an action on (its state, step and details)."""
    conn.execute(
        "UPDATE remediations SET state = :state, step = :step, details = :details, "
        "updated_at = :now, finished_at = CASE WHEN :finished = 1 THEN :now ELSE finished_at "
        "END WHERE id = :id",
        {
            "state": state,
            "step": step,
            "details": json.dumps(details, sort_keys=True, default=str),
            "now": now,
            "finished": 1 if finished else 0,
            "id": remedy_id,
        },
    )


def find(
    conn: Connection,
    *,
    environment: str | None = None,
    action: str | None = None,
    target: str | None = None,
    states: tuple[str, ...] | None = None,
    incident_id: int | None = None,
    since: float | None = None,
    limit: int = RECENT_LIMIT,
) -> list[Remedy]:
    """Actions newest first, filtered."""
    clauses: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    for column, value in (
        ("environment", environment),
        ("action", action),
        ("target", target),
        ("incident_id", incident_id),
    ):
        if value is not None:
            clauses.append(f"{column} = :{column}")
            params[column] = value
    if states:
        names = [f":s{i}" for i in range(len(states))]
        clauses.append(f"state IN ({', '.join(names)})")
        params.update({f"s{i}": s for i, s in enumerate(states)})
    if since is not None:
        clauses.append("updated_at >= :since")
        params["since"] = since
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    rows = conn.execute(f"SELECT * FROM remediations{where} ORDER BY id DESC LIMIT :limit", params)
    return [_remedy(r) for r in rows]


def get(conn: Connection, remedy_id: int) -> Remedy | None:
    """One action by id."""
    row = conn.one("SELECT * FROM remediations WHERE id = :id", {"id": remedy_id})
    return _remedy(row) if row else None
