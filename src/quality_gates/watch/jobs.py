"""Routine job runs (daily health check, weekly pipeline, ...): each run is stored so that
`status` and the reports can show it and a failed run can raise an alert.

The scheduler itself belongs to the routine-checks work; this is the record it writes.
"""

from __future__ import annotations

import json
import time
from typing import Any

from quality_gates.store.db import Connection, Row

STATUSES = ("running", "passed", "failed", "error")


def start_run(conn: Connection, job: str, *, holder: str, now: float | None = None) -> int:
    """Record that `job` started; returns the run id."""
    with conn.write():
        row = conn.one(
            "INSERT INTO job_runs (job, started_at, status, holder, details) "
            "VALUES (:job, :now, 'running', :holder, '{}') RETURNING id",
            {"job": job, "now": time.time() if now is None else now, "holder": holder},
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
