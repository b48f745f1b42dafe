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


def _run(ws: Workspace, canary_latency: float) -> Any:
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

    options = canary_gate.CanaryOptions(model_ref=CANDIDATE, duration_s=900, actor="tester")
    return asyncio.run(
        canary_gate.run_canary(
            ws.conn, config, options, sleep=sleep, clock=lambda: clock["now"], on_look=observe
        )
    )


def test_slow_canary_is_rolled_back_early(workspace: Workspace) -> None:
    result = _run(workspace, canary_latency=140)
    assert result.verdict is GateVerdict.REJECT
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
