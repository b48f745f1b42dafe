"""The post-incident review document: timeline, detection/response/recovery times, impact
measured from telemetry, and the root cause and action items left for people to fill in."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_gates import incidents
from quality_gates.notify._channels import iso
from quality_gates.signals._windows import Aggregate, Window, not_2xx, read_window
from quality_gates.store import audit
from quality_gates.store.db import Connection
from quality_gates.units import format_duration

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

MIN_BASELINE = 900.0
TO_FILL = "_To be filled in._"


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else max(0.0, end - start)


def _sum(series: dict[Any, Aggregate]) -> Aggregate:
    total = Aggregate()
    for agg in series.values():
        total.merge(agg)
    return total


def review(
    conn: Connection, incident_id: int, *, lookback: float = 60.0, now: float | None = None
) -> dict[str, Any]:
    """Everything the review document says, as data. Impact starts at the first affected
    request (one not answered 2xx) within the `lookback` before the first alert's condition
    held; without request rows, `lookback` before it but never before the first telemetry
    (so never before anything happened)."""
    now = time.time() if now is None else now
    row = incidents.get_incident(conn, incident_id)
    detected = float(row["detected_at"])
    environment = str(row["environment"])
    first_bad = conn.scalar(
        "SELECT MIN(ts) FROM requests WHERE environment = :env AND ts >= :a AND ts <= :b "
        "AND status <> 'ok'",
        {"env": environment, "a": detected - lookback, "b": detected},
    )
    if first_bad is not None:
        start = float(first_bad)
    else:  # no request row to go by: the rule's window, but not before the first telemetry
        first_minute = conn.scalar(
            "SELECT MIN(minute) FROM rollups WHERE environment = :env", {"env": environment}
        )
        floor = float(first_minute) * 60.0 if first_minute is not None else detected
        start = max(detected - lookback, min(floor, detected))
    end = float(row["mitigated_at"] or row["resolved_at"] or now)
    during = read_window(conn, Window(start, max(end, start + 1.0), now), environment=environment)
    length = max(end - start, MIN_BASELINE)
    before = read_window(conn, Window(start - length, start, now), environment=environment)
    requests, baseline = _sum(during.requests), _sum(before.requests)
    scale = max(end - start, 1.0) / length
    keys = conn.execute(
        "SELECT key_name, COUNT(*) AS failed FROM requests WHERE environment = :env AND ts >= :a "
        "AND ts <= :b AND status = 'error' GROUP BY key_name ORDER BY failed DESC",
        {"env": environment, "a": start, "b": end},
    )
    events = incidents.timeline(conn, incident_id)
    providers = set()
    for event in events:
        provider = (event["details"].get("labels") or {}).get("provider")
        if provider:
            providers.add(provider)
    for key, agg in during.attempts.items():
        if agg.errors > 0:
            providers.add(key[3])
    rollbacks = conn.scalar(
        "SELECT COUNT(*) FROM alias_history WHERE incident_id = :id", {"id": incident_id}
    )
    return {
        "incident": {
            "id": row["id"],
            "title": row["title"],
            "severity": row["severity"],
            "type": row["type"],
            "state": row["state"],
            "environment": environment,
        },
        "times": {
            "impact_started": iso(start),
            "opened": iso(row["opened_at"]),
            "acknowledged": iso(row["acknowledged_at"]),
            "mitigated": iso(row["mitigated_at"]),
            "resolved": iso(row["resolved_at"]),
            "detection_seconds": _span(row["detected_at"], row["opened_at"]),
            "response_seconds": _span(row["opened_at"], row["acknowledged_at"]),
            "recovery_seconds": _span(row["opened_at"], row["mitigated_at"]),
            "resolution_seconds": _span(row["opened_at"], row["resolved_at"]),
            "response_breached": row["response_breached_at"] is not None,
        },
        "impact": {
            "window": [iso(start), iso(end)],
            "requests": round(requests.count),
            "failed_requests": round(requests.errors),
            "error_rate": requests.errors / requests.count if requests.count else None,
            "not_2xx": not_2xx(requests)[0],
            "not_2xx_classes": not_2xx(requests)[1],
            "failovers": round(requests.failovers),
            "affected_keys": [
                {"key": r["key_name"] or "(no key)", "failed": int(r["failed"])} for r in keys
            ],
            "cost": round(requests.cost, 6),
            "extra_cost": round(requests.cost - baseline.cost * scale, 6),
            "tokens": round(requests.input_tokens + requests.output_tokens),
            "extra_tokens": round(
                requests.input_tokens
                + requests.output_tokens
                - (baseline.input_tokens + baseline.output_tokens) * scale
            ),
            "providers": sorted(providers),
            "alias_moves": int(rollbacks or 0),
        },
        "root_cause": row["root_cause"],
        "timeline": [
            {
                "time": iso(e["ts"]),
                "kind": e["kind"],
                "actor": e["actor"],
                "message": e["message"],
                "public": bool(e["public"]),
            }
            for e in events
        ],
    }


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def render(data: dict[str, Any], owner: str | None = None) -> str:
    """The review as Markdown, ready for a ticket or a pull request."""
    inc, times, impact = data["incident"], data["times"], data["impact"]
    error_rate = impact["error_rate"]
    lines = [
        f"# Post-incident review: incident #{inc['id']} ({inc['severity']})",
        "",
        f"**{inc['title']}**",
        "",
        "| | |",
        "|---|---|",
        f"| Severity | {inc['severity']} |",
        f"| Type | {inc['type']} |",
        f"| Environment | {inc['environment']} |",
        f"| State | {inc['state']} |",
        f"| Owner | {owner or '-'} |",
        "",
        "## Times",
        "",
        "| Milestone | Time (UTC) | Since previous |",
        "|---|---|---|",
        f"| Impact starts (first affected request) | {times['impact_started']} | |",
        f"| Detected (incident opened) | {times['opened']} | "
        f"{_duration(times['detection_seconds'])} after the first alert condition held |",
        f"| Acknowledged | {times['acknowledged'] or '-'} | "
        f"{_duration(times['response_seconds'])} response"
        + (" (target breached)" if times["response_breached"] else "")
        + " |",
        f"| Recovered (alerts cleared) | {times['mitigated'] or '-'} | "
        f"{_duration(times['recovery_seconds'])} from detection |",
        f"| Resolved | {times['resolved'] or '-'} | "
        f"{_duration(times['resolution_seconds'])} from detection |",
        "",
        "## Impact",
        "",
        f"Measured from telemetry between {impact['window'][0]} and {impact['window'][1]}.",
        "",
        f"- Requests: {impact['requests']:,}; answers other than 2xx: {impact['not_2xx']:,}"
        + (
            " (" + ", ".join(f"{k} {n:,}" for k, n in impact["not_2xx_classes"].items()) + ")"
            if impact["not_2xx_classes"]
            else ""
        )
        + f"; failed (gateway errors): {impact['failed_requests']:,}"
        + (f" ({error_rate * 100:.2f}%)" if error_rate is not None else ""),
        f"- Failovers: {impact['failovers']:,}; alias moves during the incident: "
        f"{impact['alias_moves']}",
        f"- Providers involved: {', '.join(impact['providers']) or 'none recorded'}",
        f"- Cost: ${impact['cost']:.4f} (extra against the preceding period: "
        f"${impact['extra_cost']:.4f}); tokens: {impact['tokens']:,} "
        f"(extra: {impact['extra_tokens']:,})",
        "- Affected keys: "
        + (
            ", ".join(f"{k['key']} ({k['failed']} failed)" for k in impact["affected_keys"][:20])
            or "none recorded"
        ),
        "",
        "## Timeline",
        "",
        "| Time (UTC) | Kind | Who | What | Visibility |",
        "|---|---|---|---|---|",
    ]
    for event in data["timeline"]:
        message = event["message"].replace("|", "\\|")
        visibility = "public" if event["public"] else "internal"
        lines.append(
            f"| {event['time']} | {event['kind']} | {event['actor']} | {message} | {visibility} |"
        )
    lines += [
        "",
        "## Root cause",
        "",
        data["root_cause"] or TO_FILL,
        "",
        "## Contributing factors",
        "",
        TO_FILL,
        "",
        "## What went well, what did not",
        "",
        TO_FILL,
        "",
        "## Action items",
        "",
        "| Action | Kind (prevent / detect / mitigate / process) | Owner | Due | Ticket |",
        "|---|---|---|---|---|",
        "| | | | | |",
        "",
    ]
    return "\n".join(lines)


def write_review(
    conn: Connection,
    config: QualityGatesConfig,
    incident_id: int,
    path: Path,
    *,
    actor: str,
    now: float | None = None,
) -> dict[str, Any]:
    """Write the review to `path`; a resolved incident moves to `postmortem`."""
    now = time.time() if now is None else now
    rules = {
        str(r["rule"])
        for r in conn.execute(
            "SELECT DISTINCT rule FROM alert_events WHERE incident_id = :id "
            "UNION SELECT DISTINCT rule FROM alert_states WHERE incident_id = :id",
            {"id": incident_id},
        )
    }
    windows = [r.window for r in config.alerts.rules if r.name in rules]
    data = review(conn, incident_id, lookback=max(windows, default=60.0), now=now)
    row = incidents.get_incident(conn, incident_id)
    owner = incidents.incident_owner(conn, config, row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data, owner), encoding="utf-8")
    with conn.write():
        if row["state"] == "resolved":
            conn.execute(
                "UPDATE incidents SET state = 'postmortem', updated_at = :now WHERE id = :id",
                {"now": now, "id": incident_id},
            )
        incidents.record_event(
            conn,
            "postmortem",
            f"review written to {path}",
            incident_id=incident_id,
            actor=actor,
            now=now,
        )
        audit.append(
            conn,
            actor=actor,
            action="incident.postmortem",
            target=f"incident/{incident_id}",
            details={"path": str(path)},
            ts=now,
        )
    data["owner"] = owner
    data["path"] = str(path)
    return data
