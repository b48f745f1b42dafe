"""Canary analysis on synthetic request rows, and the canary gate against the store."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
from tests.conftest import Workspace

from quality_gates.config import CanaryMetric, load_config
from quality_gates.gates import canary as canary_gate
from quality_gates.gates.canary_analysis import analyze as analyze_sides
from quality_gates.gates.canary_analysis import compare_rates
from quality_gates.gates.canary_samples import split
from quality_gates.gates.verdict import GateVerdict
from quality_gates.store import audit, settings
from quality_gates.store.registry import get_alias

CANDIDATE, BASELINE = "gemini-1-5-flash", "claude-3-5-haiku"
METRICS = {
    "latency_ms": CanaryMetric(min_effect=0.15),
    "error_rate": CanaryMetric(min_effect=0.01),
    "output_tokens": CanaryMetric(min_effect=0.25, critical=False),
}


def rows(
    n: int,
    *,
    canary: bool,
    model: str,
    latency: float,
    error_rate: float = 0.0,
    seed: int = 0,
    fallback: str | None = None,
) -> list[dict[str, Any]]:
    """Requests as the store holds them, each with its attempts: a failed first attempt is
    failed over to `fallback` (which answers) when given, else the client sees the error."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        failed = rng.random() < error_rate
        took = rng.lognormvariate(0, 0.3) * latency
        first = {"model_id": model, "status": "error" if failed else "ok",
                 "error_class": "server_error" if failed else None, "latency_ms": took,
                 "ttft_ms": 50.0}  # fmt: skip
        attempts = [first]
        answered_by: str | None = model
        if failed and fallback:
            attempts.append({**first, "model_id": fallback, "status": "ok", "error_class": None})
            answered_by = fallback
        elif failed:
            answered_by = None
        out.append(
            {
                "canary": int(canary),
                "model_id": answered_by,
                "status": "ok" if answered_by else "error",
                "error_class": None if answered_by else "server_error",
                "cache": "miss",
                "latency_ms": took * len(attempts),
                "ttft_ms": 50.0,
                "output_tokens": rng.randint(20, 40),
                "input_tokens": 30,
                "cost": 0.001,
                "answer": None,
                "attempts": attempts,
            }
        )
    return out


def analyze(data: list[dict[str, Any]], **kwargs: Any) -> Any:
    canary, baseline = split(data, candidate=CANDIDATE, baseline=BASELINE)
    return analyze_sides(canary, baseline, **kwargs)


def test_forty_percent_slower_canary_fails_latency() -> None:
    data = rows(300, canary=True, model=CANDIDATE, latency=140, seed=1) + rows(
        300, canary=False, model=BASELINE, latency=100, seed=2
    )
    look = analyze(data, metrics=METRICS, alpha=0.05)
    latency = next(m for m in look.metrics if m.metric == "latency_ms")
    assert latency.outcome == "fail"
    assert latency.effect == pytest.approx(0.4, abs=0.1)
    assert look.verdict(final=False) is GateVerdict.REJECT


def test_equal_canary_passes_every_metric() -> None:
    data = rows(300, canary=True, model=CANDIDATE, latency=100, seed=3) + rows(
        300, canary=False, model=BASELINE, latency=100, seed=4
    )
    look = analyze(data, metrics=METRICS, alpha=0.05)
    assert [m.outcome for m in look.metrics] == ["pass", "pass", "pass"]
    assert look.verdict(final=True) is GateVerdict.APPROVE


def test_small_but_significant_change_below_min_effect_passes() -> None:
    data = rows(3000, canary=True, model=CANDIDATE, latency=105, seed=5) + rows(
        3000, canary=False, model=BASELINE, latency=100, seed=6
    )
    look = analyze(data, metrics=METRICS, alpha=0.05)
    latency = next(m for m in look.metrics if m.metric == "latency_ms")
    assert latency.p_value is not None
    assert latency.p_value < 0.05
    assert latency.outcome == "pass"


def test_error_rate_uses_a_two_proportion_test() -> None:
    spec = CanaryMetric(min_effect=0.01)
    bad = compare_rates(30, 500, 5, 500, spec, 0.05, "error_rate")
    assert bad.outcome == "fail"
    assert bad.effect == pytest.approx(0.05)
    fine = compare_rates(6, 500, 5, 500, spec, 0.05, "error_rate")
    assert fine.outcome == "pass"


def test_too_few_requests_is_not_a_decision() -> None:
    data = rows(10, canary=True, model=CANDIDATE, latency=300) + rows(
        10, canary=False, model=BASELINE, latency=100
    )
    look = analyze(data, metrics=METRICS, alpha=0.05, min_requests=50)
    assert look.verdict(final=False) is None
    assert look.verdict(final=True) is GateVerdict.CONDITIONAL


def _insert(ws: Workspace, data: list[dict[str, Any]], ts: float) -> None:
    conn = ws.conn
    requests = [{**r, "id": uuid.uuid4().hex, "ts": ts, "n": len(r["attempts"])} for r in data]
    with conn.write():
        conn.executemany(
            "INSERT INTO requests (id, ts, environment, alias, model_id, provider, status, "
            "http_status, error_class, latency_ms, ttft_ms, input_tokens, output_tokens, cost, "
            "cache, attempts, hops, stream, canary, answer) VALUES (:id, :ts, 'production', "
            "'current', :model_id, 'p', :status, 200, :error_class, :latency_ms, :ttft_ms, "
            ":input_tokens, :output_tokens, :cost, :cache, :n, 0, 0, :canary, :answer)",
            requests,
        )
        conn.executemany(
            "INSERT INTO attempts (request_id, attempt, ts, environment, provider, model_id, "
            "deployment, status, error_class, http_status, latency_ms, ttft_ms) VALUES (:id, "
            ":n, :ts, 'production', 'p', :model_id, :model_id, :status, :error_class, 200, "
            ":latency_ms, :ttft_ms)",
            [
                {**a, "id": r["id"], "n": i, "ts": ts}
                for r in requests
                for i, a in enumerate(r["attempts"], 1)
            ],
        )


def _run(ws: Workspace, canary_latency: float, during: Any = None) -> Any:
    config = load_config(ws.config_path).config
    clock = {"now": 1_000_000.0}

    async def sleep(seconds: float) -> None:
        # The gateway's part, played by the test: traffic arrives while the gate waits.
        clock["now"] += seconds
        _insert(
            ws,
            rows(60, canary=True, model=CANDIDATE, latency=canary_latency, seed=int(clock["now"])),
            clock["now"] - 1,
        )
        _insert(
            ws,
            rows(1140, canary=False, model=BASELINE, latency=100, seed=int(clock["now"]) + 1),
            clock["now"] - 1,
        )

    def observe(look: Any) -> None:
        value = settings.get(ws.conn, "production", "canary")
        assert value["model"] == CANDIDATE
        assert value["percent"] == 5.0
        if during is not None:
            during()

    options = canary_gate.CanaryOptions(model_ref=CANDIDATE, duration_s=900, actor="tester")
    return asyncio.run(
        canary_gate.run_canary(
            ws.conn, config, options, sleep=sleep, clock=lambda: clock["now"], on_look=observe
        )
    )


def test_slow_canary_is_rolled_back_early(workspace: Workspace) -> None:
    from quality_gates.gateway.runtime import force_breaker

    def failover() -> None:  # what the watch plane does when the candidate's provider fails
        force_breaker(
            workspace.conn,
            environment="production",
            deployment=f"google/{CANDIDATE}",
            state="open",
            reason="automatic failover",
            actor="auto-remediation",
        )

    result = _run(workspace, canary_latency=140, during=failover)
    assert result.verdict is GateVerdict.REJECT
    assert any("forced open during the canary by auto-remediation" in note
               for note in result.summary["notes"])  # fmt: skip
    assert result.summary["early_stop"] is True
    value = settings.get(workspace.conn, "production", "canary")
    assert value["percent"] == 0.0
    assert get_alias(workspace.conn, "production", "current").model_id == BASELINE
    actions = [e.action for e in audit.entries(workspace.conn)]
    assert "canary.start" in actions
    assert "canary.rollback" in actions


def test_equal_canary_is_promoted(workspace: Workspace) -> None:
    result = _run(workspace, canary_latency=100)
    assert result.verdict is GateVerdict.APPROVE, result.summary["reasons"]
    assert get_alias(workspace.conn, "production", "current").model_id == CANDIDATE
    assert get_alias(workspace.conn, "production", "previous-stable").model_id == BASELINE
    assert settings.get(workspace.conn, "production", "canary") is None


def test_update_traffic_and_manual_rollback(workspace: Workspace) -> None:
    conn = workspace.conn
    with pytest.raises(Exception, match="no canary"):
        canary_gate.update_traffic(conn, "production", 10, "tester")
    canary_gate.set_share(
        conn,
        "production",
        model=CANDIDATE,
        percent=5,
        baseline=BASELINE,
        run_id=None,
        actor="tester",
        reason="test",
        action="start",
    )
    canary_gate.update_traffic(conn, "production", 25, "tester")
    assert settings.get(conn, "production", "canary")["percent"] == 25.0
    canary_gate.rollback(conn, "production", "tester", "manual")
    assert settings.get(conn, "production", "canary")["percent"] == 0.0


def test_cache_hits_are_left_out_of_the_comparison() -> None:
    slow_but_cached = [
        {**r, "latency_ms": 0.2, "cache": "hit"}
        for r in rows(300, canary=True, model=CANDIDATE, latency=100, seed=8)
    ]
    data = (
        rows(100, canary=True, model=CANDIDATE, latency=140, seed=7)
        + slow_but_cached
        + rows(300, canary=False, model=BASELINE, latency=100, seed=9)
    )
    look = analyze(data, metrics=METRICS, alpha=0.05)
    latency = next(m for m in look.metrics if m.metric == "latency_ms")
    assert latency.n_canary == 100
    assert latency.outcome == "fail"


def test_errors_behind_failover_are_the_candidates_failures() -> None:
    # A quarter of the candidate's first calls fail; the gateway fails them over to another
    # model, so every client gets an answer.
    data = rows(400, canary=True, model=CANDIDATE, latency=100, error_rate=0.25, seed=10,
                fallback="llama-3-1-70b") + rows(400, canary=False, model=BASELINE,
                                                 latency=100, seed=11)  # fmt: skip
    look = analyze(data, metrics=METRICS, alpha=0.05)
    errors = next(m for m in look.metrics if m.metric == "error_rate")
    assert errors.outcome == "fail"
    assert errors.canary == pytest.approx(0.25, abs=0.06)
    canary = look.sides["canary"]
    assert canary["client"]["error_rate"] == 0.0
    assert canary["client"]["answered_by_other"] == canary["failures"]
    assert canary["failure_classes"] == {"server_error": canary["failures"]}
    assert look.verdict(final=False) is GateVerdict.REJECT


def test_a_candidate_its_breaker_skipped_failed_those_requests() -> None:
    skipped = [
        {**r, "model_id": BASELINE, "attempts": [{**r["attempts"][0], "model_id": BASELINE}]}
        for r in rows(100, canary=True, model=CANDIDATE, latency=100, seed=12)
    ]
    refused = [
        {**r, "status": "error", "error_class": "circuit_open", "attempts": []}
        for r in rows(20, canary=True, model=CANDIDATE, latency=100, seed=13)
    ]
    data = (
        rows(100, canary=True, model=CANDIDATE, latency=100, seed=14)
        + skipped
        + refused
        + rows(300, canary=False, model=BASELINE, latency=100, seed=15)
    )
    look = analyze(data, metrics=METRICS, alpha=0.05)
    canary = look.sides["canary"]
    assert canary["judged"] == 220
    assert canary["failure_classes"] == {"not_tried": 120}
    latency = next(m for m in look.metrics if m.metric == "latency_ms")
    assert latency.n_canary == 100  # only the candidate's own calls


def test_refusals_before_any_upstream_call_and_clients_that_left_are_not_judged() -> None:
    limited = [
        {**r, "status": "rejected", "error_class": "rate_limited", "attempts": []}
        for r in rows(50, canary=True, model=CANDIDATE, latency=100, seed=16)
    ]
    left = [
        {**r, "status": "cancelled", "error_class": "client_closed", "latency_ms": 1.0}
        for r in rows(40, canary=True, model=CANDIDATE, latency=100, seed=18)
    ]
    canary, _ = split(limited + left + rows(60, canary=True, model=CANDIDATE, latency=100,
                                            seed=17),
                      candidate=CANDIDATE, baseline=BASELINE)  # fmt: skip
    assert (canary.requests, canary.judged, canary.failures) == (150, 60, 0)
    assert len(canary.latency_ms) == 60


def test_the_sample_plan_says_up_front_what_reaches_the_minimum(workspace: Workspace) -> None:
    import time

    from quality_gates.gates.canary_traffic import plan_sample

    now = time.time()
    # 10 requests/s reached the models over the last 30 s; 30 more were cache hits.
    for second in range(30):
        _insert(workspace, rows(10, canary=False, model=BASELINE, latency=100, seed=second),
                now - 30 + second)  # fmt: skip
    cached = [{**r, "cache": "hit"} for r in rows(30, canary=False, model=BASELINE, latency=1)]
    _insert(workspace, cached, now - 1)
    from quality_gates.gateway._control import UPSERT_HEARTBEAT, Heartbeat

    beat = Heartbeat("gw", "production", "host", 1, "http://gw", now)
    with workspace.conn.write():
        workspace.conn.execute(UPSERT_HEARTBEAT, {**beat.__dict__, "heartbeat_at": now})
    short = plan_sample(workspace.conn, "production", alias="current", percent=5,
                        duration_s=60, min_requests=50, now=now)  # fmt: skip
    assert short.rate_per_s == pytest.approx(10, rel=0.1)
    assert short.expected_canary == pytest.approx(30, rel=0.1)
    assert not short.enough
    assert short.duration_needed_s == pytest.approx(100, rel=0.1)
    assert short.percent_range is not None
    assert short.percent_range[0] == pytest.approx(8.3, rel=0.1)
    assert "--duration 10" in short.describe()
    long = plan_sample(workspace.conn, "production", alias="current", percent=5,
                       duration_s=200, min_requests=50, now=now)  # fmt: skip
    assert long.enough


def test_the_canary_refuses_when_it_cannot_reach_its_sample(workspace: Workspace) -> None:
    from quality_gates.errors import TooLittleTraffic

    config = load_config(workspace.config_path).config
    options = canary_gate.CanaryOptions(model_ref=CANDIDATE, duration_s=60, actor="tester",
                                        require_sample=True)  # fmt: skip
    with pytest.raises(TooLittleTraffic, match="no running gateway"):
        asyncio.run(canary_gate.run_canary(workspace.conn, config, options))
    assert settings.get(workspace.conn, "production", "canary") is None


def test_the_canary_refuses_a_forced_open_candidate_and_another_baseline(
    workspace: Workspace,
) -> None:
    from quality_gates.errors import RegistryError, UsageError
    from quality_gates.gateway.runtime import force_breaker

    config = load_config(workspace.config_path).config
    options = canary_gate.CanaryOptions(model_ref=CANDIDATE, actor="tester",
                                        baseline_ref="previous-stable")  # fmt: skip
    with pytest.raises(UsageError, match="compares it with the rest of that traffic"):
        asyncio.run(canary_gate.run_canary(workspace.conn, config, options))
    force_breaker(workspace.conn, environment="production", deployment=f"google/{CANDIDATE}",
                  state="open", reason="automatic failover", actor="auto-remediation")  # fmt: skip
    options = canary_gate.CanaryOptions(model_ref=CANDIDATE, actor="tester")
    with pytest.raises(RegistryError, match="forced open in production by auto-remediation"):
        asyncio.run(canary_gate.run_canary(workspace.conn, config, options))
    assert settings.get(workspace.conn, "production", "canary") is None


def test_the_share_served_is_measured_against_the_share_set(workspace: Workspace) -> None:
    from quality_gates.gates.canary_traffic import measure_share

    fine = measure_share(workspace.conn, "production", percent=30, canary=290, total=1000,
                         version=1, applied_by=0, now=0)  # fmt: skip
    assert not fine.off
    assert fine.low is not None
    assert fine.low < 30 < (fine.high or 0)
    assert "measured 29.0%" in fine.describe()
    short = measure_share(workspace.conn, "production", percent=30, canary=50, total=1000,
                          version=1, applied_by=0, now=0)  # fmt: skip
    assert short.off
    assert "off" in short.describe()


def test_validate_canary_health_sees_failures_behind_failover(workspace: Workspace) -> None:
    import time

    from quality_gates.validation import ValidationContext
    from quality_gates.validation._operations import canary_health

    canary_gate.set_share(workspace.conn, "production", model=CANDIDATE, percent=30,
                          baseline=BASELINE, run_id=None, actor="t", reason="t",
                          action="start")  # fmt: skip
    _insert(workspace, rows(100, canary=True, model=CANDIDATE, latency=100, error_rate=0.25,
                            seed=20, fallback="llama-3-1-70b"), time.time() - 5)  # fmt: skip
    _insert(workspace, rows(200, canary=False, model=BASELINE, latency=100, seed=21),
            time.time() - 5)  # fmt: skip
    ctx = ValidationContext("production", workspace.config_path, None,
                            options={"canary_health": True})  # fmt: skip
    ctx._conn = workspace.conn
    [result] = canary_health(ctx)
    assert result.status == "FAIL", result.summary
    assert "its own failures" in result.summary
    assert result.evidence["canary"]["client_error_rate"] == 0.0


def test_a_gateway_that_did_not_apply_the_share_is_named(workspace: Workspace) -> None:
    import time

    from quality_gates.gates.canary_traffic import measure_share
    from quality_gates.gateway._control import UPSERT_HEARTBEAT, Heartbeat

    now = time.time()
    for name, version in (("gw-a", 7), ("gw-b", 6)):
        beat = Heartbeat(name, "production", "host", 1, "http://gw", now, control_version=version)
        with workspace.conn.write():
            workspace.conn.execute(UPSERT_HEARTBEAT, {**beat.__dict__, "heartbeat_at": now})
    share = measure_share(workspace.conn, "production", percent=30, canary=300, total=1000,
                          version=7, applied_by=now - 1, now=now)  # fmt: skip
    assert share.gateways == 2
    assert share.lagging == ["gw-b"]
    assert share.off
    assert "not applied by gateway(s) gw-b" in share.describe()


def test_the_window_waits_for_every_gateway_to_report_the_share(workspace: Workspace) -> None:
    import time

    from quality_gates.gates.canary_traffic import wait_applied
    from quality_gates.gateway._control import UPSERT_HEARTBEAT, Heartbeat

    def beat(version: int) -> None:
        row = Heartbeat("gw", "production", "host", 1, "http://gw", 0, control_version=version)
        with workspace.conn.write():
            workspace.conn.execute(UPSERT_HEARTBEAT, {**row.__dict__, "heartbeat_at": time.time()})

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        beat(5 if len(slept) < 3 else 6)  # the gateway applies version 6 on its third beat

    beat(5)
    lagging = asyncio.run(wait_applied(workspace.conn, "production", 6, timeout=10,
                                       sleep=sleep, clock=time.time))  # fmt: skip
    assert lagging == []
    assert len(slept) == 3
    lagging = asyncio.run(wait_applied(workspace.conn, "production", 7, timeout=0,
                                       sleep=sleep, clock=time.time))  # fmt: skip
    assert lagging == ["gw"]


def test_an_undecided_canary_is_recorded_as_conditional(workspace: Workspace) -> None:
    config = load_config(workspace.config_path).config
    clock = {"now": 1_000_000.0}

    async def sleep(seconds: float) -> None:  # no traffic arrives
        clock["now"] += seconds

    options = canary_gate.CanaryOptions(model_ref=CANDIDATE, duration_s=60, actor="tester")
    result = asyncio.run(canary_gate.run_canary(workspace.conn, config, options, sleep=sleep,
                                                clock=lambda: clock["now"]))  # fmt: skip
    assert result.verdict is GateVerdict.CONDITIONAL
    assert any("too little traffic" in r for r in result.summary["reasons"])
    [completed] = audit.entries(workspace.conn, action="gate.canary.completed")
    assert completed.details["verdict"] == "CONDITIONAL"
    assert settings.get(workspace.conn, "production", "canary")["percent"] == 0.0


def test_a_significantly_higher_share_of_unusable_outputs_rejects() -> None:
    """Tool arguments that are not JSON and JSON that breaks its schema fail the candidate
    (the gateway's `output_check` on each answer), even though every call answered 200."""
    spec = {"invalid_output_rate": CanaryMetric(min_effect=0.02)}
    data = rows(200, canary=True, model=CANDIDATE, latency=100, seed=7) + rows(
        200, canary=False, model=BASELINE, latency=100, seed=8
    )
    rng = random.Random(9)
    for row in data:
        bad = row["canary"] and rng.random() < 0.3
        row["output_check"] = "tool_arguments_not_json" if bad else "valid"
    look = analyze(data, metrics=spec, alpha=0.05)
    (invalid,) = look.metrics
    assert invalid.outcome == "fail", invalid
    assert invalid.test == "two-proportion z (one-sided)"
    assert (invalid.n_canary, invalid.n_baseline) == (200, 200)
    assert invalid.canary is not None
    assert invalid.canary > 0.2
    assert invalid.baseline == 0.0
    assert look.verdict(final=False) is GateVerdict.REJECT
    assert look.sides["canary"]["outputs_invalid"] == round(invalid.canary * 200)

    for row in data:  # the same share on both sides is no evidence against the candidate
        row["output_check"] = "output_schema" if rng.random() < 0.1 else "valid"
    assert analyze(data, metrics=spec, alpha=0.05).metrics[0].outcome == "pass"
    for row in data:  # plain requests: nothing checked, no verdict on it
        row["output_check"] = None
    assert analyze(data, metrics=spec, alpha=0.05).metrics[0].outcome == "nodata"
