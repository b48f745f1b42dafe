"""Drills end to end: the drill's own simulators, gateway and watch on a real SQLite store.

Faults are kept short (a few seconds) and $QG_MAX_DURATION bounds the recovery wait, so a
figure may miss a target here: the tests assert what happened, and print the figures (run
with -s to see them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Workspace, make_workspace, run_cli

from quality_gates.config import load_config
from quality_gates.drills import DrillOptions, run_drill, store
from quality_gates.store import StoreURL
from quality_gates.store.registry import list_aliases

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def ws(tmp_path: Path) -> Any:
    workspace = make_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}")
    yield workspace
    workspace.database.close_shared()


def drill(ws: Workspace, scenario: str, **options: Any) -> Any:
    loaded = load_config(ws.config_path)
    return run_drill(
        ws.conn,
        loaded,
        StoreURL.parse(ws.db_url, base_dir=ws.root),
        DrillOptions(scenario, actor="tester", **options),
    )


def show(result: Any) -> None:
    print(f"\n{result.scenario}: {json.dumps(result.figures, sort_keys=True)}")
    if result.missed_project:
        print(f"  project targets missed: {', '.join(result.missed_project)}")
    if result.missed_runbook:
        print(f"  runbook targets missed: {', '.join(result.missed_runbook)}")


def aliases(ws: Workspace, env: str) -> dict[str, str]:
    return {a.name: a.model_id for a in list_aliases(ws.conn, env)}


def test_quality_regression_rolls_back_then_the_aliases_are_restored(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QG_MAX_DURATION", "8s")
    before = aliases(ws, "staging")
    result = drill(ws, "quality-regression", duration=7.0)  # a significant drop needs samples
    show(result)
    assert result.figures["rollback_s"] is not None, result.details
    assert result.figures["alert_firing_s"] is not None
    assert result.figures["detection_s"] <= result.figures["rollback_s"]
    assert result.incident is not None
    assert result.incident["drill"]
    kinds = [e["kind"] for e in result.incident["timeline"]]
    assert "rollback" in kinds
    assert result.incident["state"] == "resolved"
    assert aliases(ws, "staging") == before  # the drill's rollback was put back
    rolled = ws.conn.execute(
        "SELECT operation, source FROM alias_history WHERE environment = 'staging' "
        "AND alias = 'current' ORDER BY id"
    )
    moves = [(r["operation"], r["source"]) for r in rolled]
    assert ("rollback", "auto") in moves
    # The restore put `current` back, unless the watch already had (a second automatic
    # rollback, onto the recovered model once the fault cleared).
    rollbacks = result.details["rollbacks"]
    assert rollbacks[0]["to"] == before["previous-stable"]
    assert moves[-1] == ("restore", "drill") or len(rollbacks) > 1
    (row,) = store.list_runs(ws.conn)
    assert row["status"] in ("passed", "missed")
    assert row["figures"]["rollback_s"] == result.figures["rollback_s"]
    assert row["incident_id"] == result.incident["id"]


def test_multi_provider_outage_serves_stale_answers_and_status_shows_degraded(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quality_gates.gateway import emergency

    monkeypatch.setenv("QG_MAX_DURATION", "6s")
    result = drill(ws, "multi-provider-outage", duration=4.0)
    show(result)
    assert result.figures["stale_served"] > 0
    assert result.figures["degraded_s"] is not None
    status = result.details["status_during_fault"]
    assert status["emergency"]["mode"] == "degraded"
    assert result.details["load"]["fault"]["served_by"].get("stale", 0) > 0
    assert emergency.current(ws.conn, "staging") is None  # switched off and restored
    runtime = ws.conn.execute("SELECT key FROM runtime_settings WHERE environment = 'staging'")
    assert [r["key"] for r in runtime] == []


def test_cli_provider_outage_in_an_init_workspace_measures_and_records(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    init = run_cli("init", cwd=root)
    assert init.returncode == 0, init.stderr
    env = {"QG_MAX_DURATION": "15s"}
    first = run_cli(
        "drill", "provider-outage", "--duration", "4s", "--json", cwd=root, env=env, timeout=90
    )
    assert first.returncode in (0, 1), first.stdout + first.stderr
    result = json.loads(first.stdout)
    figures = result["figures"]
    print(f"\nprovider-outage: {json.dumps(figures, sort_keys=True)}")
    if result["missed_project"]:
        print(f"  project targets missed: {', '.join(result['missed_project'])}")
    assert (first.returncode == 1) == bool(result["missed_runbook"])
    assert figures["detection_s"] is not None
    assert figures["detection_s"] < 30
    assert figures["failover_s"] is not None
    assert figures["requests_sent"] > 0
    assert result["details"]["faulted_providers"] == ["bedrock"]
    served = result["details"]["load"]["fault"]["served_by"]
    assert set(served) - {"failed"} - {"bedrock"}, served  # a backup took the traffic
    assert result["incident"]["drill"]
    assert result["incident"]["title"].startswith("[drill]")
    listing = run_cli("drill", "list", "--json", cwd=root)
    (row,) = json.loads(listing.stdout)
    assert row["id"] == result["run_id"]
    assert row["status"] == result["status"]
    audit = run_cli("audit", "list", "--json", cwd=root)
    actions = {entry["action"] for entry in json.loads(audit.stdout)}
    assert {"drill.start", "drill.fault.inject", "drill.fault.clear", "drill.finish"} <= actions
    assert "drill.restore" in actions
    status = json.loads(run_cli("status", "--json", "-e", "staging", cwd=root).stdout)
    (staging,) = status["environments"]
    assert staging["emergency"] is None  # nothing of the drill stays in force
