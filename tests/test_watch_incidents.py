"""From synthetic telemetry to incidents and notifications through the outbox, on both stores."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from tests.conftest import Workspace
from tests.receivers import Receiver
from tests.telemetry_rows import put_traffic
from tests.watch_setup import PD_KEY, Clock, service, watch_config

from quality_gates import incidents
from quality_gates.incidents import current_incident, record_event
from quality_gates.store import audit

T0 = 29_000_000 * 60.0 + 30.0  # half a minute into a whole minute


async def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    """Poll `predicate` until true; fail saying how long it waited."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:g} s")
        await asyncio.sleep(0.25)


def incident_rows(ws: Workspace) -> list[dict]:  # type: ignore[type-arg]
    return incidents.list_incidents(ws.conn, state="all")


async def test_errors_on_every_provider_open_one_p1_incident_then_resolve_it(
    workspace: Workspace, receiver: Receiver
) -> None:
    config = watch_config(workspace, receiver.base)
    clock = Clock(T0)
    svc = service(workspace, config, clock)
    try:
        put_traffic(workspace.conn, ts=T0 - 60, error_rate=0.0)
        put_traffic(workspace.conn, ts=T0, error_rate=0.2)
        first = await svc.run_once()
        assert first.leader
        assert first.evaluation is not None
        opened = incident_rows(workspace)
        assert len(opened) == 1
        incident = opened[0]
        assert (incident["severity"], incident["type"], incident["state"]) == (
            "P1",
            "provider",
            "investigating",
        )
        # a second cycle with the same facts changes nothing and sends nothing new
        clock.now += 1
        await svc.run_once()
        assert len(incident_rows(workspace)) == 1
        triggers = receiver.on("/pagerduty/v2/enqueue")
        assert [t["event_action"] for t in triggers] == ["trigger"]
        assert triggers[0]["routing_key"] == PD_KEY
        assert triggers[0]["payload"]["severity"] == "critical"
        assert triggers[0]["payload"]["source"].endswith("/production")
        slack = receiver.on("/slack/ops-alerts")
        assert len(slack) == 1
        assert slack[0]["text"].startswith("[P1] Incident #")
        assert slack[0]["blocks"][0]["type"] == "header"
        # recovery: healthy minutes push the burst out of the 60 s window
        for minute in range(1, 4):
            put_traffic(workspace.conn, ts=T0 + 60 * minute, error_rate=0.0)
        clock.now = T0 + 60 * 3 + 30
        await svc.run_once()  # alerts stop holding; keep_firing_for (60 s) not over yet
        clock.now += 61
        put_traffic(workspace.conn, ts=clock.now, error_rate=0.0)
        await svc.run_once()
        clock.now += 1
        await svc.run_once()
        row = incidents.get_incident(workspace.conn, incident["id"])
        assert row["state"] == "resolved"
        events = receiver.on("/pagerduty/v2/enqueue")
        assert [e["event_action"] for e in events] == ["trigger", "resolve"]
        assert events[0]["dedup_key"] == events[1]["dedup_key"] == row["dedup_key"]
        assert [m["text"].split(":")[0] for m in receiver.on("/slack/ops-alerts")] == [
            f"[P1] Incident #{row['id']} opened",
            f"[P1] Incident #{row['id']} resolved",
        ]
        hooks = receiver.on("/webhook")
        assert [h["event"] for h in hooks] == ["open", "resolve"]
        assert len(set(receiver.keys)) == len(receiver.keys)
        kinds = [e["kind"] for e in incidents.timeline(workspace.conn, row["id"])]
        assert kinds[0] == "opened"
        assert kinds[-1] == "resolved"
        assert "alert" in kinds
        assert "state" in kinds
        assert audit.verify(workspace.conn).ok
    finally:
        await svc.close()


async def test_a_receiver_outage_loses_nothing_and_sends_nothing_twice(
    workspace: Workspace, receiver: Receiver
) -> None:
    import time

    config = watch_config(workspace, receiver.base)
    clock = Clock(T0)
    svc = service(workspace, config, clock)
    try:
        receiver.fail_until = time.monotonic() + 3600
        put_traffic(workspace.conn, ts=T0, error_rate=0.5)
        await svc.run_once()
        assert receiver.rejected >= 3
        assert receiver.received == {}
        pending = workspace.conn.scalar(
            "SELECT COUNT(*) FROM notifications WHERE status = 'pending'"
        )
        assert pending >= 3
        for _ in range(5):  # retries while the receiver still fails
            clock.now += 5
            await svc.run_once()
        assert receiver.received == {}
        receiver.fail_until = 0.0
        clock.now += 5
        await svc.run_once()
        clock.now += 5
        await svc.run_once()
        assert len(receiver.on("/pagerduty/v2/enqueue")) == 1
        assert len(receiver.on("/slack/ops-alerts")) == 1
        assert len(receiver.on("/webhook")) == 1
        assert len(set(receiver.keys)) == len(receiver.keys) == 3
        attempts = workspace.conn.execute("SELECT attempts, status FROM notifications")
        assert all(r["status"] == "sent" and r["attempts"] >= 2 for r in attempts)
    finally:
        await svc.close()


async def test_ack_note_escalate_and_other_planes_events_fill_the_timeline(
    workspace: Workspace, receiver: Receiver
) -> None:
    config = watch_config(workspace, receiver.base)
    conn = workspace.conn
    with conn.write():
        row = incidents.open_incident(
            conn,
            config,
            title="gemini timeouts",
            incident_type="provider",
            severity="P1",
            environment="production",
            group_key="production:service",
            actor="alice",
            now=T0,
        )
    incident_id = row["id"]
    assert current_incident(conn, "production") == incident_id
    assert current_incident(conn, "staging") is None
    assert record_event(
        conn, "rollback", "current -> claude-3-haiku", environment="production", now=T0 + 30
    )
    incidents.acknowledge(conn, config, incident_id, actor="bob", now=T0 + 60)
    with pytest.raises(Exception, match="already acknowledged"):
        incidents.acknowledge(conn, config, incident_id, actor="bob", now=T0 + 61)
    incidents.add_note(
        conn,
        incident_id,
        "failing over to meta",
        actor="bob",
        public=True,
        state="identified",
        now=T0 + 80,
    )
    contact, _keys = incidents.escalate(
        conn, config, incident_id, actor="bob", reason="slow fix", now=T0 + 90
    )
    assert contact == "AI Team Lead"
    svc = service(workspace, config, Clock(T0 + 120))
    try:
        await svc.deliver()
    finally:
        await svc.close()
    actions = [e["event_action"] for e in receiver.on("/pagerduty/v2/enqueue")]
    assert actions == ["trigger", "acknowledge"]
    assert len(receiver.on("/slack/ai-team")) == 1  # the escalation reached AI Team Lead
    kinds = [e["kind"] for e in incidents.timeline(conn, incident_id)]
    assert kinds == ["opened", "rollback", "ack", "note", "state", "escalation"]
    public = [e["kind"] for e in incidents.timeline(conn, incident_id, public_only=True)]
    assert public == ["opened", "ack", "note", "state"]
    row = incidents.get_incident(conn, incident_id)
    assert row["state"] == "identified"
    assert row["escalation_level"] == 1
    details = json.loads(conn.scalar("SELECT details FROM incident_events WHERE kind = 'ack'"))
    assert details["response_seconds"] == pytest.approx(60.0)


async def test_unacknowledged_incident_breaches_its_response_target_and_escalates(
    workspace: Workspace, receiver: Receiver
) -> None:
    config = watch_config(workspace, receiver.base)
    clock = Clock(T0)
    svc = service(workspace, config, clock)
    try:
        put_traffic(workspace.conn, ts=T0, error_rate=0.5)
        await svc.run_once()
        (row,) = incident_rows(workspace)
        for minute in range(1, 32):  # keep the problem alive for 31 minutes
            put_traffic(workspace.conn, ts=T0 + 60 * minute, error_rate=0.5)
        clock.now = T0 + 31 * 60
        await svc.run_once()
        row = incidents.get_incident(workspace.conn, row["id"])
        assert row["response_breached_at"] is not None
        assert row["escalation_level"] == 1  # provider outage: escalate after 30 minutes
        kinds = [e["kind"] for e in incidents.timeline(workspace.conn, row["id"])]
        assert "breach" in kinds
        assert "escalation" in kinds
        assert len(incident_rows(workspace)) == 1
    finally:
        await svc.close()


async def test_an_incident_resolved_by_hand_while_alerts_fire_is_followed_by_a_new_one(
    workspace: Workspace, receiver: Receiver
) -> None:
    config = watch_config(workspace, receiver.base)
    clock = Clock(T0)
    svc = service(workspace, config, clock)
    try:
        put_traffic(workspace.conn, ts=T0, error_rate=0.3)
        await svc.run_once()
        (first,) = incident_rows(workspace)
        incidents.resolve(workspace.conn, config, first["id"], actor="bob", now=T0 + 1)
        clock.now += 2
        await svc.run_once()
        rows = incident_rows(workspace)
        assert [r["state"] for r in rows] == ["investigating", "resolved"]
    finally:
        await svc.close()


@pytest.mark.slow
@pytest.mark.integration
async def test_a_minute_long_receiver_outage_in_real_time_loses_and_repeats_nothing(
    sqlite_workspace: Workspace, receiver: Receiver
) -> None:
    import asyncio
    import time

    from quality_gates.watch._service import WatchService

    ws = sqlite_workspace
    config = watch_config(ws, receiver.base)
    receiver.fail_until = time.monotonic() + 60.0
    put_traffic(ws.conn, ts=time.time(), error_rate=0.3)
    svc = WatchService(ws.database, config, interval=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    try:
        await wait_until(lambda: len(receiver.on("/pagerduty/v2/enqueue")) >= 1, 150.0)
        assert receiver.rejected >= 3  # the receiver refused for a minute ...
        (row,) = incident_rows(ws)
        incidents.acknowledge(ws.conn, config, row["id"], actor="bob")
        # Each channel retries on its own backoff schedule: wait for all of them.
        await wait_until(
            lambda: (
                len(receiver.on("/pagerduty/v2/enqueue")) >= 2
                and len(receiver.on("/slack/ops-alerts")) >= 2
                and len(receiver.on("/webhook")) >= 2
            ),
            120.0,
        )
        await asyncio.sleep(2.0)  # room for any duplicate to show up
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    events = receiver.on("/pagerduty/v2/enqueue")
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge"]  # nothing lost
    assert len(receiver.on("/slack/ops-alerts")) == 2
    assert len(receiver.on("/webhook")) == 2
    assert len(receiver.keys) == len(set(receiver.keys)) == 6  # nothing twice


def test_a_raised_incident_keeps_a_sentence_for_its_title(workspace: Workspace) -> None:
    from tests.telemetry_rows import put_rollup
    from tests.watch_setup import watch_config

    from quality_gates.watch._evaluate import evaluate

    config = watch_config(workspace, "http://127.0.0.1:9")
    start = T0 - 30.0  # the start of a minute
    put_rollup(workspace.conn, ts=start + 1, count=100, latencies=[2000.0] * 100)
    evaluate(workspace.conn, config, now=start + 59)
    (opened,) = incident_rows(workspace)
    assert opened["severity"] == "P3"  # the P95 warning alone
    put_rollup(workspace.conn, ts=start + 61, count=100, latencies=[6000.0] * 100)
    evaluate(workspace.conn, config, now=start + 119)
    (raised,) = incident_rows(workspace)
    assert raised["severity"] == "P2"
    assert raised["title"].startswith("P95 latency "), raised["title"]
    assert raised["title"].endswith("(above 3000 ms) in production"), raised["title"]
