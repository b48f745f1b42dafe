"""The performance gate: from telemetry roll-ups in production, from generated load elsewhere."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tests.conftest import Workspace
from tests.gates_fakes import KeyedProvider

from quality_gates.gates import loadgen
from quality_gates.gates.performance import PerformanceOptions, run_performance
from quality_gates.gates.verdict import GateVerdict
from quality_gates.telemetry import LatencyHistogram

MODEL = "claude-3-5-haiku"


def _rollup(ws: Workspace, minute: int, count: int, errors: int, latency_ms: float) -> None:
    hist = LatencyHistogram.of([latency_ms] * (count - errors))
    with ws.conn.write():
        ws.conn.execute(
            "INSERT INTO rollups (minute, environment, alias, model_id, provider, kind, writer, "
            "count, errors, errors_by_class, latency_hist, ttft_hist, input_tokens, "
            "output_tokens, cost, cache_hits, cache_stale, cache_misses, failovers, canary, "
            "updated_at) VALUES (:minute, 'production', 'current', :model, 'bedrock', "
            "'request', 'w1', :count, :errors, :by_class, :hist, :hist, 0, 0, 0, 0, 0, 0, 0, "
            "0, 0)",
            {
                "minute": minute,
                "model": MODEL,
                "count": count,
                "errors": errors,
                "by_class": json.dumps({"server_error": errors} if errors else {}),
                "hist": hist.to_json(),
            },
        )


def _perf(ws: Workspace, **kw: Any) -> tuple[GateVerdict, dict[str, Any]]:
    from quality_gates.config import load_config

    config = load_config(ws.config_path).config
    factory = kw.pop("factory", None)
    now = kw.pop("now", None)
    options = PerformanceOptions(model_ref="current-model", actor="t", **kw)
    return asyncio.run(run_performance(ws.conn, config, options, factory=factory, now=now))


def test_production_reads_the_window_from_rollups(workspace: Workspace) -> None:
    now = 1_800_000_000.0
    minute = int(now // 60)
    for m in range(minute - 4, minute + 1):
        _rollup(workspace, m, 3000, 6, 400.0)
    _rollup(workspace, minute - 30, 3000, 3000, 9000.0)  # outside the window
    verdict, summary = _perf(workspace, duration_s=300, now=now)
    assert verdict is GateVerdict.APPROVE, summary["reasons"]
    figures = summary["figures"]
    assert figures["requests"] == 15000
    assert figures["errors_by_class"] == {"server_error": 30}
    assert figures["latency_ms"]["p95"] == pytest.approx(400, rel=0.01)
    assert figures["throughput_rps"] == pytest.approx((15000 - 30) / 300, rel=0.01)


def test_production_slow_p95_rejects(workspace: Workspace) -> None:
    now = 1_800_000_000.0
    _rollup(workspace, int(now // 60), 3000, 0, 2500.0)
    verdict, summary = _perf(workspace, duration_s=60, now=now)
    assert verdict is GateVerdict.REJECT
    assert any("p95" in r for r in summary["reasons"])


def test_no_telemetry_cannot_complete(workspace: Workspace) -> None:
    verdict, _ = _perf(workspace, duration_s=60, now=1_800_000_000.0)
    assert verdict is GateVerdict.ERROR
    assert verdict.exit_code == 4


def test_open_loop_keeps_its_rate_against_a_slow_server() -> None:
    async def slow() -> loadgen.Sample:
        await asyncio.sleep(0.2)
        return loadgen.Sample(None)

    result = asyncio.run(loadgen.open_loop(slow, rps=200, duration_s=0.5))
    assert result.sent == 100
    assert result.ok == 100
    # Latency is measured from the schedule, so it includes the full 200 ms service time.
    assert result.latency.quantile(0.5) >= 190


def test_closed_loop_counts_errors_by_class() -> None:
    count = {"n": 0}

    async def flaky() -> loadgen.Sample:
        count["n"] += 1
        mine = count["n"]  # read before yielding: other workers move the counter
        await asyncio.sleep(0)
        return loadgen.Sample("rate_limited" if mine % 4 == 0 else None)

    result = asyncio.run(loadgen.closed_loop(flaky, concurrency=4, duration_s=0.05))
    assert result.errors["rate_limited"] == result.completed // 4


def test_load_against_the_provider_in_staging(workspace: Workspace) -> None:
    provider = KeyedProvider("bedrock", {}, {}, latency_s=0.01)
    verdict, summary = _perf(
        workspace,
        environment="staging",
        duration_s=1.0,
        rps=60,
        factory=lambda p, m: provider,
    )
    assert summary["figures"]["source"] == "load:open:provider"
    assert summary["figures"]["requests"] == 60
    # No error in 60 requests cannot show an error rate under 2%: 189 such requests can.
    assert verdict is GateVerdict.CONDITIONAL, summary["reasons"]
    (reason,) = summary["reasons"]
    assert reason.startswith("error rate < 2.00%: CONDITIONAL (0.000% [0.000%, 6.017%] of 60")
    assert "about 189 requests at this rate would decide" in reason


def test_enough_clean_requests_clear_the_error_rate_threshold(workspace: Workspace) -> None:
    provider = KeyedProvider("bedrock", {}, {}, latency_s=0.002)
    verdict, summary = _perf(
        workspace, environment="staging", duration_s=1.0, rps=250, factory=lambda p, m: provider
    )
    assert summary["figures"]["requests"] == 250
    assert verdict is GateVerdict.APPROVE, summary["reasons"]
