"""The watch plane's commands as a user runs them: watch, incident, silence, rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from tests.conftest import Workspace
from tests.telemetry_rows import put_traffic


def test_rules_export_writes_a_file_promtool_accepts(
    sqlite_workspace: Workspace, qg, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    target = tmp_path / "rules.yml"
    result = qg(
        *sqlite_workspace.cli_args(), "rules", "export", "--format", "prometheus", "-o", str(target)
    )
    assert result.code == 0, result.err
    check = subprocess.run(
        ["promtool", "check", "rules", str(target)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout
    text = target.read_text()
    assert "alert: error-rate-critical" in text
    assert "keep_firing_for: 1m" in text
    assert "qg:slo_errors_per_request:ratio_rate1h" in text
    assert "quality-score-decrease-info" in text.split("groups:")[0]  # listed as not exported


def test_rules_list_shows_slo_burn_windows(sqlite_workspace: Workspace, qg) -> None:  # type: ignore[no-untyped-def]
    result = qg(*sqlite_workspace.cli_args(), "rules", "list", "--json")
    assert result.code == 0, result.err
    names = {r["name"] for r in json.loads(result.out)}
    assert {
        "error-rate-critical",
        "slo-availability-burn-1h-5m",
        "slo-availability-burn-3d-6h",
    } <= names


def test_silence_add_list_expire(sqlite_workspace: Workspace, qg) -> None:  # type: ignore[no-untyped-def]
    args = sqlite_workspace.cli_args()
    added = qg(
        *args,
        "silence",
        "add",
        "provider=bedrock",
        "alertname=~p95.*",
        "-m",
        "maintenance",
        "-d",
        "2h",
        "--json",
    )
    assert added.code == 0, added.err
    silence = json.loads(added.out)
    assert silence["state"] == "active"
    assert silence["matchers"] == ["provider=bedrock", "alertname=~p95.*"]
    listed = json.loads(qg(*args, "silence", "list", "--json").out)
    assert [s["id"] for s in listed] == [silence["id"]]
    assert qg(*args, "silence", "expire", str(silence["id"])).code == 0
    assert json.loads(qg(*args, "silence", "list", "--json").out) == []
    again = qg(*args, "silence", "expire", str(silence["id"]))
    assert again.code == 1
    assert "already expired" in again.err
    audit = qg(*args, "audit", "list", "--action", "silence.", "--json")
    assert [e["action"] for e in json.loads(audit.out)] == ["silence.expire", "silence.add"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["provider"], "not a matcher"),
        (["provider=bedrock", "-d", "40d"], "at most 30d"),
        (["provider=bedrock", "-m", " "], "needs --comment"),
    ],
)
def test_bad_silences_get_one_clear_line(
    sqlite_workspace: Workspace, qg, argv: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    extra = [] if "-m" in argv else ["-m", "why"]
    result = qg(*sqlite_workspace.cli_args(), "silence", "add", *argv, *extra)
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err


def test_watch_once_opens_an_incident_and_the_incident_commands_close_it(
    sqlite_workspace: Workspace, qg, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    args = sqlite_workspace.cli_args()
    now = time.time()
    put_traffic(sqlite_workspace.conn, ts=now - 60, error_rate=0.3)
    put_traffic(sqlite_workspace.conn, ts=now, error_rate=0.3)
    result = qg(*args, "watch", "--once", "--json")
    assert result.code == 1, result.err  # a critical alert is firing
    report = json.loads(result.out)
    assert report["leader"] is True
    assert any(a["rule"] == "error-rate-critical" for a in report["alerts"])
    (incident,) = report["incidents"]
    assert incident["severity"] == "P1"
    # the starter's channels refer to unset variables: recorded as skipped, with the reason
    skipped = [n for n in report["notifications"] if n["status"] == "skipped"]
    assert skipped
    assert all("is not set" in n["last_error"] for n in skipped)
    number = str(incident["id"])
    listed = qg(*args, "incident", "list")
    assert listed.code == 0
    assert number in listed.out
    assert qg(*args, "incident", "ack", number, "--actor", "alice").code == 0
    assert (
        qg(*args, "incident", "note", number, "rolled back to claude-3-haiku", "--public").code == 0
    )
    resolved = qg(
        *args,
        "incident",
        "resolve",
        number,
        "--reason",
        "provider recovered",
        "--root-cause",
        "upstream 5xx",
    )
    assert resolved.code == 0, resolved.err
    shown = json.loads(qg(*args, "incident", "show", number, "--json").out)
    assert shown["state"] == "resolved"
    kinds = [e["kind"] for e in shown["timeline"]]
    assert kinds[0] == "opened"
    assert kinds[-3:] == ["ack", "note", "resolved"]
    review_path = tmp_path / "review.md"
    review = qg(*args, "incident", "postmortem", number, "-o", str(review_path), "--json")
    assert review.code == 0, review.err
    data = json.loads(review.out)
    assert data["impact"]["failed_requests"] > 0
    assert set(data["impact"]["providers"]) == {"bedrock", "google", "meta"}
    assert data["times"]["response_seconds"] is not None
    text = review_path.read_text()
    for heading in ("## Times", "## Impact", "## Timeline", "## Root cause", "## Action items"):
        assert heading in text
    assert "upstream 5xx" in text
    assert json.loads(qg(*args, "incident", "show", number, "--json").out)["state"] == "postmortem"


def test_incident_commands_on_a_missing_incident_exit_1_naming_it(
    sqlite_workspace: Workspace, qg
) -> None:  # type: ignore[no-untyped-def]
    result = qg(*sqlite_workspace.cli_args(), "incident", "ack", "42")
    assert result.code == 1
    assert "no incident #42" in result.err


def test_watch_once_on_a_quiet_system_exits_0(sqlite_workspace: Workspace, qg) -> None:  # type: ignore[no-untyped-def]
    put_traffic(sqlite_workspace.conn, ts=time.time(), error_rate=0.0)
    result = qg(*sqlite_workspace.cli_args(), "watch", "--once")
    assert result.code == 0, result.err
    assert "No alert is pending or firing." in result.out


def test_incident_open_declares_one_that_affected_model_then_names(
    sqlite_workspace: Workspace, qg
) -> None:  # type: ignore[no-untyped-def]
    args = sqlite_workspace.cli_args()
    opened = qg(
        *args,
        *("incident", "open", "--severity", "P1", "--type", "quality", "--json"),
        *("--model-id", "current-model", "--title", "answers went wrong"),
    )
    assert opened.code == 0, opened.err
    facts = json.loads(opened.out)
    assert facts["model_id"] == "claude-3-5-haiku"
    shown = qg(*args, "status", "--model-id", "affected-model", "--environment", "production")
    assert f"affected-model (incident #{facts['incident']}) -> claude-3-5-haiku" in shown.out
    again = qg(*args, "incident", "open", "--severity", "P2", "--title", "same again")
    assert again.code == 1
    assert f"incident #{facts['incident']} is already open" in again.err
    listed = qg(*args, "incident", "show", str(facts["incident"]), "--json")
    timeline = json.loads(listed.out)["timeline"]
    assert timeline[0]["kind"] == "opened"
    assert "answers went wrong" in timeline[0]["message"]
    bad = qg(*args, "incident", "open", "--severity", "P1", "--title", "x", "--provider", "nope")
    assert bad.code == 2
    assert "--provider 'nope' is not in the config" in bad.err


def test_max_duration_caps_load_and_canary_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    from quality_gates.units import capped_duration

    assert capped_duration(300.0) == 300.0
    monkeypatch.setenv("QG_MAX_DURATION", "3s")
    assert capped_duration(300.0) == 3.0
    assert capped_duration(1.5) == 1.5


def test_incident_list_shows_bracketed_titles_as_written(sqlite_workspace: Workspace, qg) -> None:  # type: ignore[no-untyped-def]
    args = sqlite_workspace.cli_args()
    opened = qg(*args, "incident", "open", "--severity", "P3", "--title", "[drill] probe [red]x")
    assert opened.code == 0, opened.err
    listed = qg(*args, "incident", "list")
    assert "[drill] probe [red]x" in listed.out
