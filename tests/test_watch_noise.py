"""No incident from noise: relative rules need a baseline above their floor and a significant
change; info and efficiency rules notify but open no incident and never move traffic."""

from __future__ import annotations

import pytest
from tests.conftest import Workspace
from tests.receivers import Receiver
from tests.telemetry_rows import put_rollup
from tests.watch_setup import Clock, service, watch_config

from quality_gates.incidents import list_incidents
from quality_gates.signals._metrics import drop_is_significant

T0 = 29_100_000 * 60.0 + 30.0


def test_a_dip_in_a_handful_of_scores_is_not_a_drop() -> None:
    # Baseline 0.9 with spread, 10 samples; now 0.8 with the same spread: not significant.
    assert not drop_is_significant((0.9, 10, 0.09), (0.8, 10, 0.16))
    # The drill's regression: from 0.97 to 0.1 over 20 samples each side.
    assert drop_is_significant((0.97, 20, 0.03), (0.1, 20, 0.09))
    assert not drop_is_significant((0.5, 20, 0.1), (0.6, 20, 0.1))  # a rise is never a drop


async def test_cost_rise_over_a_near_zero_baseline_fires_nothing(
    workspace: Workspace, receiver: Receiver
) -> None:
    """The issue's 62,703,594% cost rise: the baseline spent next to nothing."""
    rules = [{"name": "cost-increase-info", "expr": "cost_increase > 20%", "severity": "info",
              "type": "cost", "window": "15m", "incident": True}]  # fmt: skip
    config = watch_config(workspace, receiver.base, rules=rules)
    clock = Clock(T0)
    svc = service(workspace, config, clock)
    try:
        for minute in range(1, 60):
            put_rollup(workspace.conn, ts=T0 - 900 - minute * 60, count=30, cost=0.000001)
        put_rollup(workspace.conn, ts=T0, count=100, cost=5.0)
        report = await svc.run_once()
        assert report.evaluation is not None
        assert not [t for t in report.evaluation.transitions if t.to_state == "firing"]
    finally:
        await svc.close()


async def test_info_and_efficiency_rules_notify_without_an_incident_or_remediation(
    workspace: Workspace, receiver: Receiver
) -> None:
    rules = [
        {"name": "cache-hit-rate-warning", "expr": "cache_hit_rate < 70%",
         "severity": "warning", "type": "performance", "min_requests": 10},
        {"name": "error-rate-info", "expr": "error_rate > 5%", "severity": "info",
         "type": "provider"},
    ]  # fmt: skip
    config = watch_config(
        workspace,
        receiver.base,
        rules=rules,
        remediation={"rollback": {"triggers": ["error-rate-info"]}},
    )
    clock = Clock(T0)
    svc = service(workspace, config, clock)
    try:
        put_rollup(workspace.conn, ts=T0, count=100, errors=30, cache_hits=5, cache_misses=95)
        report = await svc.run_once()
        assert report.evaluation is not None
        transitions = report.evaluation.transitions
        firing = sorted(t.alert.rule for t in transitions if t.to_state == "firing")
        assert firing == ["cache-hit-rate-warning", "error-rate-info"]
        assert list_incidents(workspace.conn, state="all") == []
        assert report.remediation == []
        await svc.deliver()
        hooks = receiver.received.get("/webhook", [])
        assert sorted(m["rule"] for m in hooks) == firing
        assert all(m["incident"] is None for m in hooks)
        assert not [p for p in receiver.received if "pagerduty" in p]
    finally:
        await svc.close()


async def test_the_cache_rule_does_not_evaluate_while_the_cache_serves_nothing(
    workspace: Workspace, receiver: Receiver
) -> None:
    rules = [{"name": "cache-hit-rate-warning", "expr": "cache_hit_rate < 70%",
              "severity": "warning", "type": "performance", "min_requests": 10}]  # fmt: skip
    config = watch_config(workspace, receiver.base, rules=rules)
    clock = Clock(T0)
    svc = service(workspace, config, clock)
    try:
        # Answers recorded but never served from the cache: no hit, no miss counted.
        put_rollup(workspace.conn, ts=T0, count=500)
        report = await svc.run_once()
        assert report.evaluation is not None
        assert report.evaluation.transitions == []
    finally:
        await svc.close()


def test_the_welch_test_needs_no_scipy_and_matches_it() -> None:
    """The watch shares the gateway's event loop: its t distribution is pure Python."""
    from scipy import stats

    from quality_gates.signals._metrics import student_t_sf

    for t in (0.0, 0.3, 1.0, 1.7, 2.5, 4.0, 12.0):
        for dof in (1.0, 2.5, 7.0, 18.3, 120.0, 5000.0):
            assert student_t_sf(t, dof) == pytest.approx(stats.t.sf(t, dof), abs=1e-10)
