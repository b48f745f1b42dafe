"""Each drill's fault opens exactly one incident, at the runbook's severity, and it resolves.

The drills' own stack (simulators, gateway, embedded watch) on a real SQLite store, each
fault held for a few seconds and the recovery wait bounded by $QG_MAX_DURATION. Severities,
by the runbook's table: one provider down or slow is a single provider issue (P2); a quality
regression of the current model is a degradation the rollback answers (P2); every provider
down is a complete outage (P0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_workspace

from quality_gates.config import load_config
from quality_gates.drills import DrillOptions, run_drill
from quality_gates.store import StoreURL

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# scenario -> (fault seconds, the incident's severity)
EXPECTED = {
    "provider-outage": (4.0, "P2"),
    "latency-spike": (6.0, "P2"),
    "quality-regression": (7.0, "P2"),  # a significant drop needs samples
    "two-provider-outage": (4.0, "P1"),  # several providers
    "multi-provider-outage": (4.0, "P0"),
}


@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_a_drill_fault_opens_one_incident_at_its_severity(
    scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QG_MAX_DURATION", "20s")
    duration, severity = EXPECTED[scenario]
    ws = make_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}")
    try:
        result = run_drill(
            ws.conn,
            load_config(ws.config_path),
            StoreURL.parse(ws.db_url, base_dir=ws.root),
            DrillOptions(scenario, actor="tester", duration=duration),
        )
        opened: list[dict[str, Any]] = ws.conn.execute(
            "SELECT id, severity, title, state, type FROM incidents WHERE opened_at >= :t "
            "ORDER BY id",
            {"t": result.started_at},
        )
        alerts = ws.conn.execute(
            "SELECT rule, labels, to_state, incident_id FROM alert_events ORDER BY id"
        )
    finally:
        ws.database.close_shared()
    print(f"\n{scenario}: {json.dumps([dict(i) for i in opened])}")
    for event in alerts:
        print(f"  {event['rule']} {event['labels']} -> {event['to_state']} #{event['incident_id']}")
    assert len(opened) == 1, opened
    (incident,) = opened
    assert incident["severity"] == severity
    assert incident["title"].startswith("[drill] ")
    assert "(environment=" not in incident["title"]  # a sentence, not the raw expression
    assert incident["state"] == "resolved"
    assert result.incident is not None
    assert result.incident["id"] == incident["id"]
