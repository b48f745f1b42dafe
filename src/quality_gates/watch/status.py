"""What `status` shows from the watch plane, as JSON-ready data (no pydantic needed)."""

from __future__ import annotations

import json
import time
from typing import Any

from quality_gates.config import ConfigSnapshot
from quality_gates.notify._channels import iso
from quality_gates.signals._resources import NO_HEARTBEAT, gateway_instances
from quality_gates.store._leader import WATCH_LEASE, current_holder
from quality_gates.store.db import Connection
from quality_gates.store.registry import get_meta
from quality_gates.units import parse_duration

RECENT_NOTIFICATIONS = 10
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def _response_targets(config: ConfigSnapshot | None) -> dict[str, float]:
    defaults = {"P0": 900.0, "P1": 1800.0, "P2": 7200.0, "P3": 86400.0}
    if config is None:
        return defaults
    table = config.data.get("incidents", {}).get("severities", {})
    for level, row in table.items():
        raw = row.get("response_time") if isinstance(row, dict) else None
        if raw is not None:
            defaults[level] = parse_duration(raw, bare_unit="s")
    return defaults


def watch_status(
    conn: Connection,
    config: ConfigSnapshot | None = None,
    *,
    environment: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Active alerts, open incidents with their age against the response target, recent
    notifications, active silences, the evaluator and the gateways' heartbeats."""
    now = time.time() if now is None else now
    last = get_meta(conn, "watch_last_evaluation")
    env_clause = " AND environment = :env" if environment else ""
    params: dict[str, Any] = {"env": environment} if environment else {}
    alerts = []
    for row in conn.execute(
        "SELECT * FROM alert_states WHERE state IN ('pending', 'firing')" + env_clause, params
    ):
        alerts.append(
            {
                "rule": row["rule"],
                "state": row["state"],
                "severity": row["severity"],
                "labels": json.loads(row["labels"]),
                "value": row["value"],
                "threshold": row["threshold"],
                "summary": row["summary"],
                "since": iso(row["active_since"]),
                "fired_at": iso(row["fired_at"]),
                "silenced_by": row["silenced_by"],
                "inhibited": row["inhibited_by"] is not None,
                "incident": row["incident_id"],
            }
        )
    alerts.sort(key=lambda a: (a["state"] != "firing", _SEVERITY_ORDER.get(a["severity"], 9)))
    targets = _response_targets(config)
    open_incidents = []
    for row in conn.execute(
        "SELECT * FROM incidents WHERE state IN ('investigating', 'identified', 'monitoring')"
        + env_clause
        + " ORDER BY severity, id",
        params,
    ):
        target = targets.get(row["severity"], 0.0)
        age = now - float(row["opened_at"])
        responded = row["acknowledged_at"]
        open_incidents.append(
            {
                "id": row["id"],
                "title": row["title"],
                "severity": row["severity"],
                "type": row["type"],
                "state": row["state"],
                "environment": row["environment"],
                "opened_at": iso(row["opened_at"]),
                "age_seconds": round(age, 1),
                "response_target_seconds": target,
                "acknowledged_at": iso(responded),
                "acknowledged_by": row["acknowledged_by"],
                "response_seconds": round(float(responded) - float(row["opened_at"]), 1)
                if responded is not None
                else None,
                "response_breached": (responded is None and age > target)
                or (responded is not None and float(responded) - float(row["opened_at"]) > target),
                "escalation_level": row["escalation_level"],
            }
        )
    notifications = [
        {
            "id": row["id"],
            "channel": row["channel"],
            "event": row["event"],
            "incident": row["incident_id"],
            "status": row["status"],
            "attempts": row["attempts"],
            "created_at": iso(row["created_at"]),
            "sent_at": iso(row["sent_at"]),
            "last_error": row["last_error"],
        }
        for row in conn.execute(
            "SELECT * FROM notifications ORDER BY id DESC LIMIT :n", {"n": RECENT_NOTIFICATIONS}
        )
    ]
    backlog = {
        row["status"]: int(row["n"])
        for row in conn.execute(
            "SELECT status, COUNT(*) AS n FROM notifications WHERE status IN "
            "('pending', 'sending', 'failed') GROUP BY status"
        )
    }
    silences = conn.scalar(
        "SELECT COUNT(*) FROM silences WHERE expired_at IS NULL AND starts_at <= :now "
        "AND ends_at > :now",
        {"now": now},
    )
    gateways = gateway_instances(conn, now, environment=environment)
    return {
        "evaluator": {
            "leader": current_holder(conn, WATCH_LEASE, now),
            "last_evaluation": iso(float(last)) if last else None,
            "seconds_since": round(now - float(last), 1) if last else None,
        },
        "alerts": alerts,
        "incidents": open_incidents,
        "notifications": notifications,
        "notification_backlog": backlog,
        "active_silences": int(silences or 0),
        "gateways": gateways or NO_HEARTBEAT,
    }
