"""`status` at a glance: traffic in force, provider health over 5 m and 1 h, quota use,
failover state, emergency mode, alerts and incidents, from the store alone."""

from __future__ import annotations

import json
import time

from tests.conftest import Workspace
from tests.telemetry_rows import put_rollup

from quality_gates.config import load_config
from quality_gates.gateway import emergency
from quality_gates.gateway.runtime import force_breaker, set_traffic


def test_status_json_has_every_live_section(sqlite_workspace: Workspace, qg) -> None:  # type: ignore[no-untyped-def]
    ws = sqlite_workspace
    now = time.time()
    put_rollup(
        ws.conn,
        ts=now,
        provider="bedrock",
        kind="attempt",
        count=100,
        errors=10,
        latencies=[200.0] * 100,
    )
    put_rollup(
        ws.conn,
        ts=now,
        provider="bedrock",
        count=100,
        input_tokens=1000,
        output_tokens=1000,
        latencies=[250.0] * 100,
    )
    set_traffic(
        ws.conn,
        environment="production",
        weights={"bedrock": 50, "google": 50},
        current={"bedrock": 100},
        actor="tester",
    )
    force_breaker(
        ws.conn,
        environment="production",
        deployment="bedrock/claude-3-5-haiku",
        state="open",
        reason="drill",
        actor="tester",
    )
    config = load_config(ws.config_path).config
    emergency.switch_on(
        ws.conn, config, environment="production", mode="degraded", reason="drill", actor="tester"
    )
    result = qg(*ws.cli_args(), "status", "-e", "production", "--json")
    assert result.code == 0, result.err
    env = json.loads(result.out)["environments"][0]
    assert env["traffic_in_force"] == {"bedrock": 50.0, "google": 50.0}
    bedrock = next(p for p in env["providers"] if p["provider"] == "bedrock")
    assert bedrock["breaker"] == "open"
    assert bedrock["windows"]["5m"]["calls"] == 100
    assert abs(bedrock["windows"]["1h"]["availability"] - 0.9) < 1e-9
    assert bedrock["windows"]["5m"]["p95_ms"] is not None
    quota = next(q for q in env["quotas"] if q["provider"] == "bedrock")
    assert quota["used"]["rpm"] > 0
    assert env["emergency"]["mode"] == "degraded"
    assert "bedrock/claude-3-5-haiku" in env["failover"]["forced_breakers"]
    assert {"alerts", "incidents", "gates", "remediations"} <= set(env)


def test_quota_check_exits_1_at_80_percent(sqlite_workspace: Workspace, qg) -> None:  # type: ignore[no-untyped-def]
    ws = sqlite_workspace
    assert qg(*ws.cli_args(), "status", "--quota-check").code == 0
    put_rollup(ws.conn, ts=time.time(), provider="bedrock", kind="attempt", count=5900)
    result = qg(*ws.cli_args(), "status", "--quota-check", "-e", "production")
    assert result.code == 1
    assert "bedrock" in result.out


def test_provider_health_compact_and_failover_status_print(sqlite_workspace: Workspace, qg) -> None:  # type: ignore[no-untyped-def]
    ws = sqlite_workspace
    compact = qg(*ws.cli_args(), "status", "--provider-health", "--compact", "-e", "production")
    assert compact.code == 0
    assert "production/bedrock:" in compact.out
    failover = qg(*ws.cli_args(), "status", "--failover-status", "-e", "production")
    assert "chain: claude-3-5-haiku -> gemini-1-5-flash -> llama-3-1-70b" in failover.out
    assert "no failover in progress" in failover.out


def test_status_reads_a_transition_as_the_gateway_does() -> None:
    from quality_gates.gateway.runtime import TrafficSetting
    from quality_gates.status._live import live_weights

    setting = TrafficSetting({"bedrock": 20.0, "google": 80.0}, 1000.0, 100.0, {"bedrock": 100.0})
    for now in (900.0, 1000.0, 1025.0, 1099.0, 1200.0):
        assert live_weights(setting.to_json(), now) == setting.at(now)
