"""Component statuses from live health, and daily uptime from the roll-ups."""

from __future__ import annotations

import json
import time

import pytest
from tests.conftest import Workspace
from tests.telemetry_rows import put_rollup, put_traffic

from quality_gates.config import StatusPageSettings, Thresholds, load_config
from quality_gates.signals._windows import Aggregate, Histogram
from quality_gates.telemetry import LatencyHistogram
from quality_gates.web.components import (
    DEGRADED,
    MAJOR,
    NO_DATA,
    OPERATIONAL,
    PARTIAL,
    Verdict,
    components,
    judge_provider,
    judge_service,
)
from quality_gates.web.uptime import daily_uptime

PAGE = StatusPageSettings(min_requests=10)
LIMITS = Thresholds()


def calls(count: int, errors: int = 0, latency_ms: float = 100.0, **classes: int) -> Aggregate:
    agg = Aggregate(count=float(count), errors=float(errors))
    agg.errors_by_class = {k: float(v) for k, v in classes.items()} or (
        {"server_error": float(errors)} if errors else {}
    )
    hist = Histogram()
    hist.add(LatencyHistogram.of([latency_ms] * count))
    agg.latency = hist
    return agg


def breaker(deployment: str, state: str) -> dict[str, object]:
    return {"deployment": deployment, "state": state}


def test_a_provider_whose_every_breaker_is_open_is_in_a_major_outage() -> None:
    found = [
        breaker("bedrock/a", "open"),
        breaker("bedrock/b", "open"),
        breaker("meta/c", "closed"),
    ]
    verdict = judge_provider("bedrock", found, None, PAGE, LIMITS)
    assert verdict.status == MAJOR
    assert "every breaker open" in verdict.reasons[0]


def test_one_open_breaker_of_two_is_a_partial_outage_and_half_open_is_degraded() -> None:
    assert (
        judge_provider(
            "bedrock",
            [breaker("bedrock/a", "open"), breaker("bedrock/b", "closed")],
            None,
            PAGE,
            LIMITS,
        ).status
        == PARTIAL
    )
    assert (
        judge_provider("bedrock", [breaker("bedrock/a", "half_open")], None, PAGE, LIMITS).status
        == DEGRADED
    )


@pytest.mark.parametrize(
    ("errors", "expected"),
    [(0, OPERATIONAL), (1, OPERATIONAL), (3, DEGRADED), (10, PARTIAL), (60, MAJOR)],
)
def test_availability_over_the_window_sets_the_provider_status(errors: int, expected: str) -> None:
    verdict = judge_provider(
        "meta", [breaker("meta/x", "closed")], calls(100, errors), PAGE, LIMITS
    )
    assert verdict.status == expected


def test_client_mistakes_do_not_count_against_a_provider() -> None:
    agg = calls(100, 60, bad_request=60)
    assert judge_provider("meta", [], agg, PAGE, LIMITS).status == OPERATIONAL


def test_slow_answers_are_degraded_performance() -> None:
    verdict = judge_provider("meta", [], calls(50, latency_ms=2500), PAGE, LIMITS)
    assert verdict.status == DEGRADED
    assert "P95" in verdict.reasons[0]


def test_too_few_calls_give_no_verdict_on_rates() -> None:
    assert judge_provider(
        "meta", [breaker("meta/x", "closed")], calls(5, 5), PAGE, LIMITS
    ).status == (OPERATIONAL)


def test_a_provider_nobody_reports_and_nobody_called_has_no_data() -> None:
    assert judge_provider("google", [breaker("meta/x", "closed")], None, PAGE, LIMITS).status == (
        NO_DATA
    )


def test_one_provider_down_is_a_partial_outage_of_the_service_even_when_failover_answers() -> None:
    providers = {"bedrock": Verdict(MAJOR), "google": Verdict(), "meta": Verdict()}
    verdict = judge_service(calls(200), providers, None, 1, PAGE, LIMITS)
    assert verdict.status == PARTIAL
    assert "provider bedrock" in verdict.reasons[0]


def test_every_provider_down_is_a_major_outage_of_the_service() -> None:
    providers = {"bedrock": Verdict(MAJOR), "google": Verdict(MAJOR), "meta": Verdict(NO_DATA)}
    assert judge_service(None, providers, None, 1, PAGE, LIMITS).status == MAJOR


def test_emergency_modes_set_the_service_status() -> None:
    healthy = {"meta": Verdict()}
    shutdown = judge_service(calls(50), healthy, {"mode": "shutdown"}, 1, PAGE, LIMITS)
    degraded = judge_service(calls(50), healthy, {"mode": "degraded"}, 1, PAGE, LIMITS)
    assert (shutdown.status, degraded.status) == (MAJOR, DEGRADED)


def test_the_service_without_gateway_or_requests_has_no_data() -> None:
    assert judge_service(None, {"meta": Verdict(NO_DATA)}, None, 0, PAGE, LIMITS).status == NO_DATA


def test_components_read_breakers_from_heartbeats_and_calls_from_rollups(
    workspace: Workspace,
) -> None:
    conn = workspace.conn
    config = load_config(workspace.config_path).config
    now = time.time()
    put_traffic(conn, ts=now - 5, providers=("google", "meta"), count=50)
    put_rollup(conn, ts=now - 5, provider="bedrock", kind="attempt", count=40, errors=40)
    with conn.write():
        conn.execute(
            "INSERT INTO gateway_instances (id, environment, host, pid, listen, started_at, "
            "heartbeat_at, cpu_percent, rss_bytes, inflight, inflight_limit, queue_depth, "
            "queue_limit, dropped_telemetry, buffered_telemetry, control_version, breakers) "
            "VALUES ('h:1', 'production', 'h', 1, '', :now, :now, 1, 1, 0, 10, 0, 0, 0, 0, 1, "
            ":breakers)",
            {
                "now": now,
                "breakers": json.dumps(
                    [
                        {"deployment": "bedrock/claude-3-5-haiku", "state": "open"},
                        {"deployment": "google/gemini-1-5-flash", "state": "closed"},
                    ]
                ),
            },
        )
    found = {c.id: c for c in components(conn, config, "production", now=now)}
    assert list(found) == ["service", "bedrock", "google", "meta"]
    assert found["bedrock"].status == MAJOR
    assert found["google"].status == OPERATIONAL
    assert found["meta"].status == OPERATIONAL
    assert found["service"].status == PARTIAL


def test_uptime_days_without_calls_have_no_availability(workspace: Workspace) -> None:
    conn = workspace.conn
    now = time.time()
    day = 86400.0
    put_traffic(conn, ts=now - 3 * day, providers=("meta",), count=100, error_rate=0.1)
    put_rollup(
        conn,
        ts=now - 1 * day,
        provider="meta",
        kind="attempt",
        count=100,
        errors=30,
        errors_by_class={"server_error": 10, "bad_request": 20},
    )
    uptime = daily_uptime(conn, "production", ["meta", "google"], days=5, now=now)
    meta = [d.availability for d in uptime["meta"].days]
    assert len(meta) == 5
    assert meta[0] is None
    assert meta[2] is None
    assert meta[4] is None
    assert meta[1] == pytest.approx(0.9)
    assert meta[3] == pytest.approx(0.9)  # the 20 bad requests were the clients' mistakes
    assert all(d.availability is None for d in uptime["google"].days)
    assert uptime["google"].availability is None
    assert uptime["service"].days[1].availability == pytest.approx(0.9)
    assert uptime["service"].days[3].availability is None  # attempts only that day
    assert uptime["meta"].days_with_data == 2


def test_uptime_history_reads_finished_days_once_and_today_every_time(
    workspace: Workspace,
) -> None:
    from quality_gates.web.uptime import UptimeHistory

    conn = workspace.conn
    noon = time.time() // 86400 * 86400 + 43200  # today at noon UTC: no midnight in between
    history = UptimeHistory(ttl=600)
    put_rollup(conn, ts=noon - 86400, provider="meta", kind="attempt", count=10)
    first = history.uptime(conn, "production", ["meta"], days=3, now=noon)
    assert [d.calls for d in first["meta"].days] == [0, 10, 0]
    put_rollup(conn, ts=noon - 86400, provider="meta", kind="attempt", count=50, writer="w2")
    put_rollup(conn, ts=noon, provider="meta", kind="attempt", count=7)
    second = history.uptime(conn, "production", ["meta"], days=3, now=noon + 1)
    assert [d.calls for d in second["meta"].days] == [0, 10, 7]
    later = history.uptime(conn, "production", ["meta"], days=3, now=noon + 601)
    assert [d.calls for d in later["meta"].days] == [0, 60, 7]
