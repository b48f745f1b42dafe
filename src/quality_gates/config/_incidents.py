"""The runbook's severity table (P0-P3 with response times) and its escalation matrix."""

from __future__ import annotations

from pydantic import Field, model_validator

from quality_gates.config._alerts import IncidentType
from quality_gates.config._base import Duration, Ratio, StrictModel
from quality_gates.config._notifications import SeverityLevelName

SEVERITY_ORDER: tuple[SeverityLevelName, ...] = ("P0", "P1", "P2", "P3")


class SeverityLevel(StrictModel):
    """One row of the severity table."""

    name: str
    description: str
    response_time: Duration
    examples: list[str] = Field(default_factory=list)


class EscalationRule(StrictModel):
    """One row of the escalation matrix: who owns an issue type and when to escalate."""

    issue_type: IncidentType
    label: str
    primary: str
    secondary: str
    escalation_time: Duration


class Contact(StrictModel):
    """A person or team and the notification channels that reach them."""

    channels: list[str] = Field(default_factory=list)


def _runbook_severities() -> dict[SeverityLevelName, SeverityLevel]:
    return {
        "P0": SeverityLevel(
            name="Critical",
            description="Complete system outage",
            response_time=15 * 60,
            examples=["All AI services down", "data loss"],
        ),
        "P1": SeverityLevel(
            name="High",
            description="Major functionality impacted",
            response_time=30 * 60,
            examples=["Provider failures", "high error rates"],
        ),
        "P2": SeverityLevel(
            name="Medium",
            description="Partial functionality impacted",
            response_time=2 * 3600,
            examples=["Performance degradation", "single provider issues"],
        ),
        "P3": SeverityLevel(
            name="Low",
            description="Minor issues, no user impact",
            response_time=24 * 3600,
            examples=["Monitoring alerts", "non-critical warnings"],
        ),
    }


def _runbook_escalation() -> list[EscalationRule]:
    return [
        EscalationRule(
            issue_type="provider",
            label="Provider Outage",
            primary="On-Call Engineer",
            secondary="AI Team Lead",
            escalation_time=30 * 60,
        ),
        EscalationRule(
            issue_type="performance",
            label="Performance Issues",
            primary="AI Team Lead",
            secondary="Infrastructure Team",
            escalation_time=3600,
        ),
        EscalationRule(
            issue_type="security",
            label="Security Incidents",
            primary="Security Team",
            secondary="On-Call Engineer",
            escalation_time=0,
        ),
        EscalationRule(
            issue_type="quality",
            label="Quality Issues",
            primary="AI Team Lead",
            secondary="Product Team",
            escalation_time=2 * 3600,
        ),
    ]


def _runbook_contacts() -> dict[str, Contact]:
    return {
        "On-Call Engineer": Contact(channels=["ops-alerts", "pagerduty"]),
        "AI Team Lead": Contact(channels=["ai-team"]),
        "Infrastructure Team": Contact(channels=["infra-alerts"]),
        "Security Team": Contact(channels=["security-alerts"]),
        "Product Team": Contact(channels=["ai-team"]),
    }


class IncidentSettings(StrictModel):
    """How incidents are classified, grouped and escalated."""

    severities: dict[SeverityLevelName, SeverityLevel] = Field(default_factory=_runbook_severities)
    escalation: list[EscalationRule] = Field(default_factory=_runbook_escalation)
    contacts: dict[str, Contact] = Field(default_factory=_runbook_contacts)
    group_window: Duration = Field(600.0, description="alerts this close share an incident")
    auto_open: bool = True
    auto_resolve_after: Duration = Field(
        0.0, description="quiet time after the last alert resolves before the incident does"
    )
    p0_error_rate: Ratio = Field(
        0.5, description="an error rate this high means all AI services are down (P0)"
    )

    @model_validator(mode="after")
    def _all_levels(self) -> IncidentSettings:
        missing = [level for level in SEVERITY_ORDER if level not in self.severities]
        if missing:
            raise ValueError(f"severity table lacks {', '.join(missing)} (P0 to P3 are all needed)")
        return self

    def escalation_for(self, issue_type: str) -> EscalationRule | None:
        """The escalation matrix row for an incident type."""
        return next((r for r in self.escalation if r.issue_type == issue_type), None)
