"""The web plane: the public status page and the operator dashboard (`serve --admin-port`,
`quality-gates dashboard`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from quality_gates.config._alerts import IncidentType
from quality_gates.config._base import Duration, Ratio, StrictModel

PUBLIC_INCIDENT_TYPES: list[IncidentType] = ["provider", "performance", "quality", "infrastructure"]


class StatusPageSettings(StrictModel):
    """What the public page (`/status`, `/status.json`) shows, and how component statuses
    are judged from live health (see `quality_gates.web.components`)."""

    title: str = Field("AI service status", description="heading of the public page")
    service_name: str = Field("AI service", description="public name of the service component")
    component_names: dict[str, str] = Field(
        default_factory=dict, description="provider -> public name (e.g. bedrock: AWS Bedrock)"
    )
    show_models: bool = Field(
        False, description="name the models each component serves (model ids stay private)"
    )
    incident_types: list[IncidentType] = Field(
        default_factory=lambda: list(PUBLIC_INCIDENT_TYPES),
        description="incident types published (cost and security stay internal by default)",
    )
    window: Duration = Field(300.0, gt=0, description="live window the statuses are judged on")
    min_requests: int = Field(
        20, ge=1, description="fewer calls than this in the window give no verdict on rates"
    )
    partial_outage_below: Ratio = Field(
        0.95, description="availability under this is a partial outage"
    )
    major_outage_below: Ratio = Field(0.50, description="availability under this: major outage")
    uptime_days: int = Field(90, ge=1, le=366, description="days of uptime bars")
    resolved_days: int = Field(7, ge=0, le=90, description="days resolved incidents stay listed")
    cache: Duration = Field(5.0, ge=0, description="how long one answer of the page is reused")

    @model_validator(mode="after")
    def _ordered(self) -> StatusPageSettings:
        if self.major_outage_below > self.partial_outage_below:
            raise ValueError("major_outage_below must not be above partial_outage_below")
        return self


class WebSettings(StrictModel):
    """Where the dashboard listens, and its sessions."""

    host: str = "127.0.0.1"
    port: int = Field(8081, ge=0, le=65535, description="`dashboard` port; 0 picks a free one")
    session_ttl: Duration = Field(8 * 3600.0, gt=0, description="a login lasts this long")
    secure_cookies: bool = Field(
        False, description="mark cookies Secure (set it when a TLS proxy fronts the dashboard)"
    )
    refresh: Duration = Field(10.0, ge=0, description="live panels refresh (0: never)")
    login_attempts: int = Field(
        10, ge=1, description="wrong keys one address may try per 5 minutes"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses whose X-Forwarded-For / X-Forwarded-Proto are believed (the "
        "login throttle and the audit use the client address); none by default, so a "
        "same-host proxy cannot be spoofed through",
    )
    status_page: StatusPageSettings = Field(default_factory=StatusPageSettings)
