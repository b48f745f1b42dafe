"""Drills without a running stack: targets, the drill-timescale config, the run records,
and the input a drill refuses before starting anything."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.conftest import Workspace

from quality_gates.config import load_config
from quality_gates.drills import store, targets
from quality_gates.drills._config import DRILL_MARK, drill_config


def test_verdicts_hold_each_figure_to_the_runbook_and_the_project() -> None:
    figures = {"detection_s": 1.5, "recovery_s": 42.0, "failed_pct": 0.0, "failover_s": None}
    rows = targets.verdicts(figures, ("detection_s", "recovery_s", "failed_pct", "failover_s"))
    assert rows["detection_s"]["runbook_met"]
    assert rows["detection_s"]["project_met"]
    assert rows["recovery_s"]["runbook_met"] is True
    assert rows["recovery_s"]["project_met"] is False
    assert rows["failover_s"]["runbook_met"] is False  # it never happened
    assert rows["failover_s"]["project_target"] is None
    assert targets.missed(rows, "runbook") == ["failover_s"]
    assert targets.missed(rows, "project") == ["recovery_s"]


def test_a_loss_of_exactly_one_percent_misses_the_runbook_target() -> None:
    rows = targets.verdicts({"failed_pct": 1.0}, ("failed_pct",))
    assert rows["failed_pct"]["runbook_met"] is False


def test_drill_config_shortens_timescales_and_marks_incidents(
    sqlite_workspace: Workspace,
) -> None:
    config = load_config(sqlite_workspace.config_path).config
    tuned = drill_config(config, "staging", ports={"bedrock": 1234}, answer_key=Path("/x.jsonl"))
    c = tuned.config
    assert c.alerts.evaluation_interval == 0.5
    assert all(r.window <= 10 and r.for_ <= 1 for r in c.alerts.rules)
    assert all(r.summary and r.summary.startswith(DRILL_MARK) for r in c.alerts.rules)
    assert not any(r.type == "cost" or r.metric == "cache_hit_rate" for r in c.alerts.rules)
    assert c.provider("bedrock").port == 1234  # type: ignore[union-attr]
    assert c.gateway.auth == "disabled"
    assert c.remediation.policy("staging").cooldown == 0
    assert c.remediation.policy("staging").failback.healthy_for <= 3
    assert not c.remediation.policy("production").enabled
    assert any("failback.healthy_for" in line for line in tuned.tuning)
    assert config.routines.jobs  # the workspace's scheduled jobs...
    assert c.routines.jobs == []  # ...are never run by the drill's watch
    assert tuned.substitutions == []  # the starter's providers are simulators already


def test_a_real_provider_is_replaced_by_a_simulator_of_its_protocol(
    sqlite_workspace: Workspace,
) -> None:
    config = load_config(sqlite_workspace.config_path).config
    data = config.model_dump(mode="json", by_alias=True, exclude_unset=True)
    data["providers"][1] = {"name": "google", "kind": "gemini", "credentials": {"api_key": "K"}}
    from quality_gates.config import QualityGatesConfig

    real = QualityGatesConfig.model_validate(data)
    tuned = drill_config(real, "staging", ports={}, answer_key=Path("/x.jsonl"))
    google = tuned.config.provider("google")
    assert google is not None
    assert google.kind == "simulator"
    assert google.protocol == "gemini"
    assert tuned.substitutions == [
        "google: gemini provider replaced by a simulator speaking the gemini protocol"
    ]


def test_runs_are_recorded_finished_listed_and_audited(sqlite_workspace: Workspace) -> None:
    conn = sqlite_workspace.conn
    run_id = store.record_run(
        conn, scenario="provider-outage", environment="staging", provider="bedrock", actor="t"
    )
    assert store.list_runs(conn)[0]["status"] == "running"
    verdicts = targets.verdicts({"detection_s": 40.0}, ("detection_s",))
    store.finish_run(
        conn,
        run_id,
        status="missed",
        actor="t",
        incident_id=None,
        figures={"detection_s": 40.0},
        verdicts=verdicts,
        details={"load": {}},
        now=time.time(),
    )
    (row,) = store.list_runs(conn, scenario="provider-outage")
    assert row["status"] == "missed"
    assert row["figures"] == {"detection_s": 40.0}
    assert row["verdicts"]["detection_s"]["runbook_met"] is False
    actions = [
        (r["action"], json.loads(r["details"]))
        for r in conn.execute("SELECT action, details FROM audit_log ORDER BY seq")
    ]
    assert ("drill.start", {"run": run_id, "provider": "bedrock"}) in actions
    assert any(a == "drill.finish" and d["missed"] == ["detection_s"] for a, d in actions)
    with pytest.raises(ValueError):
        store.finish_run(
            conn,
            run_id,
            status="great",
            actor="t",
            incident_id=None,
            figures={},
            verdicts={},
            details={},
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["drill", "provider-crash"], "unknown scenario 'provider-crash'; use one of"),
        (["drill", "provider-outage", "--provider", "azure"], "unknown provider 'azure'"),
        (["drill", "provider-outage", "-e", "prod"], "unknown environment 'prod'"),
        (["drill", "provider-outage", "--duration", "soon"], "--duration"),
        (["drill", "latency-spike", "--rate", "0"], "--rate 0"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    qg, sqlite_workspace: Workspace, args: list[str], message: str
) -> None:
    result = qg(*sqlite_workspace.cli_args(), *args)
    assert result.code == 2, result.out + result.err
    assert message in result.err
    assert "Traceback" not in result.err
    assert store.list_runs(sqlite_workspace.conn) == []  # nothing started


def test_a_watch_holding_the_lease_stops_the_drill_with_exit_4(
    qg, sqlite_workspace: Workspace
) -> None:
    from quality_gates.store._leader import WATCH_LEASE, acquire

    acquire(sqlite_workspace.conn, WATCH_LEASE, "ops-host:4242:abc", 60.0, time.time())
    result = qg(*sqlite_workspace.cli_args(), "drill", "provider-outage")
    assert result.code == 4, result.out + result.err
    assert "ops-host:4242:abc" in result.err
    assert "holds the evaluator lease" in result.err


def test_drill_list_says_when_there_is_nothing_yet(qg, sqlite_workspace: Workspace) -> None:
    result = qg(*sqlite_workspace.cli_args(), "drill", "list")
    assert result.code == 0
    assert "no drill runs yet" in result.out


def test_a_scenarios_own_project_target_replaces_the_general_one() -> None:
    rows = targets.verdicts({"detection_s": 4.0, "failover_s": 11.0}, ("detection_s", "failover_s"),
                            "latency-spike")  # fmt: skip
    assert rows["detection_s"]["project_met"] is True  # <= 5 s for a latency spike
    assert rows["failover_s"]["project_target"] == "<= 10 s (traffic moved)"
    assert rows["failover_s"]["project_met"] is False
    general = targets.verdicts({"detection_s": 4.0}, ("detection_s",), "provider-outage")
    assert general["detection_s"]["project_met"] is False  # <= 2 s


def test_two_provider_outage_takes_the_next_provider_of_the_chain_or_refuses(
    sqlite_workspace: Workspace,
) -> None:
    from quality_gates.drills._run import DrillCannotRun, _chain_providers

    loaded = load_config(sqlite_workspace.config_path)
    chain = _chain_providers(loaded, "production", "claude-3-5-haiku", "bedrock", 2)
    assert chain == ["bedrock", "google"]  # meta is left to serve
    assert _chain_providers(loaded, "production", "claude-3-5-haiku", "bedrock", 1) == ["bedrock"]
    with pytest.raises(DrillCannotRun, match="would leave none to serve"):
        # development's chain is claude-3-5-haiku -> llama-3-1-70b: two providers only
        _chain_providers(loaded, "development", "claude-3-5-haiku", "bedrock", 2)
