"""A drill's scratch store (`drill ... --scratch-store`): a fresh SQLite store the drill's whole
live operation runs against, so it needs no watch lease on the workspace's store (a `serve`
or `watch` may hold it: the monthly routine drill is run by that very leader) and nothing
from before (an earlier drill's fault in the per-minute roll-ups) leaks into its figures.

It is migrated, synced from the config like any store, then seeded from the main store with
the drilled environment as it is now: its aliases, runtime settings (traffic weights, forced
breakers, cache mode, queue, emergency) and control version, plus any model an alias points
to that the config no longer lists. The drill's record (`drill_runs` and its audit entries)
goes to the main store; the temporary store is deleted afterwards unless kept.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_gates.errors import UsageError

if TYPE_CHECKING:
    from quality_gates.config import LoadedConfig
    from quality_gates.store import Database, StoreURL
    from quality_gates.store.db import Connection

DB_NAME = "state.db"
NOTE = (
    "scratch store: the drill's incident, alerts and alias moves stayed in a temporary store; "
    "its record is in this store's drill_runs"
)


@dataclass
class ScratchStore:
    """The temporary store a drill runs against."""

    url: StoreURL
    database: Database
    directory: Path
    keep: bool
    seeded: dict[str, Any] = field(default_factory=dict)

    @property
    def conn(self) -> Connection:
        """This thread's connection to the scratch store."""
        return self.database.shared()

    def close(self) -> None:
        """Close it; delete it unless it is to be kept."""
        self.database.close_shared()
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        """What the record says about it."""
        return {
            "note": NOTE,
            "kept_at": str(self.directory / DB_NAME) if self.keep else None,
            "seeded": self.seeded,
        }


def create(
    main: Connection,
    loaded: LoadedConfig,
    environment: str,
    *,
    actor: str,
    keep_in: Path | None = None,
) -> ScratchStore:
    """A migrated, synced store seeded with `environment` as the main store has it now.
    With `keep_in`, the store is `keep_in/state.db` and stays after the drill."""
    from quality_gates.registry import Actor, sync_config
    from quality_gates.store import StoreURL, open_store

    if keep_in is not None:
        if (keep_in / DB_NAME).exists():
            raise UsageError(
                f"--keep-scratch {keep_in}: it already holds a {DB_NAME}; give an empty or "
                "new directory"
            )
        keep_in.mkdir(parents=True, exist_ok=True)
        directory = keep_in.resolve()
    else:
        directory = Path(tempfile.mkdtemp(prefix="qg-drill-scratch-"))
    url = StoreURL.parse(f"sqlite:///{directory / DB_NAME}", base_dir=directory)
    database = None
    try:
        database = open_store(url)
        conn = database.shared()
        sync_config(conn, loaded, Actor(actor, "drill"))
        seeded = _seed(main, conn, environment)
    except BaseException:
        if database is not None:
            database.close_shared()
        if keep_in is None:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return ScratchStore(url, database, directory, keep_in is not None, seeded)


def _rows(
    conn: Connection, table: str, where: str = "", params: dict[str, Any] | None = None
) -> Any:
    clause = f" WHERE {where}" if where else ""
    return conn.execute(f"SELECT * FROM {table}{clause}", params or {})


def _insert(conn: Connection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        names = list(row)
        conn.execute(
            f"INSERT INTO {table} ({', '.join(names)}) "
            f"VALUES ({', '.join(':' + n for n in names)})",
            row,
        )


def _seed(main: Connection, scratch: Connection, environment: str) -> dict[str, Any]:
    """Copy `environment`'s aliases, runtime settings and control version from `main`."""
    env = {"env": environment}
    aliases = [dict(r) for r in _rows(main, "aliases", "environment = :env", env)]
    settings = [dict(r) for r in _rows(main, "runtime_settings", "environment = :env", env)]
    control = [dict(r) for r in _rows(main, "control_state", "environment = :env", env)]
    known = {r["id"] for r in _rows(scratch, "models")}
    wanted = {a["model_id"] for a in aliases} - known
    models = [dict(r) for r in _rows(main, "models") if r["id"] in wanted]
    have = {r["name"] for r in _rows(scratch, "providers")}
    needed = {m["provider"] for m in models} - have
    providers = [dict(r) for r in _rows(main, "providers") if r["name"] in needed]
    with scratch.write():
        for table in ("aliases", "runtime_settings", "control_state"):
            scratch.execute(f"DELETE FROM {table} WHERE environment = :env", env)
        _insert(scratch, "providers", providers)
        _insert(scratch, "models", models)
        _insert(scratch, "aliases", aliases)
        _insert(scratch, "runtime_settings", settings)
        _insert(scratch, "control_state", control)
    return {
        "environment": environment,
        "aliases": {a["name"]: a["model_id"] for a in aliases},
        "runtime_settings": sorted(s["key"] for s in settings),
    }
