"""`drill ... --scratch-store`: the drill's live operation in a temporary store, so it runs while
a `serve`/`watch` holds the watch lease on the workspace's store (as the monthly routine drill,
run by that very leader, does); its record still lands in the workspace's store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import Workspace, make_workspace, run_cli

from quality_gates.config import load_config
from quality_gates.drills import _scratch
from quality_gates.incidents import SEVERITIES
from quality_gates.store import Database, StoreURL
from quality_gates.store import settings as runtime_settings
from quality_gates.store._leader import WATCH_LEASE, acquire
from quality_gates.store.registry import list_aliases

HOLDER = "other-host:4242:serve"


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = make_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}")
    yield workspace
    workspace.database.close_shared()


def test_scratch_store_is_seeded_with_the_environment_as_the_main_store_has_it(
    ws: Workspace, tmp_path: Path
) -> None:
    conn = ws.conn
    with conn.write():
        # Moved since the config seeded it: the scratch store gets the store's value.
        conn.execute(
            "UPDATE aliases SET model_id = 'llama-3-1-70b', updated_by = 'tester' "
            "WHERE environment = 'staging' AND name = 'backup'"
        )
        runtime_settings.put(conn, "staging", "cache_mode", "bypass", actor="tester")
    main_aliases = {a.name: a.model_id for a in list_aliases(conn, "staging")}
    assert main_aliases["backup"] == "llama-3-1-70b"
    kept = tmp_path / "kept"
    scratch = _scratch.create(
        conn, load_config(ws.config_path), "staging", actor="tester", keep_in=kept
    )
    try:
        copied = {a.name: a.model_id for a in list_aliases(scratch.conn, "staging")}
        assert copied == main_aliases
        assert runtime_settings.get(scratch.conn, "staging", "cache_mode") == "bypass"
        assert scratch.conn.scalar("SELECT COUNT(*) FROM leases") == 0
        assert scratch.describe()["kept_at"] == str(kept.resolve() / "state.db")
    finally:
        scratch.close()
    assert (kept / "state.db").exists()  # kept on request
    with pytest.raises(Exception, match="already holds"):
        _scratch.create(conn, load_config(ws.config_path), "staging", actor="t", keep_in=kept)
    temporary = _scratch.create(conn, load_config(ws.config_path), "staging", actor="tester")
    directory = temporary.directory
    assert (directory / "state.db").exists()
    temporary.close()
    assert not directory.exists()  # deleted afterwards


@pytest.fixture
def leased(tmp_path: Path) -> Iterator[tuple[Path, Database]]:
    """An `init` workspace whose store's watch lease another process (a `serve`) holds."""
    root = tmp_path / "project"
    root.mkdir()
    init = run_cli("init", cwd=root)
    assert init.returncode == 0, init.stderr
    database = Database(StoreURL.parse(f"sqlite:///{root / '.quality-gates' / 'state.db'}"))
    assert acquire(database.shared(), WATCH_LEASE, HOLDER, ttl=3600.0, now=time.time())
    yield root, database
    database.close_shared()


def _aliases(database: Database) -> list[tuple[str, str, str, int]]:
    rows = database.shared().execute(
        "SELECT environment, name, model_id, version FROM aliases ORDER BY environment, name"
    )
    return [(r["environment"], r["name"], r["model_id"], r["version"]) for r in rows]


def _count(database: Database, table: str) -> int:
    return int(database.shared().scalar(f"SELECT COUNT(*) FROM {table}"))


def test_drill_without_scratch_store_refuses_when_a_watch_holds_the_lease_and_says_how(
    leased: tuple[Path, Database],
) -> None:
    root, database = leased
    result = run_cli("drill", "quality-regression", "--duration", "5s", cwd=root)
    assert result.returncode == 4, result.stdout + result.stderr
    assert HOLDER in result.stderr
    assert "--scratch-store" in result.stderr
    assert _count(database, "drill_runs") == 0


@pytest.mark.integration
@pytest.mark.slow
def test_scratch_store_drill_runs_under_a_lease_holder_and_records_in_the_main_store(
    leased: tuple[Path, Database], tmp_path: Path
) -> None:
    root, database = leased
    aliases_before = _aliases(database)
    incidents_before = _count(database, "incidents")
    alerts_before = _count(database, "alert_events")
    history_before = _count(database, "alias_history")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"QG_MAX_DURATION": "8s", "TMPDIR": str(temp)}
    run = run_cli(
        "drill",
        "quality-regression",
        "--environment",
        "staging",
        "--scratch-store",
        "--duration",
        "7s",  # a significant quality drop needs a few seconds of samples
        "--json",
        cwd=root,
        env=env,
        timeout=150,
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr
    result = json.loads(run.stdout)
    print(f"\nquality-regression (scratch): {json.dumps(result['figures'], sort_keys=True)}")
    assert (run.returncode == 1) == bool(result["missed_runbook"])
    figures = result["figures"]
    assert figures["requests_sent"] > 0
    assert figures["alert_firing_s"] is not None, result["details"]
    assert figures["rollback_s"] is not None, result["details"]
    scratch = result["details"]["scratch_store"]
    assert "stayed in a temporary store" in scratch["note"]
    assert scratch["kept_at"] is None
    assert result["details"]["restore"] == []  # nothing to put back in the main store
    incident = result["incident"]
    assert incident is not None
    assert incident["store"] == "scratch"
    assert incident["severity"] in SEVERITIES
    assert "rollback" in [e["kind"] for e in incident["timeline"]]

    # The record is in the main store; nothing else of the drill is.
    listing = run_cli("drill", "list", "--json", cwd=root)
    (row,) = json.loads(listing.stdout)
    assert row["id"] == result["run_id"]
    assert row["status"] in ("passed", "missed")
    assert row["figures"]["rollback_s"] == figures["rollback_s"]
    assert row["incident_id"] is None
    assert row["details"]["incident"]["timeline"] == incident["timeline"]
    assert "notifications" in row["details"]["incident"]
    assert _aliases(database) == aliases_before
    assert _count(database, "alias_history") == history_before
    assert _count(database, "incidents") == incidents_before
    assert _count(database, "alert_events") == alerts_before
    audit = run_cli("audit", "list", "--json", cwd=root)
    actions = {entry["action"] for entry in json.loads(audit.stdout)}
    assert {"drill.start", "drill.fault.inject", "drill.fault.clear", "drill.finish"} <= actions
    # The scratch store was deleted (other libraries may leave their own caches there).
    assert [p.name for p in temp.iterdir() if p.name.startswith("qg-drill-scratch-")] == []
