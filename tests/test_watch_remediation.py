"""Automatic remediation on a controllable clock: rollback with its guards, dry runs, and a
provider failover that fails back in steps once the provider stayed healthy."""

from __future__ import annotations

from typing import Any

from tests.conftest import Workspace
from tests.receivers import Receiver
from tests.telemetry_rows import put_rollup
from tests.watch_setup import Clock, service, watch_config

from quality_gates.config import QualityGatesConfig
from quality_gates.gateway.failover import current_weights
from quality_gates.incidents import list_incidents, timeline
from quality_gates.providers import ProbeResult
from quality_gates.remediation import _remedy_store as remedies
from quality_gates.store import settings as runtime_settings
from quality_gates.store.registry import get_alias

T0 = 29_100_000 * 60.0 + 30.0
RULES = [
    {"name": "error-rate-critical", "expr": "error_rate > 5%", "severity": "critical"},
    {
        "name": "provider-availability-critical",
        "expr": "provider_availability < 95%",
        "severity": "critical",
        "type": "provider",
        "keep_firing_for": "0s",
    },
]


def config_for(ws: Workspace, base: str, **remediation: Any) -> QualityGatesConfig:
    return watch_config(
        ws,
        base,
        rules=RULES,
        remediation={
            "rollback": {"triggers": ["error-rate-critical"], "verify_target": False},
            "failover": {"triggers": ["provider-availability-critical"]},
            "failback": {
                "healthy_for": "10s",
                "probe_interval": "1s",
                "steps": ["50%", "100%"],
                "step_interval": "5s",
            },
            "probes": {"enabled": False},
            **remediation,
        },
    )


def failing_requests(ws: Workspace, ts: float) -> None:
    put_rollup(ws.conn, ts=ts, provider="bedrock", count=100, errors=30)


async def test_error_rate_rolls_current_back_once_and_records_it_in_order(
    workspace: Workspace, receiver: Receiver
) -> None:
    conn = workspace.conn
    svc = service(workspace, config_for(workspace, receiver.base), Clock(T0))
    try:
        failing_requests(workspace, T0)
        report = await svc.run_once()
        assert [(r.action, r.state) for r in report.remediation] == [("rollback", "done")]
        assert get_alias(conn, "production", "current").model_id == "claude-3-haiku"
        assert get_alias(conn, "production", "previous-stable").model_id == "claude-3-5-haiku"
        incident = list_incidents(conn)[0]
        move = conn.one("SELECT * FROM alias_history WHERE operation = 'rollback' LIMIT 1")
        assert (move["source"], move["incident_id"]) == ("auto", incident["id"])
        kinds = [e["kind"] for e in timeline(conn, incident["id"])]
        assert kinds.index("alert") < kinds.index("rollback")
        rollback = next(e for e in timeline(conn, incident["id"]) if e["kind"] == "rollback")
        assert "error-rate-critical" in rollback["message"]
        assert conn.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'remediation.rollback'")
        # The alert keeps firing on old data: no second rollback, one recorded cool-down skip.
        for _ in range(3):
            svc.clock.now += 1  # type: ignore[attr-defined]
            await svc.run_once()
        assert get_alias(conn, "production", "current").model_id == "claude-3-haiku"
        states = [r.state for r in remedies.find(conn, action="rollback")]
        assert states == ["skipped", "done"]
    finally:
        await svc.close()


async def test_dry_run_records_what_it_would_do_and_changes_nothing(
    workspace: Workspace, receiver: Receiver
) -> None:
    conn = workspace.conn
    svc = service(workspace, config_for(workspace, receiver.base, dry_run=True), Clock(T0))
    try:
        failing_requests(workspace, T0)
        report = await svc.run_once()
        assert [r.state for r in report.remediation] == ["dry_run"]
        assert "would roll back" in report.remediation[0].summary
        assert get_alias(conn, "production", "current").model_id == "claude-3-5-haiku"
        assert not conn.scalar("SELECT COUNT(*) FROM alias_history WHERE operation = 'rollback'")
    finally:
        await svc.close()


async def test_no_rollback_onto_a_target_that_is_failing_itself(
    workspace: Workspace, receiver: Receiver
) -> None:
    conn = workspace.conn
    svc = service(workspace, config_for(workspace, receiver.base), Clock(T0))
    try:
        with conn.write():
            conn.executemany(
                "INSERT INTO quality_samples (request_id, ts, environment, model_id, provider, "
                "scorer, score, passed) VALUES (:id, :ts, 'production', 'claude-3-haiku', "
                "'bedrock', 'golden', 0.0, 0)",
                [{"id": f"probe-{i}", "ts": T0 - 30} for i in range(6)],
            )
        failing_requests(workspace, T0)
        report = await svc.run_once()
        assert [r.state for r in report.remediation] == ["skipped"]
        assert "claude-3-haiku is failing itself" in report.remediation[0].summary
        assert get_alias(conn, "production", "current").model_id == "claude-3-5-haiku"
    finally:
        await svc.close()


async def test_provider_outage_fails_over_and_back_in_steps(
    workspace: Workspace, receiver: Receiver
) -> None:
    conn = workspace.conn
    clock = Clock(T0)
    svc = service(workspace, config_for(workspace, receiver.base), clock)
    probes: list[str] = []

    async def probe(provider: str, timeout: float = 10.0) -> ProbeResult:
        probes.append(provider)
        return ProbeResult(provider, True, 5.0)

    svc.pool.probe = probe  # type: ignore[method-assign]
    try:
        put_rollup(conn, ts=T0, provider="bedrock", kind="attempt", count=100, errors=60)
        report = await svc.run_once()
        assert [(r.action, r.state) for r in report.remediation] == [("failover", "active")]
        weights = current_weights(conn, svc.config, "production")
        assert weights.get("bedrock", 0.0) == 0.0
        assert weights["google"] == 200.0  # keeps its own and takes bedrock's
        forced = runtime_settings.get(conn, "production", "breaker:bedrock/claude-3-5-haiku")
        assert forced["state"] == "open"
        # The outage data ages out of the window; the probes pass from now on.
        states: list[str] = []
        for _ in range(80):
            clock.now += 2
            for r in (await svc.run_once()).remediation:
                states.append(f"{r.action}:{r.state}")
            if "failback:restored" in states:
                break
        assert states == ["failback:failing_back", "failback:failing_back", "failback:restored"]
        assert current_weights(conn, svc.config, "production") == {
            "bedrock": 100.0,
            "google": 100.0,
            "meta": 100.0,
        }
        assert runtime_settings.get(conn, "production", "breaker:bedrock/claude-3-5-haiku") is None
        assert set(probes) == {"bedrock"}
        moves = conn.execute("SELECT mode, step, source FROM traffic_history ORDER BY id")
        assert [m["mode"] for m in moves] == ["failover:auto", "failback:auto", "failback:auto"]
        assert {m["source"] for m in moves} == {"auto"}
        incident = list_incidents(conn, state="all")[0]
        kinds = [e["kind"] for e in timeline(conn, incident["id"])]
        assert kinds.index("failover") < kinds.index("failback")
        assert kinds.count("failback") == 3
    finally:
        await svc.close()


async def test_two_automatic_failovers_fail_back_in_any_order_to_the_weights_before(
    workspace: Workspace, receiver: Receiver
) -> None:
    """Issue 16: bedrock out (traffic to google), then google out (traffic to meta), then
    both back: bedrock's failback "stopped: an operator changed the weights" and traffic
    stayed on meta with both breakers forced open. Each failback now takes back its own
    change, so both finish and every provider ends where it began."""
    conn = workspace.conn
    clock = Clock(T0)
    svc = service(workspace, config_for(workspace, receiver.base), clock)

    async def probe(provider: str, timeout: float = 10.0) -> ProbeResult:
        return ProbeResult(provider, True, 5.0)

    svc.pool.probe = probe  # type: ignore[method-assign]
    try:
        put_rollup(conn, ts=T0, provider="bedrock", kind="attempt", count=100, errors=60)
        assert [(r.action, r.target) for r in (await svc.run_once()).remediation] == [
            ("failover", "bedrock")
        ]
        clock.now += 1
        put_rollup(conn, ts=clock.now, provider="google", kind="attempt", count=100, errors=60)
        reports = [(r.action, r.target) for r in (await svc.run_once()).remediation]
        assert ("failover", "google") in reports
        weights = current_weights(conn, svc.config, "production")
        assert weights == {"meta": 300.0}  # bedrock and google both out
        states: list[str] = []
        for _ in range(120):
            clock.now += 2
            for r in (await svc.run_once()).remediation:
                states.append(f"{r.action}:{r.target}:{r.state}")
            done = remedies.find(conn, action="failover", states=("restored",))
            if len(done) == 2:
                break
        assert "failback:bedrock:superseded" not in states, states
        assert {r.target for r in remedies.find(conn, action="failover", states=("restored",))} == {
            "bedrock",
            "google",
        }
        assert current_weights(conn, svc.config, "production") == {
            "bedrock": 100.0,
            "google": 100.0,
            "meta": 100.0,
        }
        for deployment in ("bedrock/claude-3-5-haiku", "google/gemini-1-5-flash"):
            assert runtime_settings.get(conn, "production", f"breaker:{deployment}") is None
    finally:
        await svc.close()


async def test_a_failed_check_during_failback_returns_the_traffic(
    workspace: Workspace, receiver: Receiver
) -> None:
    conn = workspace.conn
    clock = Clock(T0)
    svc = service(workspace, config_for(workspace, receiver.base), clock)
    healthy = {"now": True}

    async def probe(provider: str, timeout: float = 10.0) -> ProbeResult:
        return ProbeResult(provider, healthy["now"], 5.0, None if healthy["now"] else "overloaded")

    svc.pool.probe = probe  # type: ignore[method-assign]
    try:
        put_rollup(conn, ts=T0, provider="bedrock", kind="attempt", count=100, errors=60)
        await svc.run_once()
        states: list[str] = []
        for _ in range(80):
            clock.now += 2
            states += [r.state for r in (await svc.run_once()).remediation]
            if states == ["failing_back"]:
                healthy["now"] = False
            if "active" in states:
                break
        assert states == ["failing_back", "active"]
        assert current_weights(conn, svc.config, "production").get("bedrock", 0.0) == 0.0
        forced = runtime_settings.get(conn, "production", "breaker:bedrock/claude-3-5-haiku")
        assert forced["state"] == "open"
    finally:
        await svc.close()


async def test_an_operator_weight_change_wins_and_the_watch_still_clears_its_breakers(
    workspace: Workspace, receiver: Receiver
) -> None:
    """A person moves the weights during an automatic failover: their weights stay, and when
    the provider is healthy again the watch returns the breakers it forced open to automatic
    (before, they stayed forced open with no end) and says who changed what."""
    from quality_gates.gateway.runtime import set_traffic

    conn = workspace.conn
    clock = Clock(T0)
    svc = service(workspace, config_for(workspace, receiver.base), clock)

    async def probe(provider: str, timeout: float = 10.0) -> ProbeResult:
        return ProbeResult(provider, True, 5.0)

    svc.pool.probe = probe  # type: ignore[method-assign]
    try:
        put_rollup(conn, ts=T0, provider="bedrock", kind="attempt", count=100, errors=60)
        await svc.run_once()
        before = current_weights(conn, svc.config, "production")
        set_traffic(
            conn,
            environment="production",
            weights={"google": 50.0, "meta": 50.0},
            current=before,
            actor="alice",
            reason="spread the load",
        )
        reports = []
        for _ in range(40):
            clock.now += 2
            reports += (await svc.run_once()).remediation
            if reports:
                break
        (report,) = reports
        assert (report.action, report.state) == ("failback", "superseded")
        assert "alice changed the weights" in report.summary
        assert "bedrock/claude-3-5-haiku" in report.summary
        assert runtime_settings.get(conn, "production", "breaker:bedrock/claude-3-5-haiku") is None
        assert current_weights(conn, svc.config, "production") == {"google": 50.0, "meta": 50.0}
        assert conn.scalar("SELECT actor FROM audit_log ORDER BY seq DESC LIMIT 1") == (
            "auto-remediation"
        )
    finally:
        await svc.close()


async def test_the_watch_never_fails_over_onto_a_forced_open_provider(
    workspace: Workspace, receiver: Receiver
) -> None:
    from quality_gates.gateway.runtime import force_breaker

    conn = workspace.conn
    clock = Clock(T0)
    svc = service(workspace, config_for(workspace, receiver.base), clock)
    try:
        force_breaker(
            conn,
            environment="production",
            deployment="google/gemini-1-5-flash",
            state="open",
            reason="maintenance",
            actor="bob",
        )
        put_rollup(conn, ts=T0, provider="bedrock", kind="attempt", count=100, errors=60)
        (report,) = (await svc.run_once()).remediation
        assert (report.action, report.state) == ("failover", "active")
        weights = current_weights(conn, svc.config, "production")
        assert weights["meta"] == 200.0  # the next in the chain, past the forced-open google
        assert weights["google"] == 100.0  # its own weight; bob's forced breaker keeps it out
    finally:
        await svc.close()
