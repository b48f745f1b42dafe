"""What `status` reports: one snapshot of the system, built from the store and the config.

The snapshot is plain data (JSON-ready) so the CLI, the dashboard and reports render the
same facts: `collect(conn, snapshot)` gives, per environment, the aliases, the traffic
weights in force, provider health (breakers; availability, P95 and error rate over 5 m and
1 h), quota use, failover state, remediations, emergency mode, active alerts, open incidents
with their age against the response target, and the last gate runs (see `_live`); and the
routine checks with their last run.
"""

from __future__ import annotations

import time
from typing import Any

from quality_gates.config import ConfigSnapshot
from quality_gates.registry import alias_drift, environments
from quality_gates.store import Connection, schema_state
from quality_gates.store import registry as sql

RECENT_MOVES = 5


def _iso(ts: float | None) -> str | None:
    from datetime import UTC, datetime

    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def collect(
    conn: Connection,
    config: ConfigSnapshot,
    *,
    environment: str | None = None,
    model_id: str | None = None,
    store_display: str = "",
    live: bool = True,
) -> dict[str, Any]:
    """The snapshot: config, store, the evaluator, and per environment aliases, last moves,
    thresholds and (with `live`) the live sections."""
    from quality_gates.status._live import environment_live, routine_checks, watch_summary

    now = time.time()
    watch = watch_summary(conn, config, now) if live else None
    models = sql.known_models(conn)
    schema = schema_state(conn)
    snapshot: dict[str, Any] = {
        "generated_at": _iso(time.time()),
        "project": config.project,
        "config": {
            "path": str(config.path),
            "digest": config.digest[:12],
            "warnings": config.warnings,
        },
        "store": {"url": store_display, "schema": schema.kind, "revisions": sorted(schema.applied)},
        "drift": alias_drift(conn, config),
        "watch": None,
        "routines": routine_checks(conn, config) if live else [],
        "environments": [],
    }
    names = [environment] if environment else environments(conn, config)
    for name in names:
        env_config = config.environment(name) or {}
        aliases = []
        for row in sql.list_aliases(conn, name):
            if model_id and row.model_id != model_id:
                continue
            model = models.get(row.model_id)
            aliases.append(
                {
                    "alias": row.name,
                    "model": row.model_id,
                    "provider": model["provider"] if model else None,
                    "updated_at": _iso(row.updated_at),
                    "updated_by": row.updated_by,
                    "version": row.version,
                }
            )
        moves = sql.history(conn, environment=name, limit=RECENT_MOVES * 4)
        if model_id:
            moves = [m for m in moves if model_id in (m.from_model, m.to_model)]
        chains = []
        for chain in env_config.get("failover_chains", []):
            members = [
                m
                for m in (chain.get("primary"), chain.get("secondary"), chain.get("tertiary"))
                if m
            ]
            if not model_id or model_id in members:
                chains.append(members)
        entry: dict[str, Any] = {
            "name": name,
            "aliases": aliases,
            "failover_chains": chains,
            "traffic": env_config.get("traffic", {}),
            "routing": env_config.get("routing"),
            "thresholds": env_config.get("thresholds"),
            "control_version": sql.control_version(conn, name),
            "recent_moves": [
                {
                    "time": _iso(m.ts),
                    "alias": m.alias,
                    "from": m.from_model,
                    "to": m.to_model,
                    "operation": m.operation,
                    "actor": m.actor,
                    "source": m.source,
                    "reason": m.reason,
                }
                for m in moves[:RECENT_MOVES]
            ],
        }
        if live:
            current = {r.name: r.model_id for r in sql.list_aliases(conn, name)}
            entry.update(
                environment_live(
                    conn,
                    config,
                    name,
                    aliases=current,
                    chains=chains,
                    model_id=model_id,
                    now=now,
                    watch=watch or {},
                )
            )
        snapshot["environments"].append(entry)
    if watch is not None:
        snapshot["watch"] = {
            k: watch[k] for k in ("evaluator", "notification_backlog", "active_silences")
        }
    if model_id:
        model = models.get(model_id)
        snapshot["model"] = (
            {
                "id": model_id,
                "provider": model["provider"],
                "provider_model": model["provider_model"],
                "price_per_1k": {"input": model["input_per_1k"], "output": model["output_per_1k"]},
            }
            if model
            else None
        )
    return snapshot
