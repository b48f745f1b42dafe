"""Notification channels (Slack, PagerDuty Events v2, generic webhook) and who hears what."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from quality_gates.config._alerts import IncidentType
from quality_gates.config._base import Duration, StrictModel, env_variables_in, resolve_env

ChannelType = Literal["slack", "pagerduty", "webhook"]
SeverityLevelName = Literal["P0", "P1", "P2", "P3"]
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class Channel(StrictModel):
    """Where notifications go. URLs and keys are `${VAR}` references to the environment."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: ChannelType
    url: str | None = None
    routing_key: str | None = Field(None, description="PagerDuty integration key, as ${VAR}")
    slack_channel: str | None = Field(None, description="shown in messages, e.g. #ops-alerts")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 5.0
    send_resolved: bool = True

    @model_validator(mode="after")
    def _check(self) -> Channel:
        if self.type in ("slack", "webhook") and not self.url:
            raise ValueError(f"a {self.type} channel needs url (e.g. url: ${{SLACK_WEBHOOK_URL}})")
        if self.type == "pagerduty" and not self.routing_key:
            raise ValueError(
                "a pagerduty channel needs routing_key (e.g. ${PAGERDUTY_ROUTING_KEY})"
            )
        return self

    @property
    def target_url(self) -> str:
        """The URL to post to, with environment references expanded."""
        raw = self.url or (PAGERDUTY_EVENTS_URL if self.type == "pagerduty" else "")
        return resolve_env(raw, needed_by=f"notification channel {self.name!r}")

    def unset_variables(self) -> list[str]:
        """Environment variables this channel refers to that are not set."""
        import os

        refs = [self.url or "", self.routing_key or "", *self.headers.values()]
        names = [n for ref in refs for n in env_variables_in(ref)]
        return [n for n in names if not os.environ.get(n)]


class NotificationRoute(StrictModel):
    """Send incidents of these types and severities to these channels (empty = any)."""

    types: list[IncidentType] = Field(default_factory=list)
    severities: list[SeverityLevelName] = Field(default_factory=list)
    channels: list[str]

    def matches(self, incident_type: str, severity: str) -> bool:
        """True when an incident of this type and severity goes through this route."""
        return (not self.types or incident_type in self.types) and (
            not self.severities or severity in self.severities
        )


class OutboxSettings(StrictModel):
    """Delivery retries: exponential backoff from `initial_backoff` up to `max_backoff`."""

    max_attempts: PositiveInt = 20
    initial_backoff: Duration = 1.0
    max_backoff: Duration = 300.0


def _runbook_channels() -> list[Channel]:
    def slack(name: str) -> Channel:
        variable = "QG_SLACK_" + name.upper().replace("-", "_") + "_WEBHOOK"
        return Channel(name=name, type="slack", url=f"${{{variable}}}", slack_channel=f"#{name}")

    return [
        slack("ops-alerts"),
        slack("ai-team"),
        slack("infra-alerts"),
        slack("security-alerts"),
        Channel(name="pagerduty", type="pagerduty", routing_key="${QG_PAGERDUTY_ROUTING_KEY}"),
    ]


def _runbook_routes() -> list[NotificationRoute]:
    return [
        NotificationRoute(types=["provider", "performance", "cost"], channels=["ops-alerts"]),
        NotificationRoute(types=["quality"], channels=["ai-team"]),
        NotificationRoute(types=["infrastructure"], channels=["infra-alerts"]),
        NotificationRoute(types=["security"], channels=["security-alerts"]),
        NotificationRoute(severities=["P0", "P1"], channels=["pagerduty"]),
    ]


class Notifications(StrictModel):
    """Channels, routes and the outbox's retry policy; the runbook's channels by default."""

    channels: list[Channel] = Field(default_factory=_runbook_channels)
    routes: list[NotificationRoute] = Field(default_factory=_runbook_routes)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)

    def channel(self, name: str) -> Channel | None:
        """The channel called `name`."""
        return next((c for c in self.channels if c.name == name), None)
