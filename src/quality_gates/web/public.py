"""The public status page's data (`/status`, `/status.json`): what the public may read.

Built by whitelisting, never by filtering: every field below is chosen and formatted here.
Components carry a display name and a status, never a deployment, model id (unless
`web.status_page.show_models`), endpoint or breaker detail. Incidents carry a title made
from their type, an impact made from their severity, the states they went through, and the
notes operators marked public (`incident note --public`); timeline messages written by the
system (which name rules, labels and people) are replaced by fixed sentences, and internal
notes, actors and alert details never leave the store. The emergency banner says which
mode is on and since when, not why or who.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from quality_gates.config import QualityGatesConfig
from quality_gates.incidents import OPEN_STATES, timeline
from quality_gates.store import settings as runtime_settings
from quality_gates.store.db import Connection
from quality_gates.store.registry import list_aliases
from quality_gates.web.components import (
    DEGRADED,
    LABELS,
    MAJOR,
    NO_DATA,
    OPERATIONAL,
    PARTIAL,
    SERVICE,
    Component,
    availability_status,
    components,
    emergency_setting,
    thresholds,
)
from quality_gates.web.uptime import Uptime, UptimeHistory, daily_uptime

EMERGENCY_KEY = "emergency"
MAX_INCIDENTS = 20
TITLES = {
    "provider": "Errors from an AI provider",
    "performance": "Slower responses",
    "quality": "Lower answer quality",
    "infrastructure": "Service infrastructure problem",
    "security": "Security incident",
    "cost": "Cost anomaly",
}
IMPACT = {"P0": "critical", "P1": "major", "P2": "minor", "P3": "none"}
STATE_TEXT = {
    "investigating": "We are investigating the issue.",
    "identified": "The cause has been identified and a fix is being put in place.",
    "monitoring": "A fix is in place and we are monitoring the results.",
    "resolved": "This incident has been resolved.",
}
HEADLINES = {
    OPERATIONAL: "All systems operational",
    DEGRADED: "Degraded performance",
    PARTIAL: "Partial outage",
    MAJOR: "Major outage",
    NO_DATA: "No live data yet",
}
BANNERS = {
    "degraded": (
        "Some answers may come from an earlier response, and requests may wait in a queue "
        "before they are answered."
    ),
    "shutdown": "The service is stopped for emergency maintenance. Please retry later.",
}


def iso(ts: float | None) -> str | None:
    """UTC ISO 8601 with a Z, or None."""
    if ts is None:
        return None
    return (
        datetime.fromtimestamp(float(ts), tz=UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def display_name(config: QualityGatesConfig, component: str) -> str:
    """The public name of a component (`web.status_page.component_names`)."""
    page = config.web.status_page
    if component == SERVICE:
        return page.service_name
    return page.component_names.get(component, component)


def _models(conn: Connection, config: QualityGatesConfig, env: str, component: Component) -> Any:
    if not config.web.status_page.show_models:
        return None
    current = {a.name: a.model_id for a in list_aliases(conn, env)}.get("current")
    if component.id == SERVICE:
        return [current] if current else []
    return sorted({m.id for m in config.models if m.provider == component.id})


def _component(
    conn: Connection,
    config: QualityGatesConfig,
    env: str,
    component: Component,
    uptime: Uptime | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": component.id,
        "name": display_name(config, component.id),
        "group": "service" if component.id == SERVICE else "provider",
        "status": component.status,
        "status_label": LABELS[component.status],
    }
    models = _models(conn, config, env, component)
    if models is not None:
        out["models"] = models
    page = config.web.status_page
    limits = thresholds(config, env)
    out["uptime"] = _uptime(uptime, lambda a: availability_status(a, page, limits))
    return out


def _uptime(uptime: Uptime | None, level: Callable[[float | None], str]) -> dict[str, Any]:
    if uptime is None:
        return {"availability": None, "days_with_data": 0, "days": []}
    return {
        "availability": uptime.availability,
        "days_with_data": uptime.days_with_data,
        "days": [
            {"date": d.date, "availability": d.availability, "status": level(d.availability)}
            for d in uptime.days
        ],
    }


def _updates(conn: Connection, incident_id: int) -> list[dict[str, Any]]:
    """Public updates, newest first, each rewritten from a fixed text unless an operator
    wrote it for the public."""
    out = []
    state = "investigating"
    for event in timeline(conn, incident_id, public_only=True):
        kind = str(event["kind"])
        text: str | None = None
        if kind == "opened":
            text = STATE_TEXT["investigating"]
        elif kind == "note":
            text = str(event["message"])
        elif kind == "state":
            moved = str(event["message"]).rsplit("->", 1)[-1].strip()
            if moved in STATE_TEXT:
                state = moved
                text = STATE_TEXT[moved]
        elif kind == "ack":
            text = "Our on-call team is working on it."
        elif kind == "severity":
            level = str(event["message"]).split("->", 1)[-1].strip()[:2]
            text = f"Impact updated to {IMPACT.get(level, 'unknown')}."
        elif kind == "resolved":
            state = "resolved"
            text = STATE_TEXT["resolved"]
        if text is not None:
            out.append({"at": iso(event["ts"]), "state": state, "text": text})
    out.reverse()
    return out


def _affected(conn: Connection, incident_id: int, providers: list[str]) -> list[str]:
    seen = []
    for event in timeline(conn, incident_id):
        if event["kind"] != "alert":
            continue
        provider = (event["details"].get("labels") or {}).get("provider")
        if provider in providers and provider not in seen:
            seen.append(provider)
    return seen


def public_incidents(
    conn: Connection,
    config: QualityGatesConfig,
    environment: str,
    providers: list[str],
    *,
    now: float,
) -> list[dict[str, Any]]:
    """Open incidents and those resolved within `resolved_days`, newest first."""
    page = config.web.status_page
    if not page.incident_types:
        return []
    types = ", ".join(f"'{t}'" for t in page.incident_types)  # literals from a closed set
    opened = ", ".join(f"'{s}'" for s in OPEN_STATES)
    rows = conn.execute(
        f"SELECT id, type, severity, state, opened_at, resolved_at FROM incidents "
        f"WHERE environment = :env AND type IN ({types}) AND (state IN ({opened}) "
        "OR resolved_at >= :since) ORDER BY opened_at DESC LIMIT :n",
        {"env": environment, "since": now - page.resolved_days * 86400.0, "n": MAX_INCIDENTS},
    )
    out = []
    for row in rows:
        affected = _affected(conn, int(row["id"]), providers)
        state = row["state"] if row["state"] in OPEN_STATES else "resolved"
        out.append(
            {
                "id": int(row["id"]),
                "title": TITLES.get(str(row["type"]), "Service problem"),
                "impact": IMPACT.get(str(row["severity"]), "minor"),
                "status": state,
                "started_at": iso(row["opened_at"]),
                "resolved_at": iso(row["resolved_at"]) if state == "resolved" else None,
                "components": [display_name(config, c) for c in [SERVICE, *affected]],
                "updates": _updates(conn, int(row["id"])),
            }
        )
    return out


# The least the headline may say while a public incident of this impact is open: the page
# never reads "All systems operational" beside an incident above minor.
IMPACT_FLOOR = {"critical": MAJOR, "major": PARTIAL}


def _no_calmer_than_incidents(measured: str, incidents: list[dict[str, Any]]) -> str:
    """The overall status, raised to what open incidents above minor impact say."""
    from quality_gates.web.components import worst

    floors = [
        IMPACT_FLOOR[i["impact"]]
        for i in incidents
        if i.get("status") != "resolved" and i.get("impact") in IMPACT_FLOOR
    ]
    return worst(measured, *floors) if floors else measured


def public_status(
    conn: Connection,
    config: QualityGatesConfig,
    environment: str,
    *,
    now: float | None = None,
    history: UptimeHistory | None = None,
) -> dict[str, Any]:
    """Everything `/status` and `/status.json` show, JSON-ready (`history` keeps the finished
    days' uptime between calls)."""
    now = time.time() if now is None else now
    page = config.web.status_page
    emergency = emergency_setting(runtime_settings.get(conn, environment, EMERGENCY_KEY))
    found = components(conn, config, environment, emergency=emergency, now=now)
    providers = [c.id for c in found if c.id != SERVICE]
    uptime = (
        history.uptime(conn, environment, providers, days=page.uptime_days, now=now)
        if history is not None
        else daily_uptime(conn, environment, providers, days=page.uptime_days, now=now)
    )
    incidents = public_incidents(conn, config, environment, providers, now=now)
    overall = _no_calmer_than_incidents(found[0].status, incidents)
    banner = None
    if emergency is not None:
        mode = str(emergency["mode"])
        banner = {"mode": mode, "text": BANNERS[mode], "since": iso(emergency.get("since"))}
    return {
        "page": {"title": page.title, "updated_at": iso(now)},
        "status": {
            "indicator": overall,
            "description": HEADLINES[overall],
            "affected": [
                {"name": display_name(config, c.id), "status_label": LABELS[c.status]}
                for c in found[1:]
                if c.status not in (OPERATIONAL, NO_DATA)
            ],
        },
        "banner": banner,
        "components": [_component(conn, config, environment, c, uptime.get(c.id)) for c in found],
        "incidents": incidents,
        "levels": {
            "degraded_below": 1.0 - thresholds(config, environment).error_rate,
            "partial_outage_below": page.partial_outage_below,
            "major_outage_below": page.major_outage_below,
        },
        "window_seconds": page.window,
        "uptime_days": page.uptime_days,
        "resolved_days": page.resolved_days,
    }
