"""Gate runs in the store: ids, config hashes, versions, and what `status`/`report` show."""

from __future__ import annotations

import hashlib
import json
import platform
import time
import uuid
from typing import Any

from quality_gates.store import audit
from quality_gates.store import gate_runs as sql
from quality_gates.store.db import Connection

KINDS = ("offline", "performance", "canary", "pipeline", "batch")


def new_run_id(kind: str) -> str:
    """`off-1a2b3c4d5e6f`: the kind's prefix and 12 random hex digits."""
    return f"{kind[:4]}-{uuid.uuid4().hex[:12]}"


def config_hash(inputs: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of everything that decides a run's outcome."""
    text = json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def versions() -> dict[str, str]:
    """Versions of what computed the result (quality-gates, Python, numpy, scipy)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("quality-gates", "numpy", "scipy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "unknown"
    return found


def start(
    conn: Connection,
    *,
    run_id: str,
    kind: str,
    environment: str,
    model_id: str,
    baseline: str | None,
    actor: str,
    inputs: dict[str, Any],
    parent_id: str | None = None,
    results_path: str | None = None,
) -> sql.GateRunRow:
    """Store a new run in state `running`, with an audit entry."""
    run = sql.GateRunRow(
        id=run_id,
        kind=kind,
        environment=environment,
        model_id=model_id,
        baseline=baseline,
        parent_id=parent_id,
        status="running",
        verdict=None,
        started_at=time.time(),
        finished_at=None,
        actor=actor,
        config_hash=config_hash(inputs),
        inputs=inputs,
        versions=versions(),
        summary=None,
        results_path=results_path,
    )
    with conn.write():
        sql.insert_run(conn, run)
        audit.append(
            conn,
            actor=actor,
            action=f"gate.{kind}.start",
            target=f"{environment}/{model_id}",
            details={"run_id": run_id, "baseline": baseline, "config_hash": run.config_hash},
        )
    return run


def finish(
    conn: Connection,
    run: sql.GateRunRow,
    *,
    status: str,
    verdict: str | None,
    summary: dict[str, Any],
    reasons: list[str] | None = None,
) -> None:
    """Record the outcome and audit it."""
    with conn.write():
        sql.update_run(
            conn,
            run.id,
            status=status,
            verdict=verdict,
            summary=summary,
            finished_at=time.time(),
        )
        audit.append(
            conn,
            actor=run.actor,
            action=f"gate.{run.kind}.{status}",
            target=f"{run.environment}/{run.model_id}",
            details={"run_id": run.id, "verdict": verdict, "reasons": (reasons or [])[:10]},
        )


def run_view(run: sql.GateRunRow) -> dict[str, Any]:
    """A run as JSON-ready data (what `status` and `report` show)."""
    summary = run.summary or {}
    return {
        "id": run.id,
        "kind": run.kind,
        "environment": run.environment,
        "model": run.model_id,
        "baseline": run.baseline,
        "parent": run.parent_id,
        "status": run.status,
        "verdict": run.verdict,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": (run.finished_at - run.started_at) if run.finished_at else None,
        "actor": run.actor,
        "config_hash": run.config_hash,
        "reasons": summary.get("reasons", []),
        "headline": summary.get("headline"),
        "results_path": run.results_path,
    }


def gate_status(
    conn: Connection,
    *,
    environment: str | None = None,
    model_id: str | None = None,
    limit: int = 10,
) -> dict[str, Any]:
    """For `status` and `report`: the latest verdict per gate kind and the recent runs.

    Returns {"latest": {kind: run view}, "recent": [run view, ...], "running": [...]}.
    """
    runs = sql.list_runs(conn, environment=environment, model_id=model_id, limit=200)
    latest: dict[str, Any] = {}
    for run in runs:
        if run.kind not in latest and run.status != "running":
            latest[run.kind] = run_view(run)
    return {
        "latest": latest,
        "recent": [run_view(r) for r in runs[:limit]],
        "running": [run_view(r) for r in runs if r.status == "running"],
    }
