"""The gateways' own resource use, read from their heartbeats (table `gateway_instances`).

The runbook wants utilisation under 80%: CPU, memory, in-flight requests and queue depth
against their limits. A gateway that has not beaten for `STALE_AFTER` seconds is not counted.
"""

from __future__ import annotations

import socket
from typing import Any

from quality_gates.store.db import Connection
from quality_gates.store.migrate import _table_exists

HEARTBEAT_TABLE = "gateway_instances"
STALE_AFTER = 30.0
NO_HEARTBEAT = "no gateway heartbeat"


def _memory_total() -> float | None:
    try:
        import psutil

        return float(psutil.virtual_memory().total)
    except Exception:
        return None


def gateway_instances(
    conn: Connection, now: float, *, environment: str | None = None
) -> list[dict[str, Any]] | None:
    """Live gateway processes with their utilisation shares; None when no gateway reports."""
    if not _table_exists(conn, HEARTBEAT_TABLE):
        return None
    sql = f"SELECT * FROM {HEARTBEAT_TABLE} WHERE heartbeat_at >= :since"
    params: dict[str, object] = {"since": now - STALE_AFTER}
    if environment is not None:
        sql += " AND environment = :env"
        params["env"] = environment
    rows = conn.execute(sql, params)
    here = socket.gethostname()
    memory = _memory_total() if rows else None  # psutil costs ~10 ms of start-up
    out = []
    for row in rows:
        shares: dict[str, float] = {}
        if row.get("cpu_percent") is not None:
            shares["cpu"] = float(row["cpu_percent"]) / 100.0
        if row.get("rss_bytes") and memory and row.get("host") == here:
            shares["memory"] = float(row["rss_bytes"]) / memory
        if row.get("inflight_limit"):
            shares["inflight"] = float(row["inflight"] or 0) / float(row["inflight_limit"])
        if row.get("queue_limit"):
            shares["queue"] = float(row["queue_depth"] or 0) / float(row["queue_limit"])
        out.append({**row, "shares": shares, "utilization": max(shares.values(), default=0.0)})
    return out


def gateway_utilization(
    conn: Connection, now: float, *, environment: str | None = None
) -> dict[str, float]:
    """Per environment, the highest utilisation share of any live gateway process."""
    instances = gateway_instances(conn, now, environment=environment) or []
    usage: dict[str, float] = {}
    for row in instances:
        env = str(row["environment"])
        usage[env] = max(usage.get(env, 0.0), float(row["utilization"]))
    return usage
