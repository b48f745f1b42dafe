"""What `status` shows of the data plane (JSON-ready, no HTTP call and no heavy import):
running gateway processes from their heartbeats, each deployment's breaker state (the worst
any live process reports), the live runtime settings, and the last traffic moves.

Call `gateway_status(conn)` (all environments) or `gateway_status(conn, "production")`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from quality_gates.store import settings
from quality_gates.store.db import Connection

HEARTBEAT_FRESH_S = 15.0
RECENT_MOVES = 5
SEVERITY = {"closed": 0, "half_open": 1, "open": 2}


def gateway_status(conn: Connection, environment: str | None = None) -> dict[str, Any]:
    """Gateways, breakers, runtime settings and traffic moves, per environment."""
    now = time.time()
    params: dict[str, Any] = {"t": now - HEARTBEAT_FRESH_S}
    where = "heartbeat_at >= :t"
    if environment:
        where += " AND environment = :env"
        params["env"] = environment
    rows = conn.execute(f"SELECT * FROM gateway_instances WHERE {where} ORDER BY id", params)
    envs = sorted({r["environment"] for r in rows} | ({environment} if environment else set()))
    out: dict[str, Any] = {}
    for env in envs:
        mine = [r for r in rows if r["environment"] == env]
        breakers: dict[str, dict[str, Any]] = {}
        for row in mine:
            for view in json.loads(row["breakers"] or "[]"):
                known = breakers.get(view["deployment"])
                if known is None or SEVERITY[view["state"]] > SEVERITY[known["state"]]:
                    breakers[view["deployment"]] = {**view, "reported_by": row["id"]}
        runtime = settings.get_all(conn, env)
        moves = conn.execute(
            "SELECT ts, weights, previous, mode, step, actor, reason, source FROM "
            "traffic_history WHERE environment = :env ORDER BY id DESC LIMIT :n",
            {"env": env, "n": RECENT_MOVES},
        )
        out[env] = {
            "gateways": [
                {
                    "id": r["id"],
                    "listen": r["listen"],
                    "pid": r["pid"],
                    "uptime_s": round(now - r["started_at"], 1),
                    "heartbeat_age_s": round(now - r["heartbeat_at"], 1),
                    "cpu_percent": r["cpu_percent"],
                    "rss_bytes": r["rss_bytes"],
                    "inflight": r["inflight"],
                    "inflight_limit": r["inflight_limit"],
                    "queue_depth": r["queue_depth"],
                    "queue_limit": r["queue_limit"],
                    "telemetry_dropped": r["dropped_telemetry"],
                    "telemetry_buffered": r["buffered_telemetry"],
                    "control_version": r["control_version"],
                }
                for r in mine
            ],
            "breakers": sorted(breakers.values(), key=lambda b: b["deployment"]),
            "runtime": {
                "traffic": runtime.get("traffic"),
                "cache": runtime.get("cache"),
                "queue": runtime.get("queue"),
                "canary": runtime.get("canary"),
                "forced_breakers": {
                    k.split(":", 1)[1]: v for k, v in runtime.items() if k.startswith("breaker:")
                },
            },
            "traffic_moves": [
                {
                    "ts": m["ts"],
                    "weights": json.loads(m["weights"]),
                    "previous": json.loads(m["previous"]),
                    "mode": m["mode"],
                    "step": m["step"],
                    "actor": m["actor"],
                    "reason": m["reason"],
                    "source": m["source"],
                }
                for m in moves
            ],
        }
    return out


def open_breakers(conn: Connection, environment: str) -> set[str]:
    """Deployments whose breaker a live gateway of `environment` reports open (one read of
    the heartbeats)."""
    rows = conn.execute(
        "SELECT breakers FROM gateway_instances WHERE environment = :env AND heartbeat_at >= :t",
        {"env": environment, "t": time.time() - HEARTBEAT_FRESH_S},
    )
    found = set()
    for row in rows:
        for view in json.loads(row["breakers"] or "[]"):
            if view.get("state") == "open" and view.get("deployment"):
                found.add(str(view["deployment"]))
    return found


def open_breakers_of(conn: Connection, environment: str, provider: str) -> list[str]:
    """Deployments of `provider` whose breaker a live gateway reports open."""
    return sorted(d for d in open_breakers(conn, environment) if d.startswith(provider + "/"))
