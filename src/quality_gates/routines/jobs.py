"""Routine job runs (daily health check, weekly pipeline, ...): each run is stored so that
`status` and the reports can show it and a failed run can raise an alert.

The scheduler (`routines._scheduler`) writes these rows. A routine run's `details` hold: trigger
(schedule or manual), command, cron, timezone; for a scheduled run slot (epoch), late,
skipped_slots and timing ("on time" / "late by 3 h"); once finished exit_code, duration (s),
timed_out, summary (one line) and output (its tail, capped by routines.output_limit).
"""

from __future__ import annotations

import json
import time
from typing import Any

from quality_gates.store.db import Connection, Row

STATUSES = ("running", "passed", "failed", "error")


def start_run(
    conn: Connection,
    job: str,
    *,
    holder: str,
    now: float | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Record that `job` started (with what is known already, e.g. its slot); returns the
    run id."""
    with conn.write():
        row = conn.one(
            "INSERT INTO job_runs (job, started_at, status, holder, details) "
            "VALUES (:job, :now, 'running', :holder, :details) RETURNING id",
            {
                "job": job,
                "now": time.time() if now is None else now,
                "holder": holder,
                "details": json.dumps(details or {}, sort_keys=True, default=str),
            },
        )
    return int(row["id"]) if row else 0


def finish_run(
    conn: Connection,
    run_id: int,
    status: str,
    *,
    details: dict[str, Any] | None = None,
    now: float | None = None,
) -> None:
    """Record how a run ended: passed, failed or error."""
    if status not in STATUSES[1:]:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES[1:])}")
    with conn.write():
        conn.execute(
            "UPDATE job_runs SET finished_at = :now, status = :status, details = :details "
            "WHERE id = :id",
            {
                "now": time.time() if now is None else now,
                "status": status,
                "details": json.dumps(details or {}, sort_keys=True, default=str),
                "id": run_id,
            },
        )


def last_runs(conn: Connection, *, job: str | None = None, limit: int = 20) -> list[Row]:
    """Recent runs, newest first, details decoded."""
    sql = "SELECT * FROM job_runs"
    params: dict[str, Any] = {"limit": limit}
    if job is not None:
        sql += " WHERE job = :job"
        params["job"] = job
    rows = conn.execute(sql + " ORDER BY started_at DESC, id DESC LIMIT :limit", params)
    for row in rows:
        row["details"] = json.loads(row["details"] or "{}")
    return rows


def latest_by_job(conn: Connection, names: list[str]) -> dict[str, Row]:
    """The latest run of each job named (running or finished), details decoded."""
    out: dict[str, Row] = {}
    for name in names:
        rows = last_runs(conn, job=name, limit=1)
        if rows:
            out[name] = rows[0]
    return out


def run_view(row: Row) -> dict[str, Any]:
    """One run as JSON-ready data (the output tail left out: `routines run` shows it)."""
    details = row["details"]
    finished = row["finished_at"]
    return {
        "id": row["id"],
        "status": row["status"],
        "trigger": details.get("trigger"),
        "started_at": iso_utc(row["started_at"]),
        "finished_at": iso_utc(finished),
        "started_ts": row["started_at"],
        "duration": details.get("duration"),
        "exit_code": details.get("exit_code"),
        "summary": details.get("summary"),
        "timing": details.get("timing"),
        "late": bool(details.get("late")),
    }


def iso_utc(ts: float | None) -> str | None:
    """An epoch as ISO 8601 UTC (`2026-11-27T06:00:00Z`)."""
    from datetime import UTC, datetime

    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
