"""The registry commands as a user types them: output, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Workspace


def test_status_shows_aliases_chains_and_thresholds(qg, sqlite_workspace: Workspace) -> None:
    result = qg(*sqlite_workspace.cli_args(), "status", "-e", "production")
    assert result.code == 0, result.err
    assert "current           claude-3-5-haiku" in result.out
    assert "failover: claude-3-5-haiku -> gemini-1-5-flash -> llama-3-1-70b" in result.out
    assert "P95 < 1500 ms" in result.out
    assert "errors < 2%" in result.out


def test_status_json_is_machine_readable(qg, sqlite_workspace: Workspace) -> None:
    result = qg(*sqlite_workspace.cli_args(), "--json", "status", "--model-id", "current-model")
    assert result.code == 0
    data = json.loads(result.out)
    assert data["model_ref"] == {
        "given": "current-model",
        "alias": "current",
        "model": "claude-3-5-haiku",
    }
    production = next(e for e in data["environments"] if e["name"] == "production")
    assert {a["alias"] for a in production["aliases"]} == {"current"}
    assert production["thresholds"]["p95_latency_ms"] == 1500.0


def test_rollback_as_in_the_runbook(qg, simulated_workspace: Workspace) -> None:
    sqlite_workspace = simulated_workspace
    result = qg(
        *sqlite_workspace.cli_args(),
        "rollback",
        "--model-id",
        "current-model",
        "--previous-model",
        "previous-stable",
        "--reason",
        "Incident response rollback",
    )
    assert result.code == 0, result.err
    assert "Rolled back production" in result.out
    assert "current          claude-3-5-haiku -> claude-3-haiku" in result.out
    assert "previous-stable  claude-3-haiku -> claude-3-5-haiku" in result.out
    assert "target check: bedrock: 3/3 probes passed" in result.out
    history = qg(*sqlite_workspace.cli_args(), "history", "--json", "-n", "2")
    moves = json.loads(history.out)
    assert {m["operation"] for m in moves} == {"rollback"}
    assert moves[0]["reason"] == "Incident response rollback"


def test_promote_makes_a_model_current_and_rollback_undoes_it(
    qg, simulated_workspace: Workspace
) -> None:  # type: ignore[no-untyped-def]
    args = simulated_workspace.cli_args()
    refused = qg(*args, "promote", "--model-id", "llama-3-1-70b", "--reason", "x", "--gate-run",
                 "offl-nosuchrun")  # fmt: skip
    assert refused.code == 1
    assert "--gate-run offl-nosuchrun: no such gate run" in refused.err
    done = qg(*args, "promote", "--model-id", "llama-3-1-70b", "--reason", "better and cheaper")
    assert done.code == 0, done.err
    assert "current          claude-3-5-haiku -> llama-3-1-70b" in done.out
    assert "previous-stable  claude-3-haiku -> claude-3-5-haiku" in done.out
    again = qg(*args, "promote", "--model-id", "current-model", "--reason", "x")
    assert again.code == 1
    assert "already current" in again.err
    back = qg(*args, "rollback", "--model-id", "current-model", "--previous-model",
              "previous-stable", "--reason", "undo")  # fmt: skip
    assert back.code == 0, back.err
    assert "current          llama-3-1-70b -> claude-3-5-haiku" in back.out


def test_rollback_of_a_model_that_is_not_current_exits_1(qg, sqlite_workspace: Workspace) -> None:
    result = qg(
        *sqlite_workspace.cli_args(),
        "rollback",
        "--model-id",
        "llama-3-1-70b",
        "--previous-model",
        "claude-3-haiku",
        "--reason",
        "x",
    )
    assert result.code == 1
    assert "llama-3-1-70b is not current in production" in result.err
    assert "Traceback" not in result.err


def test_rollback_to_an_unknown_model_exits_1_and_suggests(qg, sqlite_workspace: Workspace) -> None:
    result = qg(
        *sqlite_workspace.cli_args(),
        "rollback",
        "--model-id",
        "current",
        "--previous-model",
        "claude-3-haiku-old",
        "--reason",
        "x",
    )
    assert result.code == 1
    assert "did you mean 'claude-3-haiku'" in result.err


def test_unknown_environment_is_a_usage_error(qg, sqlite_workspace: Workspace) -> None:
    result = qg(
        *sqlite_workspace.cli_args(),
        "rollback",
        "--model-id",
        "current",
        "--previous-model",
        "backup",
        "--reason",
        "x",
        "-e",
        "prod",
    )
    assert result.code == 2
    assert "unknown environment 'prod' (did you mean 'production'?)" in result.err


def test_missing_required_option_is_exit_2(qg, sqlite_workspace: Workspace) -> None:
    result = qg(*sqlite_workspace.cli_args(), "rollback", "--model-id", "current")
    assert result.code == 2
    assert "--previous-model" in result.err


def test_audit_verify_and_list(qg, simulated_workspace: Workspace) -> None:
    sqlite_workspace = simulated_workspace
    qg(
        *sqlite_workspace.cli_args(),
        "rollback",
        "--model-id",
        "current",
        "--previous-model",
        "backup",
        "--reason",
        "drill",
        "--actor",
        "bob",
    )
    verify = qg(*sqlite_workspace.cli_args(), "audit", "verify")
    assert verify.code == 0
    assert verify.out.startswith("OK: 2 entries")
    listing = json.loads(qg(*sqlite_workspace.cli_args(), "audit", "list", "--json").out)
    assert listing[0]["action"] == "alias.rollback"
    assert listing[0]["actor"] == "bob"
    sqlite_workspace.conn.execute("UPDATE audit_log SET actor = 'eve' WHERE seq = 2")
    tampered = qg(*sqlite_workspace.cli_args(), "audit", "verify")
    assert tampered.code == 1
    assert "entry 2 edited" in tampered.out


def test_config_get_set_and_validate(qg, sqlite_workspace: Workspace) -> None:
    args = sqlite_workspace.cli_args()
    assert (
        qg(*args, "config", "get", "environments.production.thresholds.p95_latency_ms").out.strip()
        == "1500.0"
    )
    changed = qg(*args, "config", "set", "environments.production.routing", "priority")
    assert changed.code == 0, changed.err
    assert "'weighted' -> 'priority'" in changed.out
    assert qg(*args, "config", "get", "environments.production.routing").out.strip() == "priority"
    assert (
        qg(*args, "audit", "list", "--action", "config.set", "--json").out.count("config.set") == 1
    )
    valid = qg(*args, "config", "validate")
    assert valid.code == 0
    assert valid.out.startswith("valid:")
    listing = qg(*args, "config", "list", "providers")
    assert "providers.bedrock.kind = 'simulator'" in listing.out


def test_config_set_to_an_invalid_value_writes_nothing_and_exits_2(
    qg, sqlite_workspace: Workspace
) -> None:
    before = sqlite_workspace.config_path.read_bytes()
    result = qg(
        *sqlite_workspace.cli_args(),
        "config",
        "set",
        "environments.production.aliases.current",
        "gpt-7",
    )
    assert result.code == 2
    assert "unknown model 'gpt-7'" in result.err
    assert sqlite_workspace.config_path.read_bytes() == before


def test_init_writes_a_config_that_validates_and_refuses_to_overwrite(qg, tmp_path: Path) -> None:
    result = qg("init", "--dir", str(tmp_path / "new"))
    assert result.code == 0, result.err
    assert (tmp_path / "new" / "quality-gates.yaml").is_file()
    assert (tmp_path / "new" / ".quality-gates" / "state.db").is_file()
    again = qg("init", "--dir", str(tmp_path / "new"))
    assert again.code == 2
    assert "--force" in again.err
    status = qg("status", cwd=tmp_path / "new" / ".quality-gates")  # found in a parent folder
    assert status.code == 0
    assert "claude-3-5-haiku" in status.out


def test_no_config_anywhere_says_how_to_make_one(qg, tmp_path: Path) -> None:
    result = qg("status", cwd=tmp_path)
    assert result.code == 2
    assert "quality-gates init" in result.err


def test_rollback_onto_a_provider_in_outage_is_refused_unless_forced(
    qg, simulated_workspace: Workspace
) -> None:  # type: ignore[no-untyped-def]
    args = simulated_workspace.cli_args()
    down = qg(*args, "simulate", "fault", "--provider", "bedrock", "--outage", "on")
    assert down.code == 0, down.err
    move = ("rollback", "--model-id", "current-model", "--previous-model", "last-known-good")
    refused = qg(*args, *move, "--reason", "Quality degradation detected")
    assert refused.code == 1
    assert "rollback to claude-3-haiku refused: the target is not healthy: bedrock: 3 of 3" in (
        refused.err.replace("\n", " ")
    )
    assert "--force" in refused.err
    current = simulated_workspace.conn.scalar(
        "SELECT model_id FROM aliases WHERE environment = 'production' AND name = 'current'"
    )
    assert current == "claude-3-5-haiku"
    forced = qg(*args, *move, "--reason", "we know", "--force", "--json")
    assert forced.code == 0, forced.err
    assert json.loads(forced.out)["forced"] is True
    entry = json.loads(qg(*args, "audit", "list", "--json").out)[0]
    assert entry["action"] == "alias.rollback"
    assert "forced past a failed target check" in json.dumps(entry)


def test_weights_never_override_a_rollback(qg, simulated_workspace: Workspace) -> None:  # type: ignore[no-untyped-def]
    """Issue 16: after a failover, a rollback to gemini and the failback, `current` named
    gemini-1-5-flash and every request went to claude-3-haiku on bedrock. The failback now
    writes back the weights from before (every provider keeps its own), and every command
    that moves traffic prints the route the gateway takes for each alias."""
    args = simulated_workspace.cli_args()
    out = qg(*args, "failover", "--from", "bedrock", "--to", "google", "--reason", "outage")
    assert out.code == 0, out.err
    assert "route: current -> claude-3-5-haiku: google/gemini-1-5-flash 100%" in out.out
    drained = qg(*args, "rollback", "--model-id", "current", "--previous-model",
                 "last-known-good", "--reason", "x")  # fmt: skip
    assert drained.code == 0, drained.err  # claude-3-haiku is on bedrock, drained: said
    said = " ".join((drained.out + drained.err).split())
    assert "leave bedrock 0% of its models' requests, so claude-3-haiku would answer 0%" in said
    assert "route: current -> claude-3-haiku: google/gemini-1-5-flash 100%" in said
    moved = qg(*args, "rollback", "--model-id", "current", "--previous-model", "backup",
               "--reason", "provider outage")  # fmt: skip
    assert moved.code == 0, moved.err
    assert "route: current -> gemini-1-5-flash: google 100%; chain llama-3-1-70b" in moved.out
    back = qg(*args, "failback", "--provider", "bedrock", "--mode", "immediate", "--pause", "0")
    assert back.code == 0, back.out + back.err
    assert "route: current -> gemini-1-5-flash: google 100%" in back.out
    assert "yet" not in back.err
    left_out = qg(*args, "config", "set", "--traffic-distribution", "bedrock:100")
    assert left_out.code == 0, left_out.err
    said = " ".join((left_out.out + left_out.err).split())
    assert "route: current -> gemini-1-5-flash: bedrock/claude-3-haiku 100%" in said
    assert "`current` names gemini-1-5-flash; bedrock/claude-3-haiku 100% of its requests" in (said)
    assert "the weights bedrock:100 leave google 0% of its models' requests" in said
    reset = qg(*args, "config", "set", "--traffic-distribution", "reset")
    assert "route: current -> gemini-1-5-flash: google 100%" in reset.out


def test_status_never_says_ok_when_no_evaluator_looked(qg, sqlite_workspace: Workspace) -> None:  # type: ignore[no-untyped-def]
    result = qg(*sqlite_workspace.cli_args(), "status")
    assert result.code == 0, result.err
    first = result.out.splitlines()[0]
    assert first.startswith("UNWATCHED")
    assert "no alert evaluator has run" in first
    assert "0 alerts firing" in first
