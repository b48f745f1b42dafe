"""The runbook's placeholders `rolled-back-model` and `affected-model` resolve to models."""

from __future__ import annotations

import time

import pytest
from tests.conftest import Workspace

from quality_gates import incidents
from quality_gates.alerts._rules import AlertState
from quality_gates.alerts._store import save_state
from quality_gates.config import load_config
from quality_gates.errors import NotFound
from quality_gates.registry import Actor, resolve_model, rollback


def test_rolled_back_model_is_where_the_last_rollback_went(workspace: Workspace) -> None:
    conn = workspace.conn
    with pytest.raises(NotFound, match="no rollback is recorded in production"):
        resolve_model(conn, "production", "rolled-back-model")
    rollback(
        conn,
        environment="production",
        model_ref="current-model",
        previous_ref="previous-stable",
        reason="drill",
        actor=Actor("tester"),
    )
    assert resolve_model(conn, "production", "rolled-back-model").model_id == "claude-3-haiku"


def _incident_with_alert(ws: Workspace, labels: dict[str, str]) -> int:
    config = load_config(ws.config_path).config
    now = time.time()
    with ws.conn.write():
        row = incidents.open_incident(
            ws.conn,
            config,
            title="t",
            incident_type="provider",
            severity="P2",
            environment="production",
            group_key="production:service",
            actor="watch",
            now=now,
        )
        save_state(
            ws.conn,
            AlertState(
                fingerprint="f" * 32,
                rule="r",
                labels={"environment": "production", **labels},
                environment="production",
                metric="error_rate",
                severity="critical",
                type="provider",
                state="firing",
                value=0.5,
                threshold=0.05,
                active_since=now,
                updated_at=now,
                summary="s",
                fired_at=now,
                incident_id=int(row["id"]),
            ),
        )
    return int(row["id"])


def test_affected_model_needs_an_open_incident_that_names_one(workspace: Workspace) -> None:
    conn = workspace.conn
    with pytest.raises(NotFound, match="no incident is open in production"):
        resolve_model(conn, "production", "affected-model")
    _incident_with_alert(workspace, {"model_id": "gemini-1-5-flash"})
    assert resolve_model(conn, "production", "affected-model").model_id == "gemini-1-5-flash"


def test_affected_model_of_a_provider_alert_is_the_current_model_on_it(
    workspace: Workspace,
) -> None:
    _incident_with_alert(workspace, {"provider": "bedrock"})
    assert resolve_model(workspace.conn, "production", "affected-model").model_id == (
        "claude-3-5-haiku"
    )
