"""failover / failback step by step, with health checks, history and audit."""

from __future__ import annotations

import json

import pytest
from tests.conftest import Workspace

from quality_gates.config import load_config
from quality_gates.errors import RegistryError, UsageError
from quality_gates.gateway.failover import current_weights, failback, failover
from quality_gates.providers import ProbeResult

ALL_AT_100 = {"bedrock": 100.0, "google": 100.0, "meta": 100.0}  # no weights: each keeps its own


class Probes:
    """A fake live probe: healthy unless told otherwise; counts calls per provider."""

    def __init__(self) -> None:
        self.bad: dict[str, int] = {}  # provider -> calls (from now) that fail
        self.fail_from_call: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def __call__(self, name: str) -> ProbeResult:
        self.calls[name] = self.calls.get(name, 0) + 1
        start = self.fail_from_call.get(name)
        healthy = start is None or self.calls[name] < start
        return ProbeResult(name, healthy, 5.0, None if healthy else "server_error", "")


def run_failover(ws: Workspace, probes: Probes, **kw):  # type: ignore[no-untyped-def]
    config = load_config(ws.config_path).config
    args = {
        "environment": "production",
        "source": "bedrock",
        "target": "google",
        "mode": "immediate",
        "reason": "provider outage",
        "actor": "oncall",
        "probe": probes,
        "pause": 0.0,
        "sleep": lambda s: None,
        **kw,
    }
    return failover(ws.conn, config, **args)


def history(ws: Workspace) -> list[dict]:  # type: ignore[type-arg]
    return ws.conn.execute("SELECT * FROM traffic_history ORDER BY id")


def test_immediate_failover_moves_all_weight_in_one_audited_step(workspace: Workspace) -> None:
    move = run_failover(workspace, Probes())
    assert move.completed
    assert move.before == ALL_AT_100
    assert move.final == {"bedrock": 0.0, "google": 200.0, "meta": 100.0}
    config = load_config(workspace.config_path).config
    assert current_weights(workspace.conn, config, "production") == {"google": 200.0, "meta": 100.0}
    rows = history(workspace)
    assert [r["mode"] for r in rows] == ["failover:immediate"]
    assert json.loads(rows[0]["previous"]) == ALL_AT_100
    audit = workspace.conn.execute(
        "SELECT action, actor FROM audit_log WHERE action = 'traffic.set'"
    )
    assert audit == [{"action": "traffic.set", "actor": "oncall"}]


def test_gradual_failover_leaves_50_25_0_and_checks_between_steps(workspace: Workspace) -> None:
    probes = Probes()
    move = run_failover(workspace, probes, mode="gradual")
    assert move.completed
    assert [s.weights["bedrock"] for s in move.steps] == [50.0, 25.0, 0.0]
    assert [s.check is not None for s in move.steps] == [True, True, False]
    assert probes.calls == {"google": 2}
    assert len(history(workspace)) == 3


def test_gradual_failover_holds_when_a_check_fails(workspace: Workspace) -> None:
    probes = Probes()
    probes.fail_from_call["google"] = 2
    move = run_failover(workspace, probes, mode="gradual")
    assert not move.completed
    assert move.outcome.startswith("held at bedrock at 25%")
    assert move.final["bedrock"] == 25.0


def test_canary_failover_stops_and_restores_on_a_failed_check(workspace: Workspace) -> None:
    probes = Probes()
    probes.fail_from_call["google"] = 3
    move = run_failover(workspace, probes, mode="canary")
    assert not move.completed
    assert [round(s.weights["google"], 2) for s in move.steps] == [105.0, 110.0, 125.0]
    assert move.final == ALL_AT_100
    rows = history(workspace)
    assert rows[-1]["step"] == "reverted"
    assert rows[-1]["source"] == "auto"
    assert json.loads(rows[-1]["weights"]) == ALL_AT_100


def test_canary_failover_runs_all_six_steps_when_healthy(workspace: Workspace) -> None:
    move = run_failover(workspace, Probes(), mode="canary")
    assert move.completed
    assert [round(s.weights["google"]) for s in move.steps] == [105, 110, 125, 150, 175, 200]


def test_failover_refuses_what_would_move_nothing(workspace: Workspace) -> None:
    with pytest.raises(UsageError, match="unknown provider"):
        run_failover(workspace, Probes(), target="azure")
    with pytest.raises(UsageError, match="same provider"):
        run_failover(workspace, Probes(), target="bedrock")
    run_failover(workspace, Probes())
    with pytest.raises(RegistryError, match="carries no traffic"):
        run_failover(workspace, Probes(), target="meta")  # bedrock is already at 0


def test_failback_restores_the_weights_from_before_the_failover(workspace: Workspace) -> None:
    run_failover(workspace, Probes())
    config = load_config(workspace.config_path).config
    move, health = failback(
        workspace.conn,
        config,
        environment="production",
        provider="bedrock",
        threshold=0.99,
        mode="canary",
        reason="",
        actor="oncall",
        probe=Probes(),
        pause=0.0,
        probe_interval=0.0,
        sleep=lambda s: None,
    )
    assert move.completed, move.outcome
    assert health["success_rate"] == 1.0
    assert health["probes"] == 20
    assert current_weights(workspace.conn, config, "production") == ALL_AT_100
    assert [r["mode"] for r in history(workspace)][-1] == "failback:canary"


def test_failback_waits_while_the_provider_is_below_the_threshold(workspace: Workspace) -> None:
    run_failover(workspace, Probes())
    probes = Probes()
    probes.fail_from_call["bedrock"] = 20  # 19 of 20 probes pass: 95%
    config = load_config(workspace.config_path).config
    move, health = failback(
        workspace.conn,
        config,
        environment="production",
        provider="bedrock",
        threshold=0.99,
        mode="immediate",
        reason="",
        actor="oncall",
        probe=probes,
        pause=0.0,
        probe_interval=0.0,
        sleep=lambda s: None,
    )
    assert not move.completed
    assert health["success_rate"] == pytest.approx(0.95)
    assert "below the 99.0% threshold" in move.outcome
    assert current_weights(workspace.conn, config, "production") == {"google": 200.0, "meta": 100.0}


def test_failback_needs_a_recorded_failover(workspace: Workspace) -> None:
    config = load_config(workspace.config_path).config
    with pytest.raises(RegistryError, match="no failover away from bedrock"):
        failback(
            workspace.conn,
            config,
            environment="production",
            provider="bedrock",
            threshold=0.99,
            mode="canary",
            reason="",
            actor="x",
            probe=Probes(),
            pause=0.0,
            sleep=lambda s: None,
        )
