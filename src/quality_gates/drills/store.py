"""Drill runs in the store (`drill_runs`): one row per run, written when it starts and when it
ends, each with an audit entry. `report --type failover-effectiveness` reads these rows; the
figure names are listed in `targets.FIGURES` and documented in docs/drills.md.
"""

from __future__ import annotations

import json
import time
from typing import Any

from quality_gates.store import audit
from quality_gates.store.db import Connection, Row

STATUSES = ("running", "passed", "missed", "failed")


def record_run(
    conn: Connection,
    *,
    scenario: str,
    environment: str,
    provider: str | None,
    actor: str,
    details: dict[str, Any] | None = None,
    now: float | None = None,
) -> int:
    """Record that a drill started (status `running`); returns its id."""
    with conn.write():
        row = conn.one(
            "INSERT INTO drill_runs (scenario, environment, provider, started_at, status, "
            "figures, verdicts, details, actor) VALUES (:scenario, :env, :provider, :now, "
            "'running', '{}', '{}', :details, :actor) RETURNING id",
            {
                "scenario": scenario,
                "env": environment,
                "provider": provider,
                "now": time.time() if now is None else now,
                "details": _dump(details or {}),
                "actor": actor,
            },
        )
        run_id = int(row["id"]) if row else 0
        audit.append(
            conn,
            actor=actor,
            action="drill.start",
            target=f"{environment}/{scenario}",
            details={"run": run_id, "provider": provider},
        )
    return run_id


def finish_run(
    conn: Connection,
    run_id: int,
    *,
    status: str,
    actor: str,
    incident_id: int | None,
    figures: dict[str, Any],
    verdicts: dict[str, Any],
    details: dict[str, Any],
    now: float | None = None,
) -> None:
    """Record how a run ended: passed, missed (a runbook target missed) or failed (the drill
    itself could not run)."""
    if status not in STATUSES[1:]:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES[1:])}")
    with conn.write():
        row = conn.one(
            "SELECT scenario, environment FROM drill_runs WHERE id = :id", {"id": run_id}
        )
        conn.execute(
            "UPDATE drill_runs SET finished_at = :now, status = :status, incident_id = :incident, "
            "figures = :figures, verdicts = :verdicts, details = :details WHERE id = :id",
            {
                "now": time.time() if now is None else now,
                "status": status,
                "incident": incident_id,
                "figures": _dump(figures),
                "verdicts": _dump(verdicts),
                "details": _dump(details),
                "id": run_id,
            },
        )
        missed = sorted(k for k, v in verdicts.items() if v.get("runbook_met") is False)
        audit.append(
            conn,
            actor=actor,
            action="drill.finish",
            target=f"{row['environment']}/{row['scenario']}" if row else str(run_id),
            details={"run": run_id, "status": status, "incident_id": incident_id, "missed": missed},
        )


def _run(row: Row) -> dict[str, Any]:
    out = dict(row)
    for key in ("figures", "verdicts", "details"):
        out[key] = json.loads(out[key] or "{}")
    return out


def list_runs(
    conn: Connection,
    *,
    scenario: str | None = None,
    environment: str | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The latest runs first, figures, verdicts and details parsed."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if scenario:
        where.append("scenario = :scenario")
        params["scenario"] = scenario
    if environment:
        where.append("environment = :env")
        params["env"] = environment
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT * FROM drill_runs{clause} ORDER BY started_at DESC, id DESC LIMIT :limit", params
    )
    return [_run(r) for r in rows]


def get_run(conn: Connection, run_id: int) -> dict[str, Any] | None:
    """One run, or None."""
    row = conn.one("SELECT * FROM drill_runs WHERE id = :id", {"id": run_id})
    return _run(row) if row else None


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
