"""Test support for the web plane: the app on a workspace, keys of each role, an incident."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from tests.conftest import Workspace

from quality_gates import incidents
from quality_gates.config import QualityGatesConfig, load_config
from quality_gates.gateway.keys import create_key
from quality_gates.store import StoreURL


@dataclass
class Keys:
    """One secret per role."""

    operator: str
    admin: str
    client: str


def make_keys(ws: Workspace, prefix: str = "") -> Keys:
    """Create an operator, an admin and a client key."""
    made = {
        role: create_key(ws.conn, name=f"{prefix}{role}-key", role=role, actor="tester")[1]
        for role in ("operator", "admin", "client")
    }
    return Keys(**made)


def web_settings(ws: Workspace, config: QualityGatesConfig | None = None) -> Any:
    """WebAppSettings for the workspace's production environment."""
    from quality_gates.web.app import WebAppSettings

    return WebAppSettings(
        config=config or load_config(ws.config_path).config,
        store_url=StoreURL.parse(ws.db_url, base_dir=ws.root),
        environment="production",
    )


def open_incident(ws: Workspace, title: str = "error_rate > 5%: 12.00% (provider=bedrock)") -> int:
    """A P1 provider incident in production, as the evaluator opens one."""
    config = load_config(ws.config_path).config
    row = incidents.open_incident(
        ws.conn,
        config,
        title=title,
        incident_type="provider",
        severity="P1",
        environment="production",
        group_key="production:provider",
        actor="watch",
        now=time.time(),
    )
    incidents.record_event(
        ws.conn,
        "alert",
        f"error-rate-critical firing: {title}",
        incident_id=int(row["id"]),
        details={"labels": {"provider": "bedrock", "environment": "production"}},
    )
    return int(row["id"])


def gate_run(ws: Workspace, kind: str, verdict: str, headline: str) -> None:
    """A finished gate run in production, as the gates store one."""
    from quality_gates.gates import runs

    run = runs.start(
        ws.conn,
        run_id=runs.new_run_id(kind),
        kind=kind,
        environment="production",
        model_id="claude-3-5-haiku",
        baseline="claude-3-haiku",
        actor="ci",
        inputs={"kind": kind},
    )
    runs.finish(ws.conn, run, status="completed", verdict=verdict, summary={"headline": headline})


def csrf_of(html: str) -> str:
    """The first CSRF token in a page."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    if match is None:
        raise AssertionError("no CSRF token in the page")
    return match.group(1)
