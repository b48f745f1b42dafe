"""Incidents: one per underlying problem, run to closure with a record.

Owns the incident lifecycle and timeline (`_lifecycle`: open, acknowledge, annotate, escalate,
resolve; `record_event` for other planes), the flow from firing alerts to incidents
(`_incident_flow`: grouping, the severity table, response targets, escalation, auto-resolve)
and the post-incident review (`postmortem`). The names below are the lifecycle's public
front: `from quality_gates import incidents; incidents.open_incident(...)`.

May import: notify (what an incident event sends), alerts (alert states and events),
signals (the telemetry windows a postmortem measures impact on), the store, config and
errors. Never routines, remediation, watch, exports or the command line.
"""

from __future__ import annotations

from quality_gates.incidents._lifecycle import (
    EVENT_KINDS,
    OPEN_STATES,
    SEVERITIES,
    STATES,
    acknowledge,
    add_note,
    current_incident,
    escalate,
    get_incident,
    incident_owner,
    list_incidents,
    open_incident,
    record_event,
    resolve,
    timeline,
)

__all__ = [
    "EVENT_KINDS",
    "OPEN_STATES",
    "SEVERITIES",
    "STATES",
    "acknowledge",
    "add_note",
    "current_incident",
    "escalate",
    "get_incident",
    "incident_owner",
    "list_incidents",
    "open_incident",
    "record_event",
    "resolve",
    "timeline",
]
