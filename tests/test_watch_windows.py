"""Window metrics from the per-minute roll-ups (synthetic rows, both store dialects)."""

from __future__ import annotations

import pytest
from tests.conftest import Workspace
from tests.telemetry_rows import put_rollup, put_traffic

from quality_gates.signals._metrics import MetricEngine, Quota, robust_z
from quality_gates.signals._windows import Window, read_window

MINUTE0 = 29_000_000  # an arbitrary whole minute (epoch minutes)
T0 = MINUTE0 * 60.0


def values(samples: list, **labels: str) -> float | None:  # type: ignore[type-arg]
    for sample in samples:
        if all(dict(sample.labels).get(k) == v for k, v in labels.items()):
            return sample.value  # type: ignore[no-any-return]
    raise AssertionError(f"no sample with {labels}: {samples}")


def test_window_sums_writers_and_weights_the_partial_head_minute(workspace: Workspace) -> None:
    conn = workspace.conn
    put_rollup(conn, ts=T0 - 60, count=100, errors=10, writer="a")  # head minute, half inside
    put_rollup(conn, ts=T0 - 60, count=100, errors=10, writer="b")
    put_rollup(conn, ts=T0 + 5, count=50, errors=25, writer="a")  # current minute so far
    data = read_window(conn, Window.last(60.0, now=T0 + 30), histograms=True)
    agg = next(iter(data.requests.values()))
    assert agg.count == pytest.approx(0.5 * 200 + 50)
    assert agg.errors == pytest.approx(0.5 * 20 + 25)
    assert agg.errors_by_class == {"server_error": pytest.approx(35)}


def test_an_error_burst_weighs_by_its_share_of_the_window(workspace: Workspace) -> None:
    # A healthy previous minute and 15 s of 20% errors in the current one: over a 60 s
    # window that is 15/60 of 20% = 5%, as raw rows would give with steady traffic.
    conn = workspace.conn
    put_rollup(conn, ts=T0 - 60, count=600, errors=0)
    put_rollup(conn, ts=T0 + 1, count=150, errors=30)
    engine = MetricEngine(conn, T0 + 15)
    rate = values(engine.samples("error_rate", 60.0, ["environment"]), environment="production")
    assert rate == pytest.approx(0.05, abs=1e-9)


def test_latency_percentiles_come_from_merged_histograms(workspace: Workspace) -> None:
    conn = workspace.conn
    fast = [100.0 + i for i in range(90)]
    slow = [3000.0 + 10 * i for i in range(10)]
    put_rollup(conn, ts=T0 - 120, count=90, latencies=fast, writer="a")
    put_rollup(conn, ts=T0 - 120, count=10, latencies=slow, writer="b")
    engine = MetricEngine(conn, T0)
    samples = engine.samples("p95_latency", 180.0, ["environment"])
    p95 = values(samples, environment="production")
    assert p95 == pytest.approx(3040.0, rel=0.02)
    p50 = values(engine.samples("p50_latency", 180.0, ["environment"]), environment="production")
    assert p50 == pytest.approx(149.5, rel=0.02)


def test_provider_availability_ignores_client_mistakes(workspace: Workspace) -> None:
    conn = workspace.conn
    put_rollup(
        conn,
        ts=T0 - 30,
        kind="attempt",
        provider="google",
        count=100,
        errors=30,
        errors_by_class={"timeout": 10, "bad_request": 20},
    )
    engine = MetricEngine(conn, T0)
    samples = engine.samples("provider_availability", 60.0, ["environment", "provider"])
    assert values(samples, provider="google") == pytest.approx(0.9)


def test_min_requests_withholds_a_verdict_on_too_little_traffic(workspace: Workspace) -> None:
    conn = workspace.conn
    put_rollup(conn, ts=T0 - 30, count=5, errors=5)
    engine = MetricEngine(conn, T0)
    samples = engine.samples("error_rate", 60.0, ["environment"], min_requests=20)
    assert values(samples, environment="production") is None


def test_group_by_provider_and_throughput(workspace: Workspace) -> None:
    conn = workspace.conn
    put_traffic(conn, ts=T0 - 60, error_rate=0.1, count=120)
    engine = MetricEngine(conn, T0)
    by_provider = engine.samples("error_rate", 60.0, ["environment", "provider"])
    assert {dict(s.labels)["provider"] for s in by_provider} == {"bedrock", "google", "meta"}
    throughput = engine.samples("throughput", 60.0, ["environment"])
    assert values(throughput, environment="production") == pytest.approx(360 / 60.0)


def test_cache_hit_rate_and_cost_increase(workspace: Workspace) -> None:
    conn = workspace.conn
    for minute in range(1, 31):  # baseline: $0.10 a minute
        put_rollup(conn, ts=T0 - 300 - 60 * minute, count=100, cost=0.10)
    for minute in range(5):  # now: $0.15 a minute, 60% cache hits
        put_rollup(
            conn, ts=T0 - 60 * (minute + 1), count=100, cost=0.15, cache_hits=60, cache_misses=40
        )
    engine = MetricEngine(conn, T0)
    cache = engine.samples("cache_hit_rate", 300.0, ["environment"])
    assert values(cache, environment="production") == pytest.approx(0.6)
    increase = engine.samples("cost_increase", 300.0, ["environment"], baseline=1800.0)
    assert values(increase, environment="production") == pytest.approx(0.5)


def test_unusual_traffic_is_a_robust_z_score_against_the_trailing_minutes(
    workspace: Workspace,
) -> None:
    conn = workspace.conn
    for minute in range(60):
        put_rollup(conn, ts=T0 - 300 - 60 * (minute + 1), count=100 + (minute % 5))
    for minute in range(5):
        put_rollup(conn, ts=T0 - 60 * (minute + 1), count=400)
    engine = MetricEngine(conn, T0)
    samples = engine.samples("unusual_traffic_pattern", 300.0, ["environment"], baseline=3600.0)
    assert values(samples, environment="production") > 3.5  # type: ignore[operator]
    assert robust_z(102.0, [100.0 + (i % 5) for i in range(60)]) == pytest.approx(0.0)
    assert robust_z(1.0, [1.0] * 5) is None  # too short a history


def test_quota_utilization_uses_the_busiest_of_rpm_tpm_rpd(workspace: Workspace) -> None:
    conn = workspace.conn
    put_rollup(conn, ts=T0 - 60, kind="attempt", provider="meta", count=300)
    put_rollup(conn, ts=T0 - 60, kind="request", provider="meta", count=300, input_tokens=90_000)
    engine = MetricEngine(conn, T0, quotas={"meta": Quota(rpm=1000, tpm=100_000)})
    samples = engine.samples("quota_utilization", 60.0, ["environment", "provider"])
    assert values(samples, provider="meta") == pytest.approx(0.9)


def test_quality_toxicity_and_satisfaction_from_samples_and_feedback(workspace: Workspace) -> None:
    conn = workspace.conn
    with conn.write():
        for i in range(40):
            conn.execute(
                "INSERT INTO requests (id, ts, environment, alias, model_id, provider, status, "
                "http_status, latency_ms, input_tokens, output_tokens, cost, cache, attempts, "
                "hops, stream, canary) VALUES (:id, :ts, 'production', 'current', "
                "'claude-3-5-haiku', 'bedrock', 'ok', 200, 100, 1, 1, 0, 'miss', 1, 0, 0, 0)",
                {"id": f"r{i}", "ts": T0 - 30},
            )
            conn.execute(
                "INSERT INTO feedback (request_id, ts, score) VALUES (:id, :ts, :score)",
                {"id": f"r{i}", "ts": T0 - 20, "score": 5 if i % 2 else 3},
            )
            for scorer, score, passed in (
                ("accuracy", 1.0 if i % 4 else 0.0, int(i % 4 != 0)),
                ("toxicity", 0.0, int(i != 0)),
            ):
                conn.execute(
                    "INSERT INTO quality_samples (request_id, ts, environment, model_id, provider, "
                    "scorer, score, passed) VALUES (:id, :ts, 'production', 'claude-3-5-haiku', "
                    "'bedrock', :scorer, :score, :passed)",
                    {
                        "id": f"r{i}",
                        "ts": T0 - 20,
                        "scorer": scorer,
                        "score": score,
                        "passed": passed,
                    },
                )
    engine = MetricEngine(conn, T0)
    env = ["environment"]
    assert values(engine.samples("quality_score", 60.0, env), environment="production") == 0.75
    assert values(engine.samples("toxicity_rate", 60.0, env), environment="production") == 0.025
    assert values(engine.samples("satisfaction", 60.0, env), environment="production") == 4.0


def test_resource_utilization_without_a_heartbeat_table_is_empty(workspace: Workspace) -> None:
    engine = MetricEngine(workspace.conn, T0)
    assert engine.samples("resource_utilization", 60.0, ["environment"]) == []


def test_live_tail_makes_short_windows_exact_to_the_cycle(workspace: Workspace) -> None:
    from quality_gates.signals._live import LiveTail

    conn = workspace.conn
    live = LiveTail()
    start = T0 + 10  # ten seconds into a minute
    put_rollup(conn, ts=start, count=1000, errors=0)  # 10 s of healthy traffic so far
    live.observe(conn, start)
    # the gateway rewrites its cumulative row: 40 s more, the last 10 s at 50% errors
    put_rollup(conn, ts=start + 30, count=4000, errors=0)
    live.observe(conn, start + 30)
    put_rollup(conn, ts=start + 40, count=5000, errors=500)
    live.observe(conn, start + 40)
    engine = MetricEngine(conn, start + 40, live=live)
    rate = values(engine.samples("error_rate", 10.0, ["environment"]), environment="production")
    assert rate == pytest.approx(0.5)
    # without the tail, a 10 s window can only spread the minute evenly
    plain = MetricEngine(conn, start + 40)
    diluted = values(plain.samples("error_rate", 10.0, ["environment"]), environment="production")
    assert diluted == pytest.approx(0.1)
    # older than the tail's first read: whole minutes serve it
    assert not live.covers(Window.last(60.0, now=start + 40))


def test_answers_other_than_2xx_count_refusals_as_well_as_errors() -> None:
    """Ten 503s of an emergency shutdown are refusals (status rejected), not gateway
    errors: a report must still count them among the answers clients got."""
    from quality_gates.signals._windows import Aggregate, not_2xx

    agg = Aggregate(count=100, errors=2, errors_by_class={"shutdown": 10, "server_error": 2})
    assert not_2xx(agg) == (12, {"server_error": 2, "shutdown": 10})


def test_invalid_output_rate_is_over_checked_outputs_with_a_minimum_sample(
    workspace: Workspace,
) -> None:
    conn = workspace.conn
    # 100 requests, of which 40 asked for tools or JSON and 10 of those came back unusable.
    put_rollup(conn, ts=T0 - 120, count=100, outputs_checked=40, outputs_invalid=10)
    put_rollup(conn, ts=T0 - 120, provider="google", count=100)  # plain traffic only
    engine = MetricEngine(conn, T0)
    samples = engine.samples("invalid_output_rate", 180.0, ["provider"], min_requests=20)
    assert values(samples, provider="bedrock") == pytest.approx(0.25)
    assert values(samples, provider="google") is None  # nothing checked: no verdict
    few = engine.samples("invalid_output_rate", 180.0, ["provider"], min_requests=50)
    assert values(few, provider="bedrock") is None  # 40 checked < 50: noise, not a verdict
