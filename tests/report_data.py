"""A store with a history to report on, written through the functions the system itself uses:
the gateway's telemetry writer and sink (requests, attempts, per-minute roll-ups), the
sampler's quality rows, incidents opened, acknowledged and resolved, a registry rollback,
remediation rows, gate runs, drill runs and routine job runs.

`History` keeps the figures the test expects to find in the reports.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from quality_gates import incidents
from quality_gates.alerts._rules import AlertState, Transition
from quality_gates.alerts._store import add_event
from quality_gates.config import QualityGatesConfig, TelemetrySettings
from quality_gates.gateway._sink import write_batch
from quality_gates.gateway._telemetry import AttemptRecord, RequestRecord, TelemetryWriter
from quality_gates.registry import Actor, rollback
from quality_gates.remediation import _remedy_store
from quality_gates.routines import jobs
from quality_gates.signals.probes import write_samples
from quality_gates.store import Connection, gate_runs

MODELS = {"bedrock": "claude-3-5-haiku", "google": "gemini-1-5-flash", "meta": "llama-3-1-70b"}
MINUTES = 90
PER_MINUTE = 30
SPIKE = range(40, 46)  # minutes (from the start) where latency climbs
OUTAGE = range(60, 64)  # minutes where google fails and requests fail over to meta
INCIDENT_ACK_S = 240.0
INCIDENT_RESOLVE_S = 1200.0


@dataclass
class History:
    """What was written, for the assertions."""

    start: float
    now: float
    request_ids: list[str] = field(default_factory=list)
    incident_id: int = 0
    open_incident_id: int = 0
    drill_id: int = 0


def _records(start: float, rng: random.Random) -> list[RequestRecord]:
    records = []
    for minute in range(MINUTES):
        for i in range(PER_MINUTE):
            ts = start + minute * 60 + i * (60 / PER_MINUTE) + 0.5
            provider = rng.choices(list(MODELS), weights=(5, 3, 2))[0]
            latency = rng.lognormvariate(5.6, 0.35)  # ~270 ms median
            if minute in SPIKE:
                latency *= 8
            rec = RequestRecord(
                id=uuid.uuid4().hex,
                ts=ts,
                environment="production",
                alias="current",
                model_id=MODELS[provider],
                provider=provider,
                deployment=f"{provider}-primary",
                key_name="svc",
                input_tokens=40 + i,
                output_tokens=90 + i,
                cost=0.0001 * (1 + i % 3),
            )
            if rng.random() < 0.6:
                rec.cache, rec.latency_ms = "hit", 2.0
                rec.cost = 0.0
                records.append(rec)
                continue
            rec.latency_ms = latency
            if provider == "google" and minute in OUTAGE:
                rec.attempts.append(
                    AttemptRecord(
                        1,
                        ts,
                        "google",
                        MODELS["google"],
                        "google-primary",
                        "error",
                        "server_error",
                        503,
                        40.0,
                        None,
                    )
                )
                rec.attempts.append(
                    AttemptRecord(
                        2,
                        ts + 0.05,
                        "meta",
                        MODELS["meta"],
                        "meta-primary",
                        "ok",
                        None,
                        200,
                        latency,
                        latency / 3,
                    )
                )
                rec.provider, rec.model_id, rec.hops = "meta", MODELS["meta"], 1
            elif rng.random() < 0.01:
                rec.status, rec.http_status, rec.error_class = "error", 502, "server_error"
                rec.output_tokens, rec.cost = 0, 0.0
                rec.attempts.append(
                    AttemptRecord(
                        1,
                        ts,
                        provider,
                        MODELS[provider],
                        f"{provider}-primary",
                        "error",
                        "server_error",
                        502,
                        latency,
                        None,
                    )
                )
            else:
                rec.attempts.append(
                    AttemptRecord(
                        1,
                        ts,
                        provider,
                        MODELS[provider],
                        f"{provider}-primary",
                        "ok",
                        None,
                        200,
                        latency,
                        latency / 3,
                    )
                )
            rec.ttft_ms = latency / 3
            records.append(rec)
    return records


def write_traffic(conn: Connection, start: float) -> list[str]:
    """Ninety minutes of traffic through the gateway's telemetry writer and sink."""

    async def sink(payload: bytes) -> None:
        requests, attempts, rollups = pickle.loads(payload)
        write_batch(conn, requests, attempts, rollups)

    async def run() -> list[str]:
        writer = TelemetryWriter(TelemetrySettings(), "production", "test-writer", sink)
        records = _records(start, random.Random(11))
        for rec in records:
            writer.record(rec)
        assert await writer.flush()
        return [r.id for r in records]

    return asyncio.run(run())


def write_quality(conn: Connection, request_ids: list[str], now: float) -> None:
    """Golden-probe scores, toxicity checks and user feedback."""
    rows = []
    for n in range(200):
        rows.append(
            {
                "request_id": f"probe-{n}",
                "ts": now - 3000 + n * 10,
                "environment": "production",
                "model_id": MODELS["bedrock"],
                "provider": "bedrock",
                "scorer": "golden",
                "score": 0.97 if n % 10 else 0.9,
                "passed": 1,
            }
        )
    for n, request_id in enumerate(request_ids[:1000]):
        rows.append(
            {
                "request_id": request_id,
                "ts": now - 3000 + n,
                "environment": "production",
                "model_id": MODELS["bedrock"],
                "provider": "bedrock",
                "scorer": "toxicity",
                "score": 1.0,
                "passed": 0 if n == 500 else 1,
            }
        )
    write_samples(conn, rows)
    with conn.write():
        for n, request_id in enumerate(request_ids[:60]):
            conn.execute(
                "INSERT INTO feedback (request_id, ts, score, comment, key_name) VALUES "
                "(:r, :ts, :score, NULL, 'svc')",
                {"r": request_id, "ts": now - 2000 + n, "score": 5 if n % 3 else 3},
            )


def write_incidents(
    conn: Connection, config: QualityGatesConfig, start: float, now: float
) -> tuple[int, int]:
    """A P1 opened two minutes into google's outage, acknowledged after 4 min and resolved
    after 20 min, with its alert, a failover, a rollback; and a P2 still open."""
    opened = start + (OUTAGE.start + 2) * 60
    row = incidents.open_incident(
        conn,
        config,
        title="google availability below 95%",
        incident_type="provider",
        severity="P1",
        environment="production",
        group_key="provider:google",
        actor="watch",
        now=opened,
        detected_at=opened - 20,
    )
    incident_id = int(row["id"])
    alert = AlertState(
        fingerprint="fp-google",
        rule="provider-availability-critical",
        labels={"environment": "production", "provider": "google"},
        environment="production",
        metric="provider_availability",
        severity="critical",
        type="provider",
        state="firing",
        value=0.62,
        threshold=0.95,
        active_since=opened - 20,
        updated_at=opened,
        summary="google availability 62%",
        fired_at=opened,
        incident_id=incident_id,
    )
    with conn.write():
        add_event(conn, Transition(alert, "pending", "firing"), opened)
        add_event(conn, Transition(alert, "firing", "resolved"), opened + 600)
        _remedy_store.insert(
            conn,
            environment="production",
            action="failover",
            target="google",
            state="restored",
            summary="failed over production from google to meta 6.0 s after the alert",
            now=opened + 6,
            incident_id=incident_id,
            rule=alert.rule,
            alert_at=opened,
            details={"from": "google", "to": "meta", "seconds_after_alert": 6.0},
        )
        conn.execute(
            "UPDATE remediations SET finished_at = :t WHERE action = 'failover'",
            {"t": opened + 900},
        )
        _remedy_store.insert(
            conn,
            environment="production",
            action="rollback",
            target="claude-3-5-haiku",
            state="done",
            summary="rolled back production from claude-3-5-haiku to claude-3-haiku",
            now=opened + 12,
            incident_id=incident_id,
            rule="error-rate-critical",
            alert_at=opened + 8,
            finished=True,
            details={
                "from": "claude-3-5-haiku",
                "to": "claude-3-haiku",
                "seconds_after_alert": 4.0,
            },
        )
    incidents.acknowledge(conn, config, incident_id, actor="alice", now=opened + INCIDENT_ACK_S)
    incidents.resolve(
        conn,
        config,
        incident_id,
        actor="alice",
        reason="google recovered",
        root_cause="upstream 503s at google",
        now=opened + INCIDENT_RESOLVE_S,
    )
    other = incidents.open_incident(
        conn,
        config,
        title="P95 latency above 1.5 s",
        incident_type="performance",
        severity="P2",
        environment="production",
        group_key="perf",
        actor="watch",
        now=now - 600,
    )
    rollback(
        conn,
        environment="production",
        model_ref="current",
        previous_ref="previous-stable",
        reason="quality drop after the release",
        actor=Actor("alice", "manual"),
        incident_id=incident_id,
    )
    return incident_id, int(other["id"])


def write_runs(conn: Connection, now: float) -> int:
    """Two gate runs, a drill with figures and verdicts, and routine job runs."""
    with conn.write():
        for n, verdict in enumerate(("APPROVE", "REJECT")):
            gate_runs.insert_run(
                conn,
                gate_runs.GateRunRow(
                    id=uuid.uuid4().hex,
                    kind="offline",
                    environment="production",
                    model_id="claude-3-5-haiku",
                    baseline="claude-3-haiku",
                    parent_id=None,
                    status="finished",
                    verdict=verdict,
                    started_at=now - 4000 + n * 600,
                    finished_at=now - 3900 + n * 600,
                    actor="ci",
                    config_hash="0" * 64,
                    inputs={},
                    versions={},
                    summary={"accuracy": 0.97},
                    results_path=None,
                ),
            )
        figures = {
            "detection_seconds": 12.5,
            "failover_seconds": 3.1,
            "restoration_seconds": 95.0,
            "total_recovery_seconds": 140.0,
            "request_loss": 0.004,
        }
        verdicts = {
            name: {"value": v, "target": t, "met": v < t}
            for (name, v), t in zip(figures.items(), (30.0, 60.0, 120.0, 300.0, 0.01), strict=True)
        }
        row = conn.one(
            "INSERT INTO drill_runs (scenario, environment, provider, started_at, finished_at, "
            "status, incident_id, figures, verdicts, details, actor) VALUES ('provider-outage', "
            "'production', 'google', :a, :b, 'passed', NULL, :f, :v, '{}', 'ops') RETURNING id",
            {"a": now - 5000, "b": now - 4800, "f": json.dumps(figures), "v": json.dumps(verdicts)},
        )
    for n, status in enumerate(("passed", "failed", "passed")):
        run = jobs.start_run(conn, "daily-health-check", holder="w1", now=now - 4000 + n * 100)
        jobs.finish_run(conn, run, status, now=now - 3990 + n * 100)
    return int(row["id"]) if row else 0


def fill(conn: Connection, config: QualityGatesConfig, now: float) -> History:
    """Everything above, ending at `now`."""
    start = (now // 60) * 60 - MINUTES * 60
    history = History(start=start, now=now)
    history.request_ids = write_traffic(conn, start)
    write_quality(conn, history.request_ids, now)
    history.incident_id, history.open_incident_id = write_incidents(conn, config, start, now)
    history.drill_id = write_runs(conn, now)
    # The registry's rollback stamps the wall clock: the history ends after it.
    history.now = max(now, time.time())
    return history


def expected(conn: Connection, start: float, end: float) -> dict[str, Any]:
    """Figures straight from the request rows, to check the roll-up based report against."""
    rows = conn.execute(
        "SELECT status, latency_ms, cache FROM requests WHERE ts >= :a AND ts <= :b",
        {"a": start, "b": end},
    )
    latencies = sorted(float(r["latency_ms"]) for r in rows)
    return {
        "requests": len(rows),
        "errors": sum(1 for r in rows if r["status"] == "error"),
        "p95": latencies[int(0.95 * (len(latencies) - 1))] if latencies else None,
        "cache_hits": sum(1 for r in rows if r["cache"] == "hit"),
    }
