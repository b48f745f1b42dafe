"""Registry operations against a real store, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from tests.conftest import Workspace

from quality_gates.config import load_config
from quality_gates.errors import NotFound, RegistryError, UsageError
from quality_gates.registry import (
    Actor,
    alias_drift,
    move_alias,
    promote,
    resolve_model,
    rollback,
    sync_config,
)
from quality_gates.store import audit
from quality_gates.store import registry as sql

ALICE = Actor("alice")


def aliases(ws: Workspace, env: str = "production") -> dict[str, str]:
    return {a.name: a.model_id for a in sql.list_aliases(ws.conn, env)}


def test_sync_seeds_aliases_once_and_records_them(workspace: Workspace) -> None:
    assert aliases(workspace) == {
        "current": "claude-3-5-haiku",
        "previous-stable": "claude-3-haiku",
        "last-known-good": "claude-3-haiku",
        "backup": "gemini-1-5-flash",
    }
    seeds = sql.history(workspace.conn, environment="production", limit=100)
    assert {m.operation for m in seeds} == {"seed"}
    assert {m.source for m in seeds} == {"config"}
    assert set(sql.known_models(workspace.conn)) == {
        "claude-3-5-haiku",
        "claude-3-haiku",
        "gemini-1-5-flash",
        "llama-3-1-70b",
    }


def test_resolve_understands_ids_aliases_and_runbook_placeholders(workspace: Workspace) -> None:
    conn = workspace.conn
    assert resolve_model(conn, "production", "llama-3-1-70b").model_id == "llama-3-1-70b"
    assert resolve_model(conn, "production", "current-model").model_id == "claude-3-5-haiku"
    assert resolve_model(conn, "production", "backup-model").model_id == "gemini-1-5-flash"
    assert resolve_model(conn, "production", "last-known-good").model_id == "claude-3-haiku"
    assert resolve_model(conn, "staging", "production-model").model_id == "claude-3-5-haiku"
    with pytest.raises(NotFound, match="did you mean 'claude-3-haiku'"):
        resolve_model(conn, "production", "claude-3-haiky")


def test_rollback_moves_current_and_previous_stable_atomically(workspace: Workspace) -> None:
    result = rollback(
        workspace.conn,
        environment="production",
        model_ref="current-model",
        previous_ref="previous-stable",
        reason="Incident response rollback",
        actor=ALICE,
    )
    assert (result.from_model, result.to_model) == ("claude-3-5-haiku", "claude-3-haiku")
    assert aliases(workspace)["current"] == "claude-3-haiku"
    assert aliases(workspace)["previous-stable"] == "claude-3-5-haiku"
    moves = sql.history(workspace.conn, environment="production", limit=2)
    assert {(m.alias, m.operation, m.actor, m.source) for m in moves} == {
        ("current", "rollback", "alice", "manual"),
        ("previous-stable", "rollback", "alice", "manual"),
    }
    assert moves[0].operation_id == moves[1].operation_id == result.operation_id
    entry = audit.entries(workspace.conn, action="alias.rollback")[0]
    assert entry.details["reason"] == "Incident response rollback"
    assert audit.verify(workspace.conn).ok
    assert sql.control_version(workspace.conn, "production") == 2


def test_rollback_refuses_when_model_is_not_current(workspace: Workspace) -> None:
    with pytest.raises(RegistryError, match="gemini-1-5-flash is not current in production"):
        rollback(
            workspace.conn,
            environment="production",
            model_ref="gemini-1-5-flash",
            previous_ref="claude-3-haiku",
            reason="x",
            actor=ALICE,
        )
    assert aliases(workspace)["current"] == "claude-3-5-haiku"


def test_rollback_refuses_an_unknown_target(workspace: Workspace) -> None:
    with pytest.raises(NotFound, match="'gpt-9' is neither a model nor an alias"):
        rollback(
            workspace.conn,
            environment="production",
            model_ref="current",
            previous_ref="gpt-9",
            reason="x",
            actor=ALICE,
        )


def test_rollback_needs_a_reason(workspace: Workspace) -> None:
    with pytest.raises(UsageError, match="--reason"):
        rollback(
            workspace.conn,
            environment="production",
            model_ref="current",
            previous_ref="previous-stable",
            reason=" ",
            actor=ALICE,
        )


def test_rollback_to_the_current_model_is_refused(workspace: Workspace) -> None:
    with pytest.raises(RegistryError, match="already current"):
        rollback(
            workspace.conn,
            environment="production",
            model_ref="current",
            previous_ref="claude-3-5-haiku",
            reason="x",
            actor=ALICE,
        )


def test_promote_shifts_previous_stable_current_candidate(workspace: Workspace) -> None:
    promote(
        workspace.conn,
        environment="staging",
        candidate_ref="llama-3-1-70b",
        reason="pipeline APPROVE",
        actor=Actor("ci", "pipeline"),
    )
    assert aliases(workspace, "staging")["current"] == "llama-3-1-70b"
    assert aliases(workspace, "staging")["previous-stable"] == "claude-3-5-haiku"
    assert sql.history(workspace.conn, environment="staging", limit=1)[0].source == "pipeline"


def test_move_alias_with_expectation_refuses_a_stale_view(workspace: Workspace) -> None:
    move_alias(
        workspace.conn,
        environment="production",
        alias="backup",
        model_ref="llama-3-1-70b",
        reason="x",
        actor=ALICE,
    )
    with pytest.raises(RegistryError):
        move_alias(
            workspace.conn,
            environment="production",
            alias="backup",
            model_ref="claude-3-haiku",
            reason="x",
            actor=ALICE,
            expect_model="gemini-1-5-flash",
        )


def test_store_wins_over_config_and_drift_is_reported(workspace: Workspace) -> None:
    rollback(
        workspace.conn,
        environment="production",
        model_ref="current",
        previous_ref="previous-stable",
        reason="x",
        actor=ALICE,
    )
    loaded = load_config(workspace.config_path)
    sync_config(workspace.conn, loaded, Actor("tester", "config"), force=True)
    assert aliases(workspace)["current"] == "claude-3-haiku"
    drift = alias_drift(workspace.conn, loaded.snapshot())
    assert any(d.startswith("production/current: config says claude-3-5-haiku") for d in drift)
