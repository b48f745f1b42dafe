"""Schema migrations: what the code expects, what the store has, and upgrading between them.

Reading the state needs no alembic import (it parses the revision files' headers), so
every command can check the schema cheaply; only `upgrade` loads alembic and SQLAlchemy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from quality_gates.store.db import Connection, StoreURL

VERSIONS_DIR = Path(__file__).with_name("migrations") / "versions"
_REVISION = re.compile(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*=\s*(.+)$", re.M)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


@lru_cache(maxsize=1)
def revision_graph() -> dict[str, tuple[str, ...]]:
    """revision -> its parents, read from the migration files."""
    graph: dict[str, tuple[str, ...]] = {}
    for path in sorted(VERSIONS_DIR.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        revision = _REVISION.search(text)
        down = _DOWN.search(text)
        if revision:
            parents = tuple(_QUOTED.findall(down.group(1))) if down else ()
            graph[revision.group(1)] = parents
    return graph


def code_heads() -> set[str]:
    """The revisions no other revision builds on: where a current store stands."""
    graph = revision_graph()
    parents = {p for ps in graph.values() for p in ps}
    return {rev for rev in graph if rev not in parents}


def _ancestors(revisions: set[str]) -> set[str]:
    graph = revision_graph()
    seen: set[str] = set()
    stack = list(revisions)
    while stack:
        rev = stack.pop()
        if rev in seen:
            continue
        seen.add(rev)
        stack.extend(graph.get(rev, ()))
    return seen


@dataclass
class SchemaState:
    """Where the store's schema stands against the code."""

    kind: str  # empty | current | behind | ahead
    applied: set[str] = field(default_factory=set)
    expected: set[str] = field(default_factory=set)

    @property
    def pending(self) -> list[str]:
        """Revisions the code has and the store lacks, oldest first."""
        done = _ancestors(self.applied)
        return sorted(r for r in _ancestors(self.expected) if r not in done)


def _table_exists(conn: Connection, name: str) -> bool:
    if conn.is_sqlite:
        return (
            conn.one(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = :n", {"n": name}
            )
            is not None
        )
    return conn.scalar("SELECT to_regclass(:n) IS NOT NULL AS present", {"n": name}) is True


def schema_state(conn: Connection) -> SchemaState:
    """Compare the store's applied revisions with the code's heads."""
    expected = code_heads()
    if not _table_exists(conn, "alembic_version"):
        return SchemaState("empty", set(), expected)
    applied = {
        row["version_num"] for row in conn.execute("SELECT version_num FROM alembic_version")
    }
    if not applied:
        return SchemaState("empty", applied, expected)
    if applied == expected:
        return SchemaState("current", applied, expected)
    if not applied <= set(revision_graph()):
        return SchemaState("ahead", applied, expected)
    return SchemaState("behind", applied, expected)


def upgrade(url: StoreURL) -> list[str]:
    """Apply every pending migration; returns the revisions applied."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, event

    connect_args = {}
    if url.schema:
        connect_args["options"] = f"-csearch_path={url.schema}"
    if url.path is not None:
        from quality_gates.store.db import create_private, make_private

        if url.path.exists():
            make_private(url.path)
        else:
            create_private(url.path)
    engine = create_engine(url.sqlalchemy_url(), connect_args=connect_args)
    if url.dialect == "sqlite":

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")

    config = Config()
    config.set_main_option("script_location", str(VERSIONS_DIR.parent))
    try:
        with engine.begin() as connection:
            if url.schema:
                from sqlalchemy import text

                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{url.schema}"'))
            before = _applied_revisions(connection)
            config.attributes["connection"] = connection
            command.upgrade(config, "heads")
            after = _applied_revisions(connection)
    finally:
        engine.dispose()
    return sorted(_ancestors(after) - _ancestors(before))


def _applied_revisions(connection: Any) -> set[str]:
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table("alembic_version"):
        return set()
    rows = connection.execute(text("SELECT version_num FROM alembic_version"))
    return {row[0] for row in rows}
