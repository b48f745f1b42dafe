"""SQL for the registry: providers, models, aliases, alias history and the control version."""

from __future__ import annotations

import time
from dataclasses import dataclass

from quality_gates.store.db import Connection, Row


@dataclass(frozen=True)
class AliasRow:
    """Where an alias points now, and who moved it last."""

    environment: str
    name: str
    model_id: str
    version: int
    updated_at: float
    updated_by: str


@dataclass(frozen=True)
class AliasMove:
    """One line of the alias history."""

    id: int
    ts: float
    environment: str
    alias: str
    from_model: str | None
    to_model: str
    operation: str
    actor: str
    reason: str
    source: str
    duration_ms: float | None
    operation_id: str
    incident_id: int | None


def _alias(row: Row) -> AliasRow:
    return AliasRow(
        row["environment"],
        row["name"],
        row["model_id"],
        row["version"],
        row["updated_at"],
        row["updated_by"],
    )


def get_alias(
    conn: Connection, environment: str, name: str, *, lock: bool = False
) -> AliasRow | None:
    """The alias row; `lock` holds it until the transaction ends (PostgreSQL)."""
    row = conn.one(
        "SELECT * FROM aliases WHERE environment = :env AND name = :name"
        + (conn.for_update if lock else ""),
        {"env": environment, "name": name},
    )
    return _alias(row) if row else None


def list_aliases(conn: Connection, environment: str | None = None) -> list[AliasRow]:
    """Aliases, by environment then name."""
    if environment:
        rows = conn.execute(
            "SELECT * FROM aliases WHERE environment = :env ORDER BY name", {"env": environment}
        )
    else:
        rows = conn.execute("SELECT * FROM aliases ORDER BY environment, name")
    return [_alias(r) for r in rows]


def write_alias(
    conn: Connection,
    *,
    environment: str,
    name: str,
    model_id: str,
    previous: AliasRow | None,
    actor: str,
    now: float,
) -> None:
    """Point the alias at `model_id`; `previous` is the locked row (None creates it)."""
    if previous is None:
        conn.execute(
            "INSERT INTO aliases (environment, name, model_id, version, updated_at, updated_by) "
            "VALUES (:env, :name, :model, 1, :now, :actor)",
            {"env": environment, "name": name, "model": model_id, "now": now, "actor": actor},
        )
    else:
        conn.execute(
            "UPDATE aliases SET model_id = :model, version = version + 1, updated_at = :now, "
            "updated_by = :actor WHERE environment = :env AND name = :name",
            {"env": environment, "name": name, "model": model_id, "now": now, "actor": actor},
        )


def add_history(conn: Connection, move: AliasMove) -> int:
    """Record an alias move; returns its id."""
    row = conn.one(
        "INSERT INTO alias_history (ts, environment, alias, from_model, to_model, operation, "
        "actor, reason, source, duration_ms, operation_id, incident_id) VALUES (:ts, :env, "
        ":alias, :from_model, :to_model, :operation, :actor, :reason, :source, :duration_ms, "
        ":operation_id, :incident_id) RETURNING id",
        {
            "ts": move.ts,
            "env": move.environment,
            "alias": move.alias,
            "from_model": move.from_model,
            "to_model": move.to_model,
            "operation": move.operation,
            "actor": move.actor,
            "reason": move.reason,
            "source": move.source,
            "duration_ms": move.duration_ms,
            "operation_id": move.operation_id,
            "incident_id": move.incident_id,
        },
    )
    return int(row["id"]) if row else 0


def history(
    conn: Connection,
    *,
    environment: str | None = None,
    alias: str | None = None,
    limit: int = 20,
    since: float | None = None,
) -> list[AliasMove]:
    """Alias moves, newest first."""
    clauses: list[str] = []
    params: dict[str, object] = {"limit": limit}
    if environment:
        clauses.append("environment = :env")
        params["env"] = environment
    if alias:
        clauses.append("alias = :alias")
        params["alias"] = alias
    if since is not None:
        clauses.append("ts >= :since")
        params["since"] = since
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    rows = conn.execute(f"SELECT * FROM alias_history {where}ORDER BY id DESC LIMIT :limit", params)
    return [
        AliasMove(
            r["id"],
            r["ts"],
            r["environment"],
            r["alias"],
            r["from_model"],
            r["to_model"],
            r["operation"],
            r["actor"],
            r["reason"],
            r["source"],
            r["duration_ms"],
            r["operation_id"],
            r["incident_id"],
        )
        for r in rows
    ]


def bump_control_version(conn: Connection, environment: str, *, now: float | None = None) -> int:
    """Tell running gateways that `environment`'s routing changed; returns the new version."""
    version = conn.scalar(
        "INSERT INTO control_state (environment, version, updated_at) VALUES (:env, 1, :now) "
        "ON CONFLICT (environment) DO UPDATE SET version = control_state.version + 1, "
        "updated_at = excluded.updated_at RETURNING version",
        {"env": environment, "now": time.time() if now is None else now},
    )
    if not conn.is_sqlite:
        conn.execute("SELECT pg_notify('qg_control', :env)", {"env": environment})
    return int(version)


def control_version(conn: Connection, environment: str) -> int:
    """The environment's control version (0 before the first change)."""
    return int(
        conn.scalar(
            "SELECT version FROM control_state WHERE environment = :env", {"env": environment}
        )
        or 0
    )


def known_models(conn: Connection) -> dict[str, Row]:
    """Models in the registry by id."""
    return {r["id"]: r for r in conn.execute("SELECT * FROM models ORDER BY id")}


def known_providers(conn: Connection) -> dict[str, Row]:
    """Providers in the registry by name."""
    return {r["name"]: r for r in conn.execute("SELECT * FROM providers ORDER BY name")}


def upsert_provider(
    conn: Connection,
    *,
    name: str,
    kind: str,
    protocol: str,
    endpoint: str,
    region: str | None,
    now: float,
) -> None:
    """Insert or update a provider row."""
    conn.execute(
        "INSERT INTO providers (name, kind, protocol, endpoint, region, synced_at) VALUES "
        "(:name, :kind, :protocol, :endpoint, :region, :now) ON CONFLICT (name) DO UPDATE SET "
        "kind = excluded.kind, protocol = excluded.protocol, endpoint = excluded.endpoint, "
        "region = excluded.region, synced_at = excluded.synced_at",
        {
            "name": name,
            "kind": kind,
            "protocol": protocol,
            "endpoint": endpoint,
            "region": region,
            "now": now,
        },
    )


def upsert_model(
    conn: Connection,
    *,
    model_id: str,
    provider: str,
    provider_model: str,
    input_per_1k: float,
    output_per_1k: float,
    now: float,
) -> None:
    """Insert or update a model row."""
    conn.execute(
        "INSERT INTO models (id, provider, provider_model, input_per_1k, output_per_1k, "
        "synced_at) VALUES (:id, :provider, :pm, :inp, :out, :now) ON CONFLICT (id) DO UPDATE "
        "SET provider = excluded.provider, provider_model = excluded.provider_model, "
        "input_per_1k = excluded.input_per_1k, output_per_1k = excluded.output_per_1k, "
        "synced_at = excluded.synced_at",
        {
            "id": model_id,
            "provider": provider,
            "pm": provider_model,
            "inp": input_per_1k,
            "out": output_per_1k,
            "now": now,
        },
    )


def delete_missing(conn: Connection, table: str, key: str, keep: list[str]) -> list[str]:
    """Delete rows of `table` whose `key` is not in `keep`; returns what was deleted."""
    present = [r[key] for r in conn.execute(f"SELECT {key} FROM {table}")]
    gone = [value for value in present if value not in keep]
    for value in gone:
        conn.execute(f"DELETE FROM {table} WHERE {key} = :v", {"v": value})
    return gone


def get_meta(conn: Connection, key: str) -> str | None:
    """A value from the store's key-value table."""
    value = conn.scalar("SELECT value FROM qg_meta WHERE key = :k", {"k": key})
    return None if value is None else str(value)


def set_meta(conn: Connection, key: str, value: str) -> None:
    """Set a value in the store's key-value table."""
    conn.execute(
        "INSERT INTO qg_meta (key, value) VALUES (:k, :v) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        {"k": key, "v": value},
    )
