"""The store layer: URLs, one SQL for both dialects, migrations and schema state."""

from __future__ import annotations

from pathlib import Path

import pytest

from quality_gates.errors import ConflictError, StoreSchemaError, UsageError
from quality_gates.store import Database, StoreURL, open_store, schema_state
from quality_gates.store.migrate import code_heads, revision_graph


def test_sqlite_url_relative_path_is_read_from_the_config_folder(tmp_path: Path) -> None:
    url = StoreURL.parse("sqlite:///state/x.db", base_dir=tmp_path)
    assert url.path == tmp_path / "state" / "x.db"
    assert StoreURL.parse(f"sqlite:///{tmp_path}/a.db").path == tmp_path / "a.db"


def test_postgres_url_keeps_the_schema_apart_and_hides_the_password() -> None:
    url = StoreURL.parse("postgresql://qg:s3cret@db:5432/app?schema=tenant1&sslmode=require")
    assert url.dialect == "postgresql"
    assert url.schema == "tenant1"
    assert "schema=" not in (url.conninfo or "")
    assert "sslmode=require" in (url.conninfo or "")
    assert "s3cret" not in url.display


@pytest.mark.parametrize("raw", ["mysql://x/y", "sqlite://relative.db", "nonsense"])
def test_unsupported_urls_are_usage_errors(raw: str) -> None:
    with pytest.raises(UsageError):
        StoreURL.parse(raw)


def test_open_creates_the_schema_and_reports_it_current(store_url: str, tmp_path: Path) -> None:
    database = open_store(StoreURL.parse(store_url, base_dir=tmp_path))
    state = schema_state(database.shared())
    assert state.kind == "current"
    assert state.applied == code_heads()
    database.close_shared()


def test_same_sql_runs_on_both_dialects(store_url: str, tmp_path: Path) -> None:
    conn = open_store(StoreURL.parse(store_url, base_dir=tmp_path)).connect()
    with conn.write():
        conn.execute("INSERT INTO qg_meta (key, value) VALUES (:k, :v)", {"k": "a", "v": "50%"})
    assert conn.scalar("SELECT value FROM qg_meta WHERE key = :k", {"k": "a"}) == "50%"
    with pytest.raises(ConflictError), conn.write():
        conn.execute("INSERT INTO qg_meta (key, value) VALUES (:k, :v)", {"k": "a", "v": "x"})

    def failing_change() -> None:
        with conn.write():
            conn.execute("INSERT INTO qg_meta (key, value) VALUES ('b', 'rolled back')")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing_change()
    assert conn.one("SELECT * FROM qg_meta WHERE key = 'b'") is None
    conn.close()


def test_store_behind_the_code_is_refused_with_the_fix(tmp_path: Path) -> None:
    url = StoreURL.parse(f"sqlite:///{tmp_path / 's.db'}")
    database = open_store(url)
    conn = database.shared()
    conn.execute("UPDATE alembic_version SET version_num = 'zzzz'")
    with pytest.raises(StoreSchemaError, match="does not know"):
        open_store(url)
    conn.execute("DROP TABLE alembic_version")
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    graph = revision_graph()
    if len(graph) > 1:  # with a single revision, "behind" means empty
        first = next(r for r, parents in graph.items() if not parents)
        conn.execute("INSERT INTO alembic_version VALUES (:v)", {"v": first})
        with pytest.raises(StoreSchemaError, match="quality-gates migrate"):
            open_store(url)
    database.close_shared()


def test_schema_module_and_migrations_agree(tmp_path: Path) -> None:
    """Autogenerate finds nothing to do on a migrated store: schema.py and versions/ match."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from quality_gates.store.schema import metadata

    url = StoreURL.parse(f"sqlite:///{tmp_path / 'm.db'}")
    open_store(url).close_shared()
    engine = create_engine(url.sqlalchemy_url())
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert diff == []


def test_database_hands_each_thread_its_own_connection(tmp_path: Path) -> None:
    import threading

    database = Database(StoreURL.parse(f"sqlite:///{tmp_path / 't.db'}"))
    seen = []
    thread = threading.Thread(target=lambda: seen.append(database.shared()))
    thread.start()
    thread.join()
    assert seen[0] is not database.shared()
