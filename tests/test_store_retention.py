"""Telemetry retention: `store prune` deletes rows past `store.retention` (a dry run counts
them), never the audit log or an owed notification, and the watch leader prunes on its own
every `store.retention.interval`."""

from __future__ import annotations

import json
import time

from tests.conftest import Workspace, run_cli
from tests.receivers import Receiver
from tests.telemetry_rows import put_rollup
from tests.watch_setup import Clock, service, watch_config

from quality_gates.config import StoreRetention
from quality_gates.store import audit
from quality_gates.store.retention import LAST_RUN_KEY, prune, prune_if_due

DAY = 86400.0
NOW = 1_780_000_000.0


def put_request(ws: Workspace, request_id: str, ts: float) -> None:
    with ws.conn.write():
        ws.conn.execute(
            "INSERT INTO requests (id, ts, environment, alias, status, http_status, latency_ms, "
            "input_tokens, output_tokens, cost, cache, attempts, hops, stream, canary) VALUES "
            "(:id, :ts, 'production', 'current', 'ok', 200, 5, 1, 1, 0, 'miss', 1, 0, 0, 0)",
            {"id": request_id, "ts": ts},
        )
        ws.conn.execute(
            "INSERT INTO attempts (request_id, attempt, ts, environment, provider, model_id, "
            "deployment, status, latency_ms) VALUES (:id, 1, :ts, 'production', 'bedrock', "
            "'claude-3-5-haiku', 'bedrock/claude-3-5-haiku', 'ok', 5)",
            {"id": request_id, "ts": ts},
        )


def put_notification(ws: Workspace, key: str, created: float, status: str) -> None:
    with ws.conn.write():
        ws.conn.execute(
            "INSERT INTO notifications (idempotency_key, channel, channel_type, event, payload, "
            "status, next_attempt_at, created_at, attempts) VALUES (:key, 'ops-alerts', "
            "'slack', 'trigger', '{}', :status, :created, :created, 0)",
            {"key": key, "created": created, "status": status},
        )


def seed(ws: Workspace, now: float) -> None:
    """Old and recent rows of each kind, and audit entries as old as the oldest rows."""
    for n in range(3):
        put_request(ws, f"old-{n}", now - 40 * DAY)
    put_request(ws, "new-0", now - DAY)
    put_rollup(ws.conn, ts=now - 500 * DAY)
    put_rollup(ws.conn, ts=now - DAY)
    put_notification(ws, "old-sent", now - 100 * DAY, "sent")
    put_notification(ws, "old-pending", now - 100 * DAY, "pending")  # still owed
    put_notification(ws, "new-sent", now - DAY, "sent")


def count(ws: Workspace, table: str) -> int:
    return int(ws.conn.scalar(f"SELECT COUNT(*) FROM {table}"))


def test_prune_deletes_only_what_is_past_its_retention(workspace: Workspace) -> None:
    seed(workspace, NOW)
    audit_before = count(workspace, "audit_log")
    retention = StoreRetention()
    counted = {p.table: p.rows for p in prune(workspace.conn, retention, NOW, dry_run=True)}
    assert counted["requests"] == counted["attempts"] == 3
    assert counted["rollups"] == 1
    assert counted["notifications"] == 1  # the pending one is owed, never pruned
    assert count(workspace, "requests") == 4  # a dry run deletes nothing

    done = {p.table: p.rows for p in prune(workspace.conn, retention, NOW)}
    assert done == counted
    assert workspace.conn.execute("SELECT id FROM requests") == [{"id": "new-0"}]
    assert count(workspace, "attempts") == 1
    assert count(workspace, "rollups") == 1
    keys = {r["idempotency_key"] for r in workspace.conn.execute("SELECT * FROM notifications")}
    assert keys == {"old-pending", "new-sent"}
    assert count(workspace, "audit_log") == audit_before
    assert audit.verify(workspace.conn).ok


def test_a_null_retention_keeps_that_kind_for_good(workspace: Workspace) -> None:
    seed(workspace, NOW)
    pruned = prune(workspace.conn, StoreRetention(requests=None), NOW)
    assert "requests" not in {p.kind for p in pruned}
    assert count(workspace, "requests") == 4


def test_the_periodic_prune_runs_once_per_interval(workspace: Workspace) -> None:
    retention = StoreRetention(interval=3600)
    seed(workspace, NOW)
    assert prune_if_due(workspace.conn, retention, NOW) is not None
    assert count(workspace, "requests") == 1
    put_request(workspace, "old-later", NOW - 40 * DAY)
    assert prune_if_due(workspace.conn, retention, NOW + 60) is None  # not due yet
    assert count(workspace, "requests") == 2
    assert prune_if_due(workspace.conn, retention, NOW + 3601) is not None
    assert count(workspace, "requests") == 1


async def test_the_watch_leader_prunes_as_it_evaluates(workspace: Workspace) -> None:
    receiver = Receiver()
    await receiver.start()
    now = time.time()
    seed(workspace, now)
    svc = service(workspace, watch_config(workspace, receiver.base), Clock(now))
    try:
        report = await svc.run_once()
    finally:
        await svc.close()
        await receiver.stop()
    assert report.leader
    assert report.error is None
    assert count(workspace, "requests") == 1
    assert workspace.conn.scalar("SELECT value FROM qg_meta WHERE key = :k", {"k": LAST_RUN_KEY})


def test_store_prune_dry_run_counts_and_says_the_audit_log_is_kept(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    seed(ws, time.time())
    args = ["--config", str(ws.config_path), "--db", ws.db_url, "store", "prune"]
    shown = run_cli(*args, "--dry-run", cwd=ws.root)
    assert shown.returncode == 0, shown.stderr
    assert "would delete" in shown.stdout
    assert "never pruned" in shown.stdout
    assert count(ws, "requests") == 4
    done = run_cli(*args, "--json", cwd=ws.root)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {t["table"]: t["rows"] for t in result["tables"]}["requests"] == 3
    assert result["audit_log"]["pruned"] is False
    assert count(ws, "requests") == 1


def test_a_long_retention_written_back_reads_the_same() -> None:
    written = StoreRetention(rollups=400 * DAY).model_dump(mode="json")
    assert written["rollups"] == "34560000s"  # no exponent the duration parser would refuse
    assert StoreRetention.model_validate(written).rollups == 400 * DAY
