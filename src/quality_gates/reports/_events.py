"""What happened in the period, from the store's records: incidents with their response and
resolution times, alerts, remediations, alias moves, gate runs and routine checks."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from quality_gates import incidents
from quality_gates.alerts._store import alert_events
from quality_gates.notify._channels import iso
from quality_gates.remediation import _remedy_store
from quality_gates.routines import jobs
from quality_gates.store import gate_runs
from quality_gates.store.db import Connection
from quality_gates.store.registry import history

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

ROW_LIMIT = 1000  # rows of one kind a report lists; the period's counts say when more exist


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else max(0.0, float(end) - float(start))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def incident_rows(
    conn: Connection, config: QualityGatesConfig, start: float, end: float, environment: str | None
) -> list[dict[str, Any]]:
    """Incidents opened in [start, end], or still open, with TTA and TTR against the
    severity table's response times."""
    rows = incidents.list_incidents(conn, state="all", environment=environment, limit=ROW_LIMIT)
    out = []
    for row in rows:
        opened = float(row["opened_at"])
        still_open = row["state"] in incidents.OPEN_STATES
        if not (start <= opened <= end or still_open):
            continue
        level = config.incidents.severities.get(row["severity"])
        target = level.response_time if level is not None else None
        tta = _span(opened, row["acknowledged_at"])
        breached = row["response_breached_at"] is not None or (
            tta is not None and target is not None and tta > target
        )
        out.append(
            {
                "id": int(row["id"]),
                "title": row["title"],
                "severity": row["severity"],
                "type": row["type"],
                "state": row["state"],
                "environment": row["environment"],
                "opened_at": iso(opened),
                "acknowledged_by": row["acknowledged_by"],
                "tta_seconds": tta,
                "ttr_seconds": _span(opened, row["resolved_at"]),
                "recovery_seconds": _span(opened, row["mitigated_at"]),
                "response_target_seconds": target,
                "response_met": None if tta is None and not breached else not breached,
            }
        )
    return out


def by_severity(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Counts and mean/max TTA and TTR per severity, P0 to P3."""
    out = []
    for severity in incidents.SEVERITIES:
        chosen = [i for i in items if i["severity"] == severity]
        tta = [i["tta_seconds"] for i in chosen if i["tta_seconds"] is not None]
        ttr = [i["ttr_seconds"] for i in chosen if i["ttr_seconds"] is not None]
        out.append(
            {
                "severity": severity,
                "count": len(chosen),
                "open": sum(1 for i in chosen if i["state"] in incidents.OPEN_STATES),
                "mean_tta_seconds": _mean(tta),
                "max_tta_seconds": max(tta, default=None),
                "mean_ttr_seconds": _mean(ttr),
                "max_ttr_seconds": max(ttr, default=None),
                "response_breaches": sum(1 for i in chosen if i["response_met"] is False),
            }
        )
    return out


def alerts(conn: Connection, start: float, end: float, environment: str | None) -> dict[str, Any]:
    """Alert transitions in the period: how often each rule fired."""
    events = [
        e
        for e in alert_events(conn, since=start, limit=50 * ROW_LIMIT)
        if e["ts"] <= end and (environment is None or e["environment"] == environment)
    ]
    fired: dict[tuple[str, str], int] = {}
    for event in events:
        if event["to_state"] == "firing":
            key = (str(event["rule"]), str(event["severity"]))
            fired[key] = fired.get(key, 0) + 1
    return {
        "transitions": len(events),
        "fired": [
            {"rule": rule, "severity": severity, "times": n}
            for (rule, severity), n in sorted(fired.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    }


def incident_alerts(conn: Connection, incident_id: int) -> list[dict[str, Any]]:
    """The alert transitions attached to one incident, in order."""
    rows = conn.execute(
        "SELECT ts, rule, severity, labels, from_state, to_state, value FROM alert_events "
        "WHERE incident_id = :id ORDER BY ts, id",
        {"id": incident_id},
    )
    return [
        {
            "time": iso(r["ts"]),
            "rule": r["rule"],
            "severity": r["severity"],
            "labels": json.loads(r["labels"] or "{}"),
            "transition": f"{r['from_state']} -> {r['to_state']}",
            "value": r["value"],
        }
        for r in rows
    ]


def remediations(
    conn: Connection,
    start: float,
    end: float,
    environment: str | None,
    *,
    incident_id: int | None = None,
) -> list[dict[str, Any]]:
    """Rollbacks, failovers and failbacks taken (or weighed) in the period, with durations."""
    found = _remedy_store.find(
        conn, environment=environment, incident_id=incident_id, since=start, limit=ROW_LIMIT
    )
    out = []
    for r in reversed(found):
        if r.started_at > end:
            continue
        out.append(
            {
                "id": r.id,
                "action": r.action,
                "target": r.target,
                "to": r.details.get("to"),
                "state": r.state,
                "environment": r.environment,
                "incident_id": r.incident_id,
                "rule": r.rule,
                "started_at": iso(r.started_at),
                "finished_at": iso(r.finished_at),
                "seconds_after_alert": r.details.get("seconds_after_alert"),
                # A rollback is recorded done in the instant it happens: no duration of its own.
                "duration_seconds": _span(r.started_at, r.finished_at)
                if r.finished_at != r.started_at
                else None,
                "summary": r.summary,
            }
        )
    return out


def alias_changes(
    conn: Connection, start: float, end: float, environment: str | None
) -> list[dict[str, Any]]:
    """Alias moves (promotions, rollbacks) in the period, oldest first."""
    moves = history(conn, environment=environment, since=start, limit=ROW_LIMIT)
    return [
        {
            "time": iso(m.ts),
            "ts": m.ts,
            "environment": m.environment,
            "alias": m.alias,
            "from_model": m.from_model,
            "to_model": m.to_model,
            "operation": m.operation,
            "actor": m.actor,
            "source": m.source,
            "duration_ms": m.duration_ms,
            "incident_id": m.incident_id,
            "reason": m.reason,
        }
        for m in reversed(moves)
        if m.ts <= end
    ]


def gates(
    conn: Connection, start: float, end: float, environment: str | None, model_id: str | None
) -> dict[str, Any]:
    """Gate runs started in the period with their verdicts, and the verdict counts."""
    runs = [
        r
        for r in gate_runs.list_runs(
            conn, environment=environment, model_id=model_id, limit=ROW_LIMIT
        )
        if start <= r.started_at <= end
    ]
    counts: dict[str, int] = {}
    for run in runs:
        name = run.verdict or run.status
        counts[name] = counts.get(name, 0) + 1
    return {
        "verdicts": dict(sorted(counts.items())),
        "runs": [
            {
                "id": r.id,
                "kind": r.kind,
                "environment": r.environment,
                "model_id": r.model_id,
                "baseline": r.baseline,
                "status": r.status,
                "verdict": r.verdict,
                "started_at": iso(r.started_at),
                "duration_seconds": _span(r.started_at, r.finished_at),
                "actor": r.actor,
            }
            for r in reversed(runs)
        ],
    }


def routine_checks(conn: Connection, start: float, end: float) -> dict[str, Any]:
    """Routine job runs (daily health check, weekly pipeline, ...) in the period."""
    runs = [r for r in jobs.last_runs(conn, limit=ROW_LIMIT) if start <= r["started_at"] <= end]
    per_job: dict[str, dict[str, Any]] = {}
    for run in runs:
        entry = per_job.setdefault(
            str(run["job"]),
            {
                "job": run["job"],
                "runs": 0,
                "passed": 0,
                "failed": 0,
                "last_status": None,
                "last_run": None,
            },
        )
        entry["runs"] += 1
        if run["status"] == "passed":
            entry["passed"] += 1
        elif run["status"] in ("failed", "error"):
            entry["failed"] += 1
        if entry["last_run"] is None:  # newest first
            entry["last_status"] = run["status"]
            entry["last_run"] = iso(run["started_at"])
    return {"jobs": sorted(per_job.values(), key=lambda j: str(j["job"]))}


def postmortem_path(conn: Connection, incident_id: int) -> str | None:
    """Where the incident's review was last written (from the audit log), if it was."""
    from quality_gates.store import audit

    for entry in audit.entries(
        conn, action="incident.postmortem", target=f"incident/{incident_id}", limit=1
    ):
        path = entry.details.get("path")
        return str(path) if path else None
    return None
