"""Provider alerts end when the problem ends: probes count as samples of provider health,
an active provider alert is judged on its latest samples, and the bounds the settings give.

Synthetic roll-ups on a controlled clock (both store dialects); the end-to-end version with
real simulators, gateway and watch is `test_alerts_resolve_e2e.py`.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Workspace
from tests.telemetry_rows import put_probes, put_rollup

from quality_gates.alerts._recovery import judged, recovery_window
from quality_gates.alerts._rules import FIRING, RESOLVED, AlertState, RuleSpec
from quality_gates.config import QualityGatesConfig, load_config
from quality_gates.signals._metrics import MetricEngine
from quality_gates.signals._windows import Window, read_window
from quality_gates.watch._evaluate import evaluate, rule_specs

MINUTE0 = 29_000_000
T0 = MINUTE0 * 60.0
RULE = "provider-availability-critical"
TELEMETRY_FLUSH = 0.5  # the gateway's default telemetry.flush_interval


def value_of(samples: list[Any], **labels: str) -> tuple[float | None, float]:
    for sample in samples:
        if all(dict(sample.labels).get(k) == v for k, v in labels.items()):
            return sample.value, sample.volume
    raise AssertionError(f"no sample with {labels}: {samples}")


def provider_config(ws: Workspace, **rule: Any) -> QualityGatesConfig:
    """The starter config with only its provider availability rule (changed by `rule`)."""
    config = load_config(ws.config_path).config
    data = config.model_dump(mode="json", by_alias=True)
    (base,) = [r for r in data["alerts"]["rules"] if r["name"] == RULE]
    data["alerts"]["rules"] = [{**base, **rule}]
    data["alerts"]["slos"] = []
    return QualityGatesConfig.model_validate(data)


def state_of(ws: Workspace, provider: str = "bedrock") -> str | None:
    rows = ws.conn.execute("SELECT state, labels FROM alert_states WHERE rule = :r", {"r": RULE})
    for row in rows:
        if provider in str(row["labels"]):
            return str(row["state"])
    return None


def test_probes_count_as_samples_of_provider_health_and_of_nothing_clients_see(
    workspace: Workspace,
) -> None:
    conn = workspace.conn
    put_rollup(conn, ts=T0 + 1, kind="request", count=30)
    put_rollup(conn, ts=T0 + 1, kind="attempt", count=30)
    put_probes(conn, ts=T0 + 1, count=10, failed=10)
    engine = MetricEngine(conn, T0 + 59)
    by_provider = ["environment", "provider"]
    availability = engine.samples("provider_availability", 60.0, by_provider)
    assert value_of(availability, provider="bedrock") == (pytest.approx(30 / 40), 40)
    server_errors = engine.samples("server_error_rate", 60.0, by_provider)
    assert value_of(server_errors, provider="bedrock") == (pytest.approx(10 / 40), 40)
    # A probe has no alias or model: a rule grouped by model judges the attempts alone.
    by_model = engine.samples("provider_availability", 60.0, ["environment", "model_id"])
    assert [s.volume for s in by_model] == [30]
    # Client figures never count probes.
    assert value_of(engine.samples("throughput", 60.0, ["environment"]))[1] == 30
    assert value_of(engine.samples("error_rate", 60.0, ["environment"])) == (0.0, 30)
    data = read_window(conn, Window.last(60.0, T0 + 59), histograms=False)
    assert sum(a.count for a in data.attempts.values()) == 30
    assert sum(a.count for a in data.probes.values()) == 10
    # The status page's uptime bars count client requests and attempts, never probes.
    from quality_gates.web.uptime import SERVICE, day_counts, today_index

    day = today_index(T0)
    counts = day_counts(conn, "production", day, day)
    assert counts[("bedrock", day)] == (30.0, 0.0)
    assert counts[(SERVICE, day)] == (30.0, 0.0)


def test_a_failed_over_provider_keeps_firing_on_failing_probes_then_resolves_when_they_pass(
    workspace: Workspace,
) -> None:
    # Production defaults: 1 min window, 20 samples, keep_firing_for 1 min, 5 s probes
    # (12 a minute: fewer than a new alert needs).
    ws, config = workspace, provider_config(workspace)
    put_rollup(ws.conn, ts=T0 + 1, kind="attempt", count=100, errors=100)
    evaluate(ws.conn, config, now=T0 + 50)
    assert state_of(ws) == FIRING
    # Traffic moved away; the probes go on failing: the alert says the outage goes on.
    put_probes(ws.conn, ts=T0 + 61, count=12, failed=12)
    put_probes(ws.conn, ts=T0 + 121, count=6, failed=6)
    evaluate(ws.conn, config, now=T0 + 150)
    assert state_of(ws) == FIRING
    # The provider recovers at T0 + 180: its probes pass.
    put_probes(ws.conn, ts=T0 + 121, count=12, failed=12)
    put_probes(ws.conn, ts=T0 + 181, count=6, failed=0)
    evaluate(ws.conn, config, now=T0 + 200)
    assert state_of(ws) == FIRING  # it last held at T0 + 150: keep_firing_for runs
    put_probes(ws.conn, ts=T0 + 181, count=7, failed=0)
    evaluate(ws.conn, config, now=T0 + 212)
    assert state_of(ws) == RESOLVED


def test_stale_failures_in_the_window_do_not_fire_again_once_the_latest_samples_pass(
    workspace: Workspace,
) -> None:
    ws = workspace
    config = provider_config(ws, keep_firing_for="0s")
    put_rollup(ws.conn, ts=T0 + 1, kind="attempt", count=100, errors=100)
    evaluate(ws.conn, config, now=T0 + 59)
    assert state_of(ws) == FIRING
    # Half a minute of healthy traffic: the 1 min window is still mostly failures.
    put_rollup(ws.conn, ts=T0 + 61, kind="attempt", count=100, errors=0)
    for now in (T0 + 90, T0 + 95, T0 + 100):
        evaluate(ws.conn, config, now=now)
        assert state_of(ws) == RESOLVED
    events = ws.conn.execute("SELECT to_state FROM alert_events WHERE rule = :r", {"r": RULE})
    assert [e["to_state"] for e in events] == ["firing", "resolved"]


def test_a_resolved_alert_does_not_fire_again_on_the_outage_it_reported(
    workspace: Workspace,
) -> None:
    # The multi-provider drill's flap: traffic left the provider, it recovered and its alert
    # resolved; one probe then timed out while the outage's failures were still in the
    # window, and a second incident opened for the same outage.
    ws = workspace
    config = provider_config(ws, keep_firing_for="0s")
    put_rollup(ws.conn, ts=T0 + 1, kind="attempt", count=100, errors=100)
    evaluate(ws.conn, config, now=T0 + 59)
    assert state_of(ws) == FIRING
    put_probes(ws.conn, ts=T0 + 61, count=6, failed=0)  # traffic gone, the probes pass
    evaluate(ws.conn, config, now=T0 + 90)
    assert state_of(ws) == RESOLVED
    put_probes(ws.conn, ts=T0 + 61, count=8, failed=1)  # one probe times out
    for now in (T0 + 100, T0 + 105):
        evaluate(ws.conn, config, now=now)
        assert state_of(ws) == RESOLVED
    # Without the resolution's bound the same samples fire it: the window still holds the
    # outage and its latest samples break the threshold.
    engine = MetricEngine(ws.conn, T0 + 105)
    spec = next(s for s in rule_specs(config) if s.name == RULE)
    (value, _n), (recent, _r) = (
        value_of(engine.samples(spec.metric, seconds, spec.group_by), provider="bedrock")
        for seconds in (spec.window, spec.recovery_window or 0.0)
    )
    assert spec.holds(value)
    assert spec.holds(recent)
    # A new outage with traffic fires again once it has min_requests samples of its own.
    put_rollup(ws.conn, ts=T0 + 121, kind="attempt", count=50, errors=50)
    evaluate(ws.conn, config, now=T0 + 140)
    assert state_of(ws) == FIRING
    events = ws.conn.execute("SELECT to_state FROM alert_events WHERE rule = :r", {"r": RULE})
    assert [e["to_state"] for e in events] == ["firing", "resolved", "firing"]


def test_a_pending_alert_that_came_back_from_resolved_keeps_its_bound(
    workspace: Workspace,
) -> None:
    ws = workspace
    config = provider_config(ws, keep_firing_for="0s", **{"for": "30s"})
    put_rollup(ws.conn, ts=T0 + 1, kind="attempt", count=100, errors=100)
    evaluate(ws.conn, config, now=T0 + 20)
    evaluate(ws.conn, config, now=T0 + 55)
    assert state_of(ws) == FIRING
    put_rollup(ws.conn, ts=T0 + 61, kind="attempt", count=60, errors=0)
    evaluate(ws.conn, config, now=T0 + 90)
    assert state_of(ws) == RESOLVED
    # A short burst of fresh failures: pending, then it passes again before `for`.
    put_rollup(ws.conn, ts=T0 + 61, kind="attempt", count=100, errors=40)
    evaluate(ws.conn, config, now=T0 + 100)
    assert state_of(ws) == "pending"
    put_rollup(ws.conn, ts=T0 + 121, kind="attempt", count=600, errors=0)
    evaluate(ws.conn, config, now=T0 + 140)
    # Back to the resolved record, so the outage before it still cannot count.
    assert state_of(ws) == RESOLVED
    (row,) = ws.conn.execute("SELECT resolved_at FROM alert_states WHERE rule = :r", {"r": RULE})
    assert row["resolved_at"] == pytest.approx(T0 + 90)


def test_an_idle_provider_is_not_paged_on_a_failed_probe(workspace: Workspace) -> None:
    ws, config = workspace, provider_config(workspace)
    put_probes(ws.conn, ts=T0 + 1, provider="meta", count=12, failed=1)
    evaluate(ws.conn, config, now=T0 + 59)
    put_probes(ws.conn, ts=T0 + 61, provider="meta", count=12, failed=1)
    for now in (T0 + 90, T0 + 119):
        evaluate(ws.conn, config, now=now)
    assert state_of(ws, "meta") is None


def test_one_failed_probe_opens_nothing_where_probes_alone_fill_the_window(
    workspace: Workspace,
) -> None:
    # The drills' timescale: a 10 s window and min_requests 10, met by ten 1 s probes of an
    # idle provider. One timed-out probe read "availability 90%" and opened an incident; a
    # new alert now needs two failed samples among its latest.
    ws = workspace
    config = provider_config(ws, window="10s", min_requests=10)
    put_probes(ws.conn, ts=T0 + 1, provider="google", count=10, failed=1)
    evaluate(ws.conn, config, now=T0 + 10)
    assert state_of(ws, "google") is None
    put_probes(ws.conn, ts=T0 + 1, provider="google", count=20, failed=6)
    evaluate(ws.conn, config, now=T0 + 20)
    assert state_of(ws, "google") == FIRING


def test_an_active_alert_is_judged_on_its_latest_samples() -> None:
    spec = RuleSpec(
        name=RULE,
        metric="provider_availability",
        op="<",
        threshold=0.95,
        window=60.0,
        for_=0.0,
        keep_firing_for=60.0,
        severity="critical",
        type="provider",
        group_by=("environment", "provider"),
        min_requests=20.0,
        recovery_window=20.0,
    )
    firing = AlertState(
        "f", RULE, {}, "production", spec.metric, "critical", "provider", FIRING,
        0.0, 0.95, 0.0, 0.0, "",
    )  # fmt: skip
    resolved = replace(firing, state=RESOLVED)
    assert judged(spec, 0.5, 1.0, None) == 1.0  # the latest samples pass: no new alert
    assert judged(spec, 0.5, 0.0, None) == 0.0  # both break it: how it does now
    assert judged(spec, 0.97, 0.0, None) == 0.97  # two failed samples open no alert
    assert judged(spec, None, 0.0, None) is None  # too few samples for a new alert
    assert judged(spec, None, 0.0, firing) == 0.0  # ... but enough to keep one firing
    assert judged(spec, 0.2, 1.0, firing) == 1.0
    # Nothing in the recovery window (traffic gone, no probe): no data, never firing, and
    # the old outage still in the window does not page again.
    assert judged(spec, 0.2, None, firing) is None
    assert judged(spec, 0.5, None, resolved) is None
    assert judged(spec, 0.5, 0.0, resolved) == 0.0  # new failures: it fires again


def test_production_defaults_resolve_within_90_s_and_the_drills_within_10_s(
    tmp_path: Path,
) -> None:
    from quality_gates.config import parse_config_text, render_starter
    from quality_gates.drills._config import TELEMETRY_FLUSH as DRILL_FLUSH
    from quality_gates.drills._config import drill_config

    def bound(config: QualityGatesConfig, flush: float) -> dict[str, float]:
        out = {}
        for spec in rule_specs(config):
            if spec.recovery_window is None:
                continue
            out[spec.name] = (
                spec.recovery_window
                + config.alerts.evaluation_interval
                + spec.keep_firing_for
                + flush
            )
        return out

    production = QualityGatesConfig()
    assert production.gateway.breaker.probe_interval == 5.0
    assert recovery_window(60.0, 5.0) == 20.0
    defaults = bound(production, TELEMETRY_FLUSH)
    assert set(defaults) == {
        "provider-availability-critical",
        "provider-server-errors-critical",
        "provider-rate-limited-critical",
        "provider-p95-latency-critical",
        "p95-latency-critical",
        "p95-latency-warning",
    }
    assert defaults == dict.fromkeys(defaults, 20.0 + 5.0 + 60.0 + 0.5)
    assert max(defaults.values()) <= 90.0
    starter = parse_config_text(render_starter("t"), "quality-gates.yaml").config
    drilled = drill_config(starter, "production", ports={}, answer_key=tmp_path / "key.jsonl")
    drills = bound(drilled.config, DRILL_FLUSH)
    assert drills
    assert max(drills.values()) <= 10.0, drills


def test_a_latency_alert_ends_when_the_latest_answers_are_fast_again(
    workspace: Workspace,
) -> None:
    ws = workspace
    data = provider_config(ws).model_dump(mode="json", by_alias=True)
    data["alerts"]["rules"] = [
        {
            "name": "p95-latency-critical",
            "expr": "p95_latency > 3000ms",
            "severity": "critical",
            "keep_firing_for": "0s",
        }
    ]
    config = QualityGatesConfig.model_validate(data)
    put_rollup(ws.conn, ts=T0 + 1, count=100, latencies=[6000.0] * 100)
    evaluate(ws.conn, config, now=T0 + 59)
    states = ws.conn.execute("SELECT state FROM alert_states")
    assert [r["state"] for r in states] == [FIRING]
    # Fast answers for the last 30 s: the 1 min window's P95 is still the spike's.
    put_rollup(ws.conn, ts=T0 + 61, count=100, latencies=[300.0] * 100)
    evaluate(ws.conn, config, now=T0 + 90)
    states = ws.conn.execute("SELECT state, value FROM alert_states")
    assert [r["state"] for r in states] == [RESOLVED]
    assert states[0]["value"] < 3000.0


def test_the_gateway_rolls_probes_up_apart_with_no_row_of_their_own() -> None:
    import asyncio

    from quality_gates.config import TelemetrySettings
    from quality_gates.gateway._telemetry import TelemetryWriter

    payloads: list[bytes] = []

    async def sink(payload: bytes) -> None:
        payloads.append(payload)

    writer = TelemetryWriter(TelemetrySettings(), "production", "w1", sink)
    writer.record_probe("bedrock", False, "server_error", 12.0, T0 + 1)
    writer.record_probe("bedrock", True, None, 10.0, T0 + 2)
    assert asyncio.run(writer.flush())
    (payload,) = payloads
    requests, attempts, rollups = pickle.loads(payload)
    assert requests == []
    assert attempts == []
    (row,) = rollups
    assert (row["kind"], row["provider"], row["alias"], row["model_id"]) == (
        "probe",
        "bedrock",
        "",
        "",
    )
    assert (row["count"], row["errors"], row["errors_by_class"]) == (
        2,
        1,
        '{"server_error":1}',
    )
