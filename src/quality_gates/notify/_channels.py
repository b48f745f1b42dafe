"""What each channel receives: Slack Block Kit, PagerDuty Events API v2, a generic JSON webhook.

Payloads are built when a message is put in the outbox and stored as they will be sent, so
the record shows exactly what went out. Secrets are not stored: the PagerDuty routing key
and the URLs are filled in from the environment at send time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# Events of an incident's life that channels hear about.
EVENTS = ("open", "severity", "ack", "escalate", "breach", "resolve")
PAGERDUTY_ACTION = {
    "open": "trigger",
    "severity": "trigger",
    "escalate": "trigger",
    "ack": "acknowledge",
    "resolve": "resolve",
}
# PagerDuty's payload.severity accepts critical, error, warning and info.
PAGERDUTY_SEVERITY = {"P0": "critical", "P1": "critical", "P2": "error", "P3": "warning"}
SLACK_HEADER_LIMIT = 150
SLACK_TEXT_LIMIT = 3000
PAGERDUTY_SUMMARY_LIMIT = 1024
_EMOJI = {"P0": ":rotating_light:", "P1": ":red_circle:", "P2": ":large_orange_circle:"}
_VERB = {
    "open": "opened",
    "severity": "severity changed",
    "ack": "acknowledged",
    "escalate": "escalated",
    "breach": "response target breached",
    "resolve": "resolved",
}


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def headline(event: str, incident: dict[str, Any]) -> str:
    """`[P1] Incident #3 opened: provider_availability < 95% ... (production)`."""
    return (
        f"[{incident['severity']}] Incident #{incident['id']} {_VERB[event]}: "
        f"{incident['title']} ({incident['environment']})"
    )


def slack_payload(
    event: str, incident: dict[str, Any], alerts: list[dict[str, Any]], note: str | None
) -> dict[str, Any]:
    """An incoming-webhook body: Block Kit blocks plus `text`, the notification fallback."""
    text = headline(event, incident)
    if note:
        text += f" - {note}"
    emoji = (
        ":white_check_mark:"
        if event == "resolve"
        else _EMOJI.get(incident["severity"], ":large_yellow_circle:")
    )
    fields = [
        {"type": "mrkdwn", "text": f"*Severity*\n{incident['severity']}"},
        {"type": "mrkdwn", "text": f"*State*\n{incident['state']}"},
        {"type": "mrkdwn", "text": f"*Type*\n{incident['type']}"},
        {"type": "mrkdwn", "text": f"*Environment*\n{incident['environment']}"},
    ]
    if incident.get("owner"):
        fields.append({"type": "mrkdwn", "text": f"*Owner*\n{incident['owner']}"})
    lines = [f"• {_escape(a['summary'])} ({a['state']})" for a in alerts[:10]]
    if len(alerts) > 10:
        lines.append(f"• and {len(alerts) - 10} more")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _clip(f"{emoji} {text}", SLACK_HEADER_LIMIT),
                "emoji": True,
            },
        },
        {"type": "section", "fields": fields},
    ]
    if note:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _clip(_escape(note), SLACK_TEXT_LIMIT)},
            }
        )
    if lines:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": _clip("*Alerts*\n" + "\n".join(lines), SLACK_TEXT_LIMIT),
                },
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"quality-gates · `quality-gates incident show {incident['id']}` · "
                    f"opened {iso(incident['opened_at'])}",
                }
            ],
        }
    )
    return {"text": text, "blocks": blocks}


def _escape(text: str) -> str:
    # Slack reads &, < and > as markup (`<!channel>` would ping everyone).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def pagerduty_payload(
    event: str, incident: dict[str, Any], alerts: list[dict[str, Any]], project: str
) -> dict[str, Any] | None:
    """An Events API v2 event (without routing_key, added at send time); None when PagerDuty
    has no action for this event (a breach notice, for instance)."""
    action = PAGERDUTY_ACTION.get(event)
    if action is None:
        return None
    body: dict[str, Any] = {"event_action": action, "dedup_key": incident["dedup_key"]}
    if action != "trigger":
        return body
    providers = sorted({a["labels"].get("provider") for a in alerts if a["labels"].get("provider")})
    body["payload"] = {
        "summary": _clip(headline("open", incident), PAGERDUTY_SUMMARY_LIMIT),
        "source": f"{project}/{incident['environment']}",
        "severity": PAGERDUTY_SEVERITY.get(incident["severity"], "warning"),
        "timestamp": iso(incident["opened_at"]),
        "component": ",".join(providers) or None,
        "group": incident["environment"],
        "class": incident["type"],
        "custom_details": {
            "incident": incident["id"],
            "severity": incident["severity"],
            "state": incident["state"],
            "alerts": [a["summary"] for a in alerts[:20]],
        },
    }
    if body["payload"]["component"] is None:
        del body["payload"]["component"]
    body["client"] = "quality-gates"
    return body


def webhook_payload(
    event: str, incident: dict[str, Any], alerts: list[dict[str, Any]], note: str | None
) -> dict[str, Any]:
    """The generic JSON webhook body: the event, the incident and its alerts."""
    return {
        "version": 1,
        "event": event,
        "summary": headline(event, incident) + (f" - {note}" if note else ""),
        "incident": {
            **{k: incident[k] for k in ("id", "title", "type", "severity", "state", "environment")},
            "dedup_key": incident["dedup_key"],
            "opened_at": iso(incident["opened_at"]),
            "acknowledged_at": iso(incident.get("acknowledged_at")),
            "resolved_at": iso(incident.get("resolved_at")),
        },
        "alerts": alerts,
        "note": note,
    }
