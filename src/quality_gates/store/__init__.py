"""The store: one database (SQLite by default, PostgreSQL by URL) behind every plane."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from quality_gates.errors import StoreSchemaError
from quality_gates.store.db import Connection, Database, Row, StoreURL
from quality_gates.store.migrate import SchemaState, schema_state, upgrade

DATABASE_ENV = "QG_DATABASE_URL"
DEFAULT_STATE_DIR = ".quality-gates"
DEFAULT_DB_NAME = "state.db"

__all__ = [
    "DATABASE_ENV",
    "Connection",
    "Database",
    "Row",
    "SchemaState",
    "StoreURL",
    "default_url",
    "open_store",
    "resolve_url",
    "schema_state",
    "upgrade",
]


def default_url(config_dir: Path) -> str:
    """SQLite in `.quality-gates/state.db` beside the config."""
    return f"sqlite:///{(config_dir / DEFAULT_STATE_DIR / DEFAULT_DB_NAME).resolve()}"


def resolve_url(explicit: str | None, configured: str | None, config_dir: Path) -> StoreURL:
    """`--db`, else $QG_DATABASE_URL, else the config's store.url, else the SQLite default."""
    from quality_gates.config import resolve_env

    raw = explicit or os.environ.get(DATABASE_ENV) or configured
    if raw:
        raw = resolve_env(raw, needed_by="store.url")
    return StoreURL.parse(raw or default_url(config_dir), base_dir=config_dir)


def open_store(
    url: StoreURL,
    *,
    create: bool = True,
    require_current: bool = True,
    before_create: Callable[[], object] | None = None,
) -> Database:
    """Open the store; create the schema if it is empty; refuse an out-of-date one.

    `before_create` runs before anything is written to a new store (the CLI validates the
    config there, so a broken config leaves no trace). With `require_current=False` an
    out-of-date store opens anyway (for `validate` and `migrate`, which report or fix it).
    """
    if before_create is not None and url.path is not None and not url.path.exists():
        before_create()
    database = Database(url)
    conn = database.shared()
    state = schema_state(conn)
    if state.kind == "empty" and create:
        if before_create is not None:
            before_create()
        upgrade(url)
    elif state.kind == "behind" and require_current:
        raise StoreSchemaError(
            f"the store at {url.display} needs {len(state.pending)} migration(s): "
            f"{', '.join(state.pending)}",
            hint="run `quality-gates migrate` (or `quality-gates validate --fix`)",
        )
    elif state.kind == "ahead" and require_current:
        raise StoreSchemaError(
            f"the store at {url.display} has schema {', '.join(sorted(state.applied))}, "
            "which this version of quality-gates does not know",
            hint="upgrade quality-gates, or point --db at another store",
        )
    return database
