"""Runtime settings per environment: values the control plane changes live (traffic weights,
cache mode, queueing, canary share, forced breaker states, emergency mode).

The config file gives defaults; a row here overrides them until it is cleared. Values are JSON.
"""

from __future__ import annotations

import json
import time
from typing import Any

from quality_gates.store.db import Connection

GLOBAL = "*"


def get_all(conn: Connection, environment: str) -> dict[str, Any]:
    """Every setting that applies to `environment` (its own over the global ones)."""
    rows = conn.execute(
        "SELECT environment, key, value FROM runtime_settings WHERE environment IN (:env, :g)",
        {"env": environment, "g": GLOBAL},
    )
    merged: dict[str, Any] = {}
    for row in sorted(rows, key=lambda r: r["environment"] != GLOBAL):
        merged[row["key"]] = json.loads(row["value"])
    return merged


def get(conn: Connection, environment: str, key: str, default: Any = None) -> Any:
    """One setting, or `default`."""
    return get_all(conn, environment).get(key, default)


def put(conn: Connection, environment: str, key: str, value: Any, *, actor: str) -> Any:
    """Set a value; returns the previous one (None if unset). Call inside `conn.write()`."""
    previous = conn.one(
        f"SELECT value FROM runtime_settings WHERE environment = :env AND key = :key"
        f"{conn.for_update}",
        {"env": environment, "key": key},
    )
    conn.execute(
        "INSERT INTO runtime_settings (environment, key, value, updated_at, updated_by) "
        "VALUES (:env, :key, :value, :now, :actor) ON CONFLICT (environment, key) DO UPDATE "
        "SET value = excluded.value, updated_at = excluded.updated_at, "
        "updated_by = excluded.updated_by",
        {
            "env": environment,
            "key": key,
            "value": json.dumps(value, sort_keys=True),
            "now": time.time(),
            "actor": actor,
        },
    )
    return json.loads(previous["value"]) if previous else None


def clear(conn: Connection, environment: str, key: str) -> Any:
    """Remove a setting so the config's default applies again; returns what it was."""
    previous = conn.one(
        "SELECT value FROM runtime_settings WHERE environment = :env AND key = :key",
        {"env": environment, "key": key},
    )
    conn.execute(
        "DELETE FROM runtime_settings WHERE environment = :env AND key = :key",
        {"env": environment, "key": key},
    )
    return json.loads(previous["value"]) if previous else None
