"""`offline` as a user runs it: exit codes by verdict, -o reports, dry run, clear errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from tests.conftest import Workspace
from tests.gates_fakes import KeyedProvider, with_gates, write_dataset
from tests.test_gates_offline import PROVIDER_MODEL, QUIET_GATES

from quality_gates.gates import targets


@pytest.fixture
def gated(sqlite_workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Any:
    ws = sqlite_workspace
    ws.config_path.write_text(with_gates(ws.config_path.read_text(), QUIET_GATES))
    key = write_dataset(ws.root / "data.jsonl", 200)
    provider = KeyedProvider(
        "bedrock",
        key,
        {
            PROVIDER_MODEL["claude-3-5-haiku"]: 0.80,
            PROVIDER_MODEL["claude-3-haiku"]: 0.99,
        },
    )
    monkeypatch.setattr(targets, "default_factory", lambda provider_cfg, models: provider)
    return ws


def test_reject_exits_1_and_writes_every_report_format(gated: Workspace, qg: Any) -> None:
    ws = gated
    out = ws.root / "out"
    args = [
        *ws.cli_args(),
        "offline",
        "--model-id",
        "current-model",
        "--dataset",
        str(ws.root / "data.jsonl"),
        "--baseline",
        "previous-stable",
        "-j",
        "8",
    ]
    for name in ("r.json", "r.jsonl", "r.md", "r.html", "r.junit.xml"):
        args += ["-o", str(out / name)]
    result = qg(*args)
    assert result.code == 1, result.err
    assert "REJECT" in result.out
    summary = json.loads((out / "r.json").read_text())
    assert summary["verdict"] == "REJECT"
    assert len((out / "r.jsonl").read_text().splitlines()) == 400
    assert "# offline gate: REJECT" in (out / "r.md").read_text()
    assert 'class="REJECT"' in (out / "r.html").read_text()
    suite = ET.fromstring((out / "r.junit.xml").read_text())
    assert int(suite.get("failures", "0")) >= 1


def test_json_output_is_the_summary(gated: Workspace, qg: Any) -> None:
    ws = gated
    result = qg(
        *ws.cli_args(),
        "--json",
        "offline",
        "--model-id",
        "previous-stable",
        "--dataset",
        str(ws.root / "data.jsonl"),
        "--limit",
        "50",
    )
    summary = json.loads(result.out)
    assert summary["model"] == "claude-3-haiku"
    assert summary["items"] == 50
    assert result.code == {"APPROVE": 0, "REJECT": 1, "CONDITIONAL": 3}[summary["verdict"]]


def test_dry_run_calls_nothing(gated: Workspace, qg: Any) -> None:
    ws = gated
    result = qg(
        *ws.cli_args(),
        "offline",
        "--model-id",
        "current",
        "--dry-run",
        "--dataset",
        str(ws.root / "data.jsonl"),
    )
    assert result.code == 0, result.err
    assert "Dry run" in result.out
    assert "200 items" in result.out


def test_bad_dataset_and_bad_output_are_one_line_errors(gated: Workspace, qg: Any) -> None:
    ws = gated
    bad = ws.root / "bad.jsonl"
    bad.write_text('{"input": "x", "expected": "y"}\n{oops\n')
    result = qg(*ws.cli_args(), "offline", "--model-id", "current", "--dataset", str(bad))
    assert result.code == 2
    assert "bad.jsonl:2" in result.err
    assert "Traceback" not in result.err
    result = qg(*ws.cli_args(), "offline", "--model-id", "current", "-o", "report.pdf")
    assert result.code == 2
    assert "unknown output format" in result.err


def test_runbook_pipeline_line_resolves_production_model(gated: Workspace, qg: Any) -> None:
    ws = gated
    result = qg(*ws.cli_args(), "--json", "pipeline", "staging", "--model-id",
                "production-model", "--skip-performance", "--dataset",
                str(ws.root / "data.jsonl"))  # fmt: skip
    summary = json.loads(result.out)
    assert summary["model"] == "claude-3-5-haiku"
    assert summary["environment"] == "staging"
    assert [s["stage"] for s in summary["stages"]] == ["offline"]
    assert result.code == {"APPROVE": 0, "REJECT": 1, "CONDITIONAL": 3}[summary["verdict"]]


def test_canary_manual_steps_from_the_cli(gated: Workspace, qg: Any) -> None:
    ws = gated
    result = qg(*ws.cli_args(), "canary", "--rollback")
    assert result.code == 1
    assert "no canary is active in production" in result.err
    from quality_gates.gates import canary

    canary.set_share(ws.conn, "production", model="gemini-1-5-flash", percent=5,
                     baseline="claude-3-5-haiku", run_id=None, actor="t", reason="t",
                     action="start")  # fmt: skip
    result = qg(*ws.cli_args(), "canary", "--update-traffic", "25")
    assert result.code == 0, result.err
    assert "gemini-1-5-flash at 25%" in result.out
    result = qg(*ws.cli_args(), "--json", "canary", "--rollback")
    assert json.loads(result.out)["canary"]["percent"] == 0.0


def test_performance_with_no_telemetry_exits_4(gated: Workspace, qg: Any) -> None:
    ws = gated
    result = qg(*ws.cli_args(), "performance", "--model-id", "current-model",
                "--environment", "production", "--duration", "5")  # fmt: skip
    assert result.code == 4
    assert "no requests" in result.out
