"""The evaluator as a service: leadership, silences and inhibition end to end, SLO burn
rates, the status data, gateway heartbeats and job runs."""

from __future__ import annotations

import asyncio

import pytest
from tests.conftest import Workspace
from tests.receivers import Receiver
from tests.telemetry_rows import put_rollup, put_traffic
from tests.watch_setup import Clock, service, watch_config

from quality_gates.alerts import silences
from quality_gates.incidents import list_incidents
from quality_gates.routines import jobs
from quality_gates.signals._metrics import MetricEngine
from quality_gates.store._leader import WATCH_LEASE, acquire, current_holder, release
from quality_gates.watch._service import WatchService
from quality_gates.watch.status import watch_status

T0 = 29_000_000 * 60.0 + 30.0


def test_only_one_evaluator_holds_the_lease_until_it_lapses(workspace: Workspace) -> None:
    conn = workspace.conn
    assert acquire(conn, WATCH_LEASE, "a", 15.0, T0)
    assert not acquire(conn, WATCH_LEASE, "b", 15.0, T0 + 5)
    assert acquire(conn, WATCH_LEASE, "a", 15.0, T0 + 10)  # renewal
    assert current_holder(conn, WATCH_LEASE, T0 + 20) == "a"
    assert acquire(conn, WATCH_LEASE, "b", 15.0, T0 + 26)  # a's lease lapsed at T0 + 25
    release(conn, WATCH_LEASE, "b")
    assert current_holder(conn, WATCH_LEASE, T0 + 27) is None


async def test_two_services_one_acts_and_a_standby_takes_over(
    workspace: Workspace, receiver: Receiver
) -> None:
    config = watch_config(workspace, receiver.base)
    clock = Clock(T0)
    first, second = service(workspace, config, clock), service(workspace, config, clock)
    try:
        put_traffic(workspace.conn, ts=T0, error_rate=0.5)
        reports = [await first.run_once(), await second.run_once()]
        assert [r.leader for r in reports] == [True, False]
        assert len(list_incidents(workspace.conn)) == 1
        await first.close()  # a clean stop hands the lease over at once
        clock.now += 1
        assert (await second.run_once()).leader
        assert len(list_incidents(workspace.conn)) == 1
        assert len(receiver.on("/pagerduty/v2/enqueue")) == 1
    finally:
        await second.close()


async def test_run_stops_on_the_event(workspace: Workspace, receiver: Receiver) -> None:
    config = watch_config(workspace, receiver.base)
    cycles: list[object] = []
    svc = WatchService(workspace.database, config, interval=0.05, on_cycle=cycles.append)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert len(cycles) >= 2
    assert current_holder(workspace.conn, WATCH_LEASE, 0.0) is None  # released on stop


async def test_a_silenced_alert_opens_nothing_until_the_silence_expires(
    workspace: Workspace, receiver: Receiver
) -> None:
    config = watch_config(workspace, receiver.base)
    clock = Clock(T0)
    silence_id = silences.add(
        workspace.conn,
        ["environment=production"],
        comment="load test",
        duration=600,
        actor="alice",
        now=T0 - 1,
    )
    svc = service(workspace, config, clock)
    try:
        put_traffic(workspace.conn, ts=T0, error_rate=0.5)
        await svc.run_once()
        status = watch_status(workspace.conn, now=T0)
        assert status["alerts"]
        assert all(a["silenced_by"] == silence_id for a in status["alerts"])
        assert list_incidents(workspace.conn) == []
        assert receiver.received == {}
        listed = silences.listing(workspace.conn, now=T0)
        assert listed[0]["muting"]
        silences.expire(workspace.conn, silence_id, actor="alice", now=T0 + 1)
        clock.now += 2
        await svc.run_once()
        assert len(list_incidents(workspace.conn)) == 1
    finally:
        await svc.close()


async def test_availability_alert_inhibits_that_providers_latency_alert(
    workspace: Workspace, receiver: Receiver
) -> None:
    rules = [
        {
            "name": "bedrock-down",
            "expr": "provider_availability < 95%",
            "severity": "critical",
            "type": "provider",
        },
        {
            "name": "slow-provider",
            "expr": "p95_latency > 1500ms",
            "severity": "warning",
            "type": "performance",
            "group_by": ["environment", "provider"],
            "min_requests": 1,
        },
    ]
    config = watch_config(workspace, receiver.base, rules=rules)
    clock = Clock(T0)
    svc = service(workspace, config, clock)
    try:
        for provider, errors in (("bedrock", 50), ("google", 0)):
            put_rollup(
                workspace.conn, ts=T0, provider=provider, kind="attempt", count=100, errors=errors
            )
            put_rollup(
                workspace.conn, ts=T0, provider=provider, count=100, latencies=[4000.0] * 100
            )
        await svc.run_once()
        alerts = {
            (a["rule"], a["labels"].get("provider")): a
            for a in watch_status(workspace.conn, now=T0)["alerts"]
        }
        assert alerts[("slow-provider", "bedrock")]["inhibited"] is True
        assert alerts[("slow-provider", "google")]["inhibited"] is False
        assert alerts[("slow-provider", "google")]["incident"] is not None
        assert alerts[("slow-provider", "bedrock")]["incident"] is None
    finally:
        await svc.close()


async def test_slo_burn_rate_fires_only_when_both_windows_burn(
    workspace: Workspace, receiver: Receiver
) -> None:
    config = watch_config(
        workspace,
        receiver.base,
        rules=[],
        alerts={
            "slos": [
                {
                    "name": "availability",
                    "objective": "99.9%",
                    "windows": [
                        {"long": "1h", "short": "5m", "factor": 14.4, "severity": "critical"}
                    ],
                }
            ]
        },
    )
    clock = Clock(T0)
    svc = service(workspace, config, clock)
    try:
        # an hour at 2% errors (20x the 0.1% budget), but the last five minutes clean
        for minute in range(6, 61):
            put_rollup(workspace.conn, ts=T0 - 60 * minute, count=1000, errors=20)
        for minute in range(6):
            put_rollup(workspace.conn, ts=T0 - 60 * minute, count=1000, errors=0)
        await svc.run_once()
        assert watch_status(workspace.conn, now=T0)["alerts"] == []
        put_rollup(workspace.conn, ts=T0, count=1000, errors=200)  # now the short window burns
        clock.now += 1
        await svc.run_once()
        (alert,) = watch_status(workspace.conn, now=T0)["alerts"]
        assert alert["rule"] == "slo-availability-burn-1h-5m"
        assert alert["value"] > 14.4
    finally:
        await svc.close()


def test_status_shows_incident_age_against_its_response_target(workspace: Workspace) -> None:
    conn = workspace.conn
    with conn.write():
        conn.execute(
            "INSERT INTO incidents (title, type, severity, state, environment, group_key, "
            "dedup_key, opened_at, opened_by, detected_at, last_alert_at, escalation_level, "
            "updated_at) VALUES ('x', 'provider', 'P1', 'investigating', 'production', "
            "'production:service', 'k', :t, 'watch', :t, :t, 0, :t)",
            {"t": T0},
        )
    status = watch_status(conn, now=T0 + 1900)
    (incident,) = status["incidents"]
    assert incident["response_target_seconds"] == 1800
    assert incident["age_seconds"] == pytest.approx(1900)
    assert incident["response_breached"] is True
    assert status["gateways"] == "no gateway heartbeat"
    assert status["evaluator"]["last_evaluation"] is None


def test_resource_utilization_reads_gateway_heartbeats(workspace: Workspace) -> None:
    conn = workspace.conn
    # The gateway's migration creates this table; without it, a copy of its columns.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS gateway_instances (id VARCHAR(64) PRIMARY KEY, "
        "environment VARCHAR(100) NOT NULL, host VARCHAR(200) NOT NULL, pid INTEGER NOT NULL, "
        "listen VARCHAR(200) NOT NULL, started_at FLOAT NOT NULL, heartbeat_at FLOAT NOT NULL, "
        "cpu_percent FLOAT NOT NULL, rss_bytes INTEGER NOT NULL, inflight INTEGER NOT NULL, "
        "inflight_limit INTEGER NOT NULL, queue_depth INTEGER NOT NULL, "
        "queue_limit INTEGER NOT NULL, dropped_telemetry INTEGER NOT NULL, "
        "buffered_telemetry INTEGER NOT NULL, control_version INTEGER NOT NULL, "
        "breakers TEXT NOT NULL)"
    )
    for gid, beat, inflight in (("g1", T0 - 1, 85), ("g2", T0 - 600, 100)):
        conn.execute(
            "INSERT INTO gateway_instances (id, environment, host, pid, listen, started_at, "
            "heartbeat_at, cpu_percent, rss_bytes, inflight, inflight_limit, queue_depth, "
            "queue_limit, dropped_telemetry, buffered_telemetry, control_version, breakers) "
            "VALUES (:id, 'production', 'elsewhere', 1, '', :t, :t, 20.0, 1000, :inflight, 100, "
            "0, 50, 0, 0, 0, '{}')",
            {"id": gid, "t": beat, "inflight": inflight},
        )
    engine = MetricEngine(conn, T0)
    (sample,) = engine.samples("resource_utilization", 60.0, ["environment"])
    assert sample.value == pytest.approx(0.85)  # g2 is stale and not counted
    (gateway,) = watch_status(conn, now=T0)["gateways"]
    assert gateway["id"] == "g1"


def test_job_runs_are_recorded(workspace: Workspace) -> None:
    conn = workspace.conn
    run = jobs.start_run(conn, "daily-health-check", holder="h", now=T0)
    jobs.finish_run(conn, run, "failed", details={"failed": ["google"]}, now=T0 + 5)
    (row,) = jobs.last_runs(conn, job="daily-health-check")
    assert row["status"] == "failed"
    assert row["details"] == {"failed": ["google"]}
    with pytest.raises(ValueError, match="not one of"):
        jobs.finish_run(conn, run, "done")


async def test_watch_collector_exposes_alerts_incidents_and_the_outbox(
    workspace: Workspace, receiver: Receiver
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from quality_gates.watch.metrics import WatchCollector

    config = watch_config(workspace, receiver.base)
    svc = service(workspace, config, Clock(T0))
    try:
        put_traffic(workspace.conn, ts=T0, error_rate=0.3)
        await svc.run_once()
    finally:
        await svc.close()
    registry = CollectorRegistry()
    registry.register(WatchCollector(workspace.database))
    text = generate_latest(registry).decode()
    assert (
        'qg_watch_alerts{environment="production",muted="false",rule="error-rate-critical",'
        'severity="critical",state="firing"} 1.0' in text
    )
    assert (
        'qg_watch_incidents_open{environment="production",severity="P1",state="investigating"} 1.0'
        in text
    )
    assert 'qg_watch_notifications{channel="pagerduty",status="sent"} 1.0' in text
    assert "qg_watch_last_evaluation_age_seconds" in text


def test_a_lease_held_by_a_dead_process_on_this_host_is_taken_at_once(
    sqlite_workspace: Workspace,
) -> None:
    """Chaos matrix (issue 17): after a SIGKILL the other evaluator waited out the lease
    (15 s). A holder on this host and PID namespace whose process is gone is not waited
    out; a live one is."""
    import subprocess
    import sys
    import time

    from quality_gates.store import _leader

    conn = sqlite_workspace.conn
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        me = _leader.holder_id()
        parts = me.split(":")
        theirs = ":".join([parts[0], str(child.pid), parts[2], "abcdef"])
        now = time.time()
        assert _leader.acquire(conn, "test-lease", theirs, 60.0, now)
        assert not _leader.acquire(conn, "test-lease", me, 60.0, now)  # alive: wait it out
        child.kill()
        child.wait(10)
        assert _leader.acquire(conn, "test-lease", me, 60.0, now)  # gone: taken at once
        elsewhere = "another-host:1:1:abcdef"
        assert _leader.acquire(conn, "other-lease", elsewhere, 60.0, now)
        assert not _leader.acquire(conn, "other-lease", me, 60.0, now)  # not judged here
    finally:
        child.kill()
