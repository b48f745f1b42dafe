"""Routine checks run by the watch: real subprocess runs recorded in job_runs, the alert a
failed run raises and a passing run resolves, `routines list|run` and `status`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Workspace, make_workspace, run_cli
from tests.test_imports import loaded_modules
from tests.watch_setup import Clock

from quality_gates.config import QualityGatesConfig, load_config, render_starter
from quality_gates.incidents import list_incidents
from quality_gates.routines import jobs
from quality_gates.watch._service import WatchService
from quality_gates.watch.status import watch_status

T0 = 29_000_000 * 60.0 + 30.0  # half a minute past a minute: "* * * * *" is due at T0 + 30


def routines_config(ws: Workspace, *jobs_: dict[str, Any]) -> QualityGatesConfig:
    """The workspace's config with these routines and no alert rules of its own."""
    data = load_config(ws.config_path).config.model_dump(mode="json", by_alias=True)
    data["routines"] = {"jobs": list(jobs_)}
    data["alerts"]["rules"] = []
    data["alerts"]["slos"] = []
    return QualityGatesConfig.model_validate(data)


def every_minute(name: str, command: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "cron": "* * * * *", "command": command, "timeout": "60s", **extra}


def watch(ws: Workspace, config: QualityGatesConfig, clock: Clock) -> WatchService:
    return WatchService(ws.database, config, clock=clock, interval=1.0, config_path=ws.config_path)


async def cycle(service: WatchService) -> None:
    """One pass of the loop, then wait for the routine runs it started."""
    await service.run_once()
    assert service.routines is not None
    await service.routines.wait()


def routine_alerts(ws: Workspace) -> dict[str, dict[str, Any]]:
    return {a["rule"]: a for a in watch_status(ws.conn)["alerts"]}


@pytest.fixture
def ws(tmp_path: Path, store_url: str) -> Workspace:
    """The starter workspace on each store dialect (the runs reach the same one)."""
    workspace = make_workspace(tmp_path / "ws", store_url)
    yield workspace
    workspace.database.close_shared()


async def test_watch_runs_a_due_routine_once_per_slot_and_records_it(ws: Workspace) -> None:
    clock = Clock(T0)
    service = watch(ws, routines_config(ws, every_minute("health", "config get project")), clock)
    try:
        await cycle(service)  # first sight of the job: its past slots are not run
        assert jobs.last_runs(ws.conn, job="health") == []
        clock.now = T0 + 31  # the next minute has begun
        await cycle(service)
        (run,) = jobs.last_runs(ws.conn, job="health")
        assert run["status"] == "passed"
        details = run["details"]
        assert details["trigger"] == "schedule"
        assert details["slot"] == T0 + 30
        assert details["exit_code"] == 0
        assert details["timing"] == "on time"
        assert details["output"].strip() == "test-project"  # the watch's own config
        clock.now = T0 + 50  # same slot: nothing more
        await cycle(service)
        assert len(jobs.last_runs(ws.conn, job="health")) == 1
    finally:
        await service.close()


async def test_the_running_watch_loop_runs_the_routine_when_the_minute_turns(
    ws: Workspace,
) -> None:
    import asyncio
    import math
    import time

    start = time.time()
    offset = math.ceil(start / 60) * 60 - 1.5 - start  # the watch's clock: 1.5 s to the minute

    def clock() -> float:
        return time.time() + offset

    config = routines_config(ws, every_minute("health", "status"))
    service = WatchService(
        ws.database, config, clock=clock, interval=0.25, config_path=ws.config_path
    )
    stop = asyncio.Event()
    loop = asyncio.create_task(service.run(stop))
    try:
        for _ in range(200):  # at most 20 s
            runs = jobs.last_runs(ws.conn, job="health")
            if runs and runs[0]["status"] != "running":
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=30)
    (run,) = jobs.last_runs(ws.conn, job="health")
    assert run["status"] == "passed"
    assert run["details"]["slot"] == math.ceil(start / 60) * 60


async def test_a_scheduled_run_acts_on_the_same_store_as_the_routine(ws: Workspace) -> None:
    clock = Clock(T0)
    command = "silence add alertname=noisy -m 'weekly maintenance' -d 1h"
    service = watch(ws, routines_config(ws, every_minute("mute", command)), clock)
    try:
        await cycle(service)
        clock.now = T0 + 31
        await cycle(service)
    finally:
        await service.close()
    assert jobs.last_runs(ws.conn, job="mute")[0]["status"] == "passed"
    (row,) = ws.conn.execute("SELECT comment, created_by FROM silences")
    assert (row["comment"], row["created_by"]) == ("weekly maintenance", "routine:mute")


async def test_a_restarted_watch_runs_the_latest_missed_slot_once_and_says_late(
    ws: Workspace,
) -> None:
    clock = Clock(T0)
    config = routines_config(ws, every_minute("health", "status"))
    first = watch(ws, config, clock)
    try:
        await cycle(first)
        clock.now = T0 + 31
        await cycle(first)
    finally:
        await first.close()
    clock.now = T0 + 31 + 10 * 60  # down for ten minutes
    second = watch(ws, config, clock)
    try:
        await cycle(second)
        await cycle(second)
    finally:
        await second.close()
    latest, earlier = jobs.last_runs(ws.conn, job="health")
    assert latest["details"]["late"]
    assert latest["details"]["skipped_slots"] == 9
    assert latest["details"]["timing"] == "9 missed slots skipped"
    assert latest["details"]["slot"] == earlier["details"]["slot"] + 10 * 60


async def test_a_failed_routine_raises_an_alert_and_a_passing_run_resolves_it(
    ws: Workspace,
) -> None:
    clock = Clock(T0)
    failing = routines_config(
        ws, every_minute("lookup", "incident show 999", severity="critical", type="quality")
    )
    service = watch(ws, failing, clock)
    try:
        await cycle(service)
        clock.now = T0 + 31
        await cycle(service)  # the run fails (exit 1: no incident 999)
        clock.now = T0 + 32
        await service.run_once()  # the evaluation sees it
    finally:
        await service.close()
    (run,) = jobs.last_runs(ws.conn, job="lookup")
    assert run["status"] == "failed"
    assert run["details"]["exit_code"] == 1
    alert = routine_alerts(ws)["routine-lookup-failed"]
    assert alert["state"] == "firing"
    assert alert["severity"] == "critical"
    assert "routine check lookup failed" in alert["summary"]
    assert "exit 1 (failed)" in alert["summary"]
    (incident,) = list_incidents(ws.conn)
    assert incident["environment"] == "production"

    clock.now = T0 + 91  # the next slot, with the command fixed
    fixed = watch(ws, routines_config(ws, every_minute("lookup", "status")), clock)
    try:
        await cycle(fixed)
        clock.now = T0 + 92
        await fixed.run_once()
    finally:
        await fixed.close()
    assert jobs.last_runs(ws.conn, job="lookup")[0]["status"] == "passed"
    assert "routine-lookup-failed" not in routine_alerts(ws)
    events = ws.conn.execute(
        "SELECT from_state, to_state FROM alert_events WHERE rule = 'routine-lookup-failed' "
        "ORDER BY id"
    )
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        ("inactive", "firing"),
        ("firing", "resolved"),
    ]


async def test_a_run_past_its_timeout_is_killed_and_recorded_as_error(ws: Workspace) -> None:
    clock = Clock(T0)
    config = routines_config(ws, every_minute("slow", "status", timeout=0.05))
    service = watch(ws, config, clock)
    try:
        await cycle(service)
        clock.now = T0 + 31
        await cycle(service)
    finally:
        await service.close()
    (run,) = jobs.last_runs(ws.conn, job="slow")
    assert run["status"] == "error"
    assert run["details"]["timed_out"]
    assert run["details"]["exit_code"] is None
    assert run["details"]["summary"].startswith("timed out (error)")


async def test_a_run_cut_by_the_watch_stopping_gives_its_slot_back(ws: Workspace) -> None:
    clock = Clock(T0)
    config = routines_config(ws, every_minute("health", "status"))
    service = watch(ws, config, clock)
    try:
        await service.run_once()
        clock.now = T0 + 31
        report = await service.run_once()  # starts the run; close() cuts it
        assert [c.job for c in report.routines] == ["health"]
    finally:
        await service.close()
    (cut,) = jobs.last_runs(ws.conn, job="health")
    assert cut["status"] == "error"
    assert cut["details"]["interrupted"]
    clock.now = T0 + 40
    again = watch(ws, config, clock)
    try:
        await cycle(again)
    finally:
        await again.close()
    rerun = jobs.last_runs(ws.conn, job="health")[0]
    assert rerun["status"] == "passed"
    assert rerun["details"]["slot"] == T0 + 30
    assert "routine-health-failed" not in routine_alerts(ws)  # the cut run raised nothing
    assert ws.conn.scalar("SELECT COUNT(*) FROM alert_events") == 0


async def test_only_the_leader_runs_routines(ws: Workspace) -> None:
    clock = Clock(T0)
    config = routines_config(ws, every_minute("health", "status"))
    leader, standby = watch(ws, config, clock), watch(ws, config, clock)
    try:
        await cycle(leader)
        await cycle(standby)
        clock.now = T0 + 14  # the leader renews its 15 s lease before the slot
        await cycle(leader)
        clock.now = T0 + 28
        await cycle(leader)
        clock.now = T0 + 31
        await cycle(standby)
        assert standby.leader is False
        await cycle(leader)
    finally:
        await leader.close()
        await standby.close()
    (run,) = jobs.last_runs(ws.conn, job="health")
    assert run["holder"] == leader.holder


# --- the CLI ------------------------------------------------------------------------------


ROUTINES_YAML = """
routines:
  jobs:
    - {name: health, cron: "0 6 * * *", command: status, timeout: 1m}
    - {name: lookup, cron: "0 7 * * 1", command: "incident show 999", severity: critical}
    - {name: later, cron: "0 8 1 * *", command: "no-such-command --flag", enabled: false}
"""


@pytest.fixture
def cli_ws(tmp_path: Path) -> Workspace:
    starter = render_starter("test-project")
    start, end = starter.index("\nroutines:\n"), starter.index("# Notification channels")
    text = starter[:start] + ROUTINES_YAML + "\n" + starter[end:]
    workspace = make_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}", text)
    yield workspace
    workspace.database.close_shared()


def test_routines_run_records_a_manual_run_and_exits_like_it(cli_ws: Workspace) -> None:
    args = cli_ws.cli_args()
    passed = run_cli(*args, "routines", "run", "health", "--json", cwd=cli_ws.root)
    assert passed.returncode == 0, passed.stderr
    result = json.loads(passed.stdout)
    assert result["status"] == "passed"
    assert result["command"] == ["status"]
    failed = run_cli(*args, "routines", "run", "lookup", cwd=cli_ws.root)
    assert failed.returncode == 1
    assert "routine lookup run #2: failed" in failed.stdout
    unknown = run_cli(*args, "routines", "run", "helth", cwd=cli_ws.root)
    assert unknown.returncode == 2
    assert "unknown routine 'helth'; did you mean 'health'?" in unknown.stderr
    runs = {r["job"]: r for r in jobs.last_runs(cli_ws.conn)}
    assert runs["health"]["details"]["trigger"] == "manual"
    assert runs["lookup"]["status"] == "failed"


def test_routines_list_shows_schedule_next_run_and_last_run(cli_ws: Workspace) -> None:
    args = cli_ws.cli_args()
    run_cli(*args, "routines", "run", "lookup", cwd=cli_ws.root)
    listed = run_cli(*args, "routines", "list", "--json", cwd=cli_ws.root)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["health"]["cron"] == "0 6 * * *"
    assert rows["health"]["next_run"].endswith("T06:00:00Z")
    assert rows["health"]["last_run"] is None
    assert rows["lookup"]["last_run"]["status"] == "failed"
    assert rows["lookup"]["last_run"]["trigger"] == "manual"
    assert rows["later"]["enabled"] is False
    assert rows["later"]["next_run"] is None
    assert rows["later"]["command_known"] is False
    assert rows["health"]["command_known"]
    text = run_cli(*args, "routines", "list", cwd=cli_ws.root)
    assert "(unknown command)" in text.stdout
    assert "disabled" in text.stdout


def test_status_shows_the_routines_last_runs_without_loading_cron(cli_ws: Workspace) -> None:
    args = cli_ws.cli_args()
    run_cli(*args, "routines", "run", "health", cwd=cli_ws.root)
    run_cli(*args, "routines", "run", "lookup", cwd=cli_ws.root)
    report = json.loads(run_cli(*args, "status", "--json", cwd=cli_ws.root).stdout)
    rows = {r["name"]: r for r in report["routines"]}
    assert rows["health"]["last_run"]["status"] == "passed"
    assert not rows["health"]["failing"]
    assert rows["lookup"]["failing"]
    assert rows["lookup"]["last_run"]["summary"].startswith("exit 1 (failed)")
    first = run_cli(*args, "status", cwd=cli_ws.root).stdout
    assert first.startswith("ATTENTION")  # the one-screen summary names the failing check
    assert "routine lookup failing" in first
    text = run_cli(*args, "status", "--full", cwd=cli_ws.root).stdout
    assert "routine checks" in text
    assert "lookup" in text
    assert "exit 1 (failed)" in text
    code, modules = loaded_modules(*args, "status", cwd=cli_ws.root)
    assert code == 0
    assert "croniter" not in modules
