"""Failover effectiveness: disaster-recovery drills and real failovers and rollbacks, each
measured against the runbook's recovery targets.

Drill rows come from `drill_runs` (written by `quality-gates drill`): `figures` maps a name to
a measured value, `verdicts` maps a name to `{value, target, met}`. They are read
defensively: a running drill or an unknown figure shows as it is, never as a pass.
"""

from __future__ import annotations

import json
from typing import Any

from quality_gates.notify._channels import iso
from quality_gates.remediation import _remedy_store
from quality_gates.reports._events import ROW_LIMIT, remediations
from quality_gates.reports._telemetry import FAIL, NO_DATA, PASS, Scope, totals
from quality_gates.store.db import Connection

# The runbook's recovery targets (seconds, and a share of requests).
TARGETS: dict[str, tuple[float, str]] = {
    "detection_seconds": (30.0, "s"),
    "failover_seconds": (60.0, "s"),
    "restoration_seconds": (120.0, "s"),
    "total_recovery_seconds": (300.0, "s"),
    "request_loss": (0.01, "ratio"),
    "rollback_seconds": (30.0, "s"),
}
ONSET_LOOKBACK_S = 300.0  # how far before an alert the first failed attempt is looked for
LOSS_TAIL_S = 60.0  # requests counted after the failover, while the route settles


def unit_of(name: str) -> str:
    """A figure's unit from its name: `*_seconds` are seconds, losses and rates are shares,
    anything else is a count."""
    if name.endswith("_seconds"):
        return "s"
    if any(word in name for word in ("loss", "rate", "share", "ratio")):
        return "ratio"
    return "count"


def judged(name: str, value: float | None, target: float | None = None) -> dict[str, Any]:
    """A figure against its target (the runbook's unless given): below it passes."""
    default, unit = TARGETS.get(name, (None, unit_of(name)))
    goal = target if target is not None else default
    if value is None or goal is None:
        status = NO_DATA if value is None else "INFO"
    else:
        status = PASS if value < goal else FAIL
    return {"name": name, "value": value, "target": goal, "unit": unit, "status": status}


def _json_dict(text: object) -> dict[str, Any]:
    try:
        data = json.loads(str(text or "{}"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def drill_verdicts(figures: dict[str, Any], verdicts: dict[str, Any]) -> list[dict[str, Any]]:
    """A drill's figures, each with the verdict the drill recorded (or the runbook's target)."""
    out = []
    for name in sorted(set(figures) | set(verdicts)):
        recorded = verdicts.get(name)
        if isinstance(recorded, dict):
            value = _number(recorded.get("value", figures.get(name)))
            target = _number(recorded.get("target"))
            met = recorded.get("met")
            row = judged(name, value, target)
            if isinstance(met, bool):
                row["status"] = PASS if met else FAIL
            out.append(row)
        else:
            out.append(judged(name, _number(figures.get(name))))
    return out


def drills(
    conn: Connection, start: float, end: float, environment: str | None
) -> list[dict[str, Any]]:
    """Drill runs started in the period, newest last."""
    sql = "SELECT * FROM drill_runs WHERE started_at >= :a AND started_at <= :b"
    params: dict[str, Any] = {"a": start, "b": end, "limit": ROW_LIMIT}
    if environment:
        sql += " AND environment = :env"
        params["env"] = environment
    rows = conn.execute(sql + " ORDER BY started_at, id LIMIT :limit", params)
    return [
        {
            "id": int(r["id"]),
            "scenario": r["scenario"],
            "environment": r["environment"],
            "provider": r["provider"],
            "status": r["status"],
            "started_at": iso(r["started_at"]),
            "finished_at": iso(r["finished_at"]),
            "incident_id": r["incident_id"],
            "actor": r["actor"],
            "figures": drill_verdicts(_json_dict(r["figures"]), _json_dict(r["verdicts"])),
        }
        for r in rows
    ]


def _onset(conn: Connection, provider: str, alert_at: float) -> float | None:
    value = conn.scalar(
        "SELECT MIN(ts) FROM attempts WHERE provider = :p AND status = 'error' AND ts >= :a "
        "AND ts <= :b",
        {"p": provider, "a": alert_at - ONSET_LOOKBACK_S, "b": alert_at},
    )
    return float(value) if value is not None else None


def real_failovers(
    conn: Connection, start: float, end: float, environment: str | None, now: float
) -> list[dict[str, Any]]:
    """Automatic failovers in the period: detection (from the first failed upstream attempt,
    an estimate), failover after the alert, requests lost, total recovery to mitigation."""
    out = []
    for action in remediations(conn, start, end, environment):
        if action["action"] != "failover" or action["state"] in ("dry_run", "skipped"):
            continue
        remedy = _remedy_store.get(conn, action["id"])
        if remedy is None:
            continue
        alert_at, moved = remedy.alert_at, remedy.started_at
        onset = _onset(conn, action["target"], float(alert_at)) if alert_at else None
        detection = alert_at - onset if alert_at is not None and onset is not None else None
        loss = None
        if onset is not None:
            scope = Scope(onset, min(moved + LOSS_TAIL_S, now), now, action["environment"])
            requests, _ = totals(conn, scope, histograms=False)
            loss = requests.errors / requests.count if requests.count > 0 else None
        recovery = None
        if action["incident_id"] is not None and onset is not None:
            mitigated = conn.scalar(
                "SELECT mitigated_at FROM incidents WHERE id = :id", {"id": action["incident_id"]}
            )
            recovery = float(mitigated) - onset if mitigated is not None else None
        out.append(
            {
                **action,
                "figures": [
                    judged("detection_seconds", detection),
                    judged("failover_seconds", _number(action["seconds_after_alert"])),
                    judged("request_loss", loss),
                    judged("total_recovery_seconds", recovery),
                ],
            }
        )
    return out


def real_rollbacks(
    conn: Connection, start: float, end: float, environment: str | None
) -> list[dict[str, Any]]:
    """Automatic rollbacks in the period, each from its alert to `current` moved."""
    return [
        {**a, "figures": [judged("rollback_seconds", _number(a["seconds_after_alert"]))]}
        for a in remediations(conn, start, end, environment)
        if a["action"] == "rollback" and a["state"] == "done"
    ]
