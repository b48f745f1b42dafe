"""SQL for gate runs and their per-item results."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from quality_gates.store.db import Connection, Row


@dataclass
class GateRunRow:
    """One stored gate run."""

    id: str
    kind: str
    environment: str
    model_id: str
    baseline: str | None
    parent_id: str | None
    status: str
    verdict: str | None
    started_at: float
    finished_at: float | None
    actor: str
    config_hash: str
    inputs: dict[str, Any]
    versions: dict[str, Any]
    summary: dict[str, Any] | None
    results_path: str | None


def _row(row: Row) -> GateRunRow:
    return GateRunRow(
        id=row["id"],
        kind=row["kind"],
        environment=row["environment"],
        model_id=row["model_id"],
        baseline=row["baseline"],
        parent_id=row["parent_id"],
        status=row["status"],
        verdict=row["verdict"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        actor=row["actor"],
        config_hash=row["config_hash"],
        inputs=json.loads(row["inputs"]),
        versions=json.loads(row["versions"]),
        summary=json.loads(row["summary"]) if row["summary"] else None,
        results_path=row["results_path"],
    )


def insert_run(conn: Connection, run: GateRunRow) -> None:
    """Add a run (call inside `conn.write()`)."""
    conn.execute(
        "INSERT INTO gate_runs (id, kind, environment, model_id, baseline, parent_id, status, "
        "verdict, started_at, finished_at, actor, config_hash, inputs, versions, summary, "
        "results_path) VALUES (:id, :kind, :environment, :model_id, :baseline, :parent_id, "
        ":status, :verdict, :started_at, :finished_at, :actor, :config_hash, :inputs, "
        ":versions, :summary, :results_path)",
        {
            **run.__dict__,
            "inputs": json.dumps(run.inputs, sort_keys=True, default=str),
            "versions": json.dumps(run.versions, sort_keys=True),
            "summary": json.dumps(run.summary, default=str) if run.summary else None,
        },
    )


def update_run(
    conn: Connection,
    run_id: str,
    *,
    status: str,
    verdict: str | None,
    summary: dict[str, Any] | None,
    finished_at: float | None,
) -> None:
    """Record how a run ended (or that it resumed)."""
    conn.execute(
        "UPDATE gate_runs SET status = :status, verdict = :verdict, summary = :summary, "
        "finished_at = :finished_at WHERE id = :id",
        {
            "id": run_id,
            "status": status,
            "verdict": verdict,
            "summary": json.dumps(summary, default=str) if summary is not None else None,
            "finished_at": finished_at,
        },
    )


def get_run(conn: Connection, run_id: str) -> GateRunRow | None:
    """A run by id, or by a unique prefix of it."""
    row = conn.one("SELECT * FROM gate_runs WHERE id = :id", {"id": run_id})
    if row is None and len(run_id) >= 4:
        rows = conn.execute(
            "SELECT * FROM gate_runs WHERE id LIKE :prefix ORDER BY started_at DESC LIMIT 2",
            {"prefix": run_id.replace("%", "").replace("_", "") + "%"},
        )
        row = rows[0] if len(rows) == 1 else None
    return _row(row) if row else None


def list_runs(
    conn: Connection,
    *,
    kind: str | None = None,
    model_id: str | None = None,
    environment: str | None = None,
    parent_id: str | None = None,
    limit: int = 20,
) -> list[GateRunRow]:
    """Runs, newest first."""
    where, params = [], {"limit": limit}
    for column, value in (
        ("kind", kind),
        ("model_id", model_id),
        ("environment", environment),
        ("parent_id", parent_id),
    ):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value  # type: ignore[assignment]
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT * FROM gate_runs{clause} ORDER BY started_at DESC LIMIT :limit", params
    )
    return [_row(r) for r in rows]


ITEM_COLUMNS = (
    "run_id, role, item_id, repeat, passed, score, latency_ms, ttft_ms, cost, input_tokens, "
    "output_tokens, error_class, flags, cached"
)


def add_items(conn: Connection, run_id: str, records: Iterable[dict[str, Any]]) -> int:
    """Store per-item results (a record already stored, e.g. after --resume, is kept)."""
    rows = [
        {
            "run_id": run_id,
            "role": r["role"],
            "item_id": str(r["id"])[:300],
            "repeat": int(r.get("repeat", 0)),
            "passed": int(bool(r.get("passed"))),
            "score": float(r.get("score") or 0.0),
            "latency_ms": float(r.get("latency_ms") or 0.0),
            "ttft_ms": float(r.get("ttft_ms") or 0.0),
            "cost": float(r.get("cost") or 0.0),
            "input_tokens": int(r.get("input_tokens") or 0),
            "output_tokens": int(r.get("output_tokens") or 0),
            "error_class": r.get("error_class"),
            "flags": json.dumps(r.get("flags") or {}, sort_keys=True),
            "cached": int(bool(r.get("cached"))),
        }
        for r in records
    ]
    if rows:
        conn.executemany(
            f"INSERT INTO gate_items ({ITEM_COLUMNS}) VALUES (:run_id, :role, :item_id, "
            ":repeat, :passed, :score, :latency_ms, :ttft_ms, :cost, :input_tokens, "
            ":output_tokens, :error_class, :flags, :cached) "
            "ON CONFLICT (run_id, role, item_id, repeat) DO NOTHING",
            rows,
        )
    return len(rows)


def items(conn: Connection, run_id: str, role: str | None = None) -> list[dict[str, Any]]:
    """Per-item results of a run as records (flags decoded), in insertion order."""
    rows = conn.execute(
        f"SELECT {ITEM_COLUMNS} FROM gate_items WHERE run_id = :run"
        + (" AND role = :role" if role else ""),
        {"run": run_id, "role": role},
    )
    out = []
    for row in rows:
        record = dict(row)
        record["id"] = record.pop("item_id")
        record["flags"] = json.loads(record["flags"])
        out.append(record)
    return out


def alias_requests(
    conn: Connection, environment: str, alias: str, start: float, end: float
) -> list[dict[str, Any]]:
    """Requests routed for `alias` in [start, end), each with its upstream attempts in
    order (`attempts`: model_id, status, error_class, latency_ms, ttft_ms): what the canary
    analysis splits into the candidate's and the baseline's own outcomes."""
    rows = conn.execute(
        "SELECT r.id, r.canary, r.model_id, r.status, r.error_class, r.cache, r.latency_ms, "
        "r.ttft_ms, r.input_tokens, r.output_tokens, r.cost, r.answer, r.output_check, "
        "a.attempt AS a_n, "
        "a.model_id AS a_model, a.status AS a_status, a.error_class AS a_class, "
        "a.latency_ms AS a_latency, a.ttft_ms AS a_ttft FROM requests r LEFT JOIN attempts a "
        "ON a.request_id = r.id WHERE r.environment = :env AND r.alias = :alias "
        "AND r.ts >= :start AND r.ts < :end ORDER BY r.id, a.attempt",
        {"env": environment, "alias": alias, "start": start, "end": end},
    )
    out: list[dict[str, Any]] = []
    for row in rows:
        if not out or out[-1]["id"] != row["id"]:
            out.append({k: v for k, v in row.items() if not k.startswith("a_")} | {"attempts": []})
        if row["a_n"] is not None:
            out[-1]["attempts"].append(
                {
                    "model_id": row["a_model"],
                    "status": row["a_status"],
                    "error_class": row["a_class"],
                    "latency_ms": row["a_latency"],
                    "ttft_ms": row["a_ttft"],
                }
            )
    return out


def upstream_rate(
    conn: Connection, environment: str, alias: str, since: float, now: float
) -> tuple[int, float]:
    """(requests, seconds they span) for `alias` since `since` that reached the models: not
    answered by the cache nor left by their client, and tried upstream or refused by an open
    breaker (what the canary judges)."""
    row = conn.execute(
        "SELECT COUNT(*) AS n, MIN(ts) AS first FROM requests WHERE environment = :env "
        "AND alias = :alias AND ts >= :since AND ts < :now AND cache NOT IN ('hit', 'stale') "
        "AND status <> 'cancelled' AND (attempts > 0 OR error_class = 'circuit_open')",
        {"env": environment, "alias": alias, "since": since, "now": now},
    )[0]
    n = int(row["n"] or 0)
    return n, (now - float(row["first"])) if n else 0.0


def rollup_rows(
    conn: Connection, environment: str, start_minute: int, end_minute: int, model_id: str
) -> list[dict[str, Any]]:
    """Request roll-ups of one model over whole minutes [start, end)."""
    return conn.execute(
        "SELECT minute, count, errors, errors_by_class, latency_hist, ttft_hist, cost, "
        "input_tokens, output_tokens FROM rollups WHERE environment = :env AND kind = 'request' "
        "AND model_id = :model AND minute >= :start AND minute < :end",
        {"env": environment, "model": model_id, "start": start_minute, "end": end_minute},
    )
