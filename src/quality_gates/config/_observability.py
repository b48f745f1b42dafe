"""Where the watch plane publishes besides `/metrics`: CloudWatch, OpenTelemetry, JSON logs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from quality_gates.config._base import Duration, StrictModel

LogCategory = Literal[
    "ERROR", "SECURITY", "ALERT", "INCIDENT", "NOTIFICATION", "AUDIT", "PERFORMANCE", "SYSTEM"
]


class CloudWatchSettings(StrictModel):
    """PutMetricData of the key metrics (P95Latency, ErrorRate, Throughput, ...), so the
    runbook's `aws cloudwatch get-metric-statistics --namespace AI/Performance` finds data.

    Credentials come from the standard AWS chain (environment, profile, instance role);
    `endpoint` points at another CloudWatch (a local one in tests)."""

    enabled: bool = False
    namespace: str = "AI/Performance"
    region: str = "us-east-1"
    endpoint: str | None = Field(None, description="override URL; ${VAR} allowed")
    interval: Duration = Field(60.0, gt=0, description="how often to publish")
    window: Duration = Field(60.0, gt=0, description="the window each datapoint summarises")
    per_provider: bool = Field(True, description="also publish with a Provider dimension")
    environment: str = Field(
        "production",
        description="the environment whose metrics are also published without dimensions "
        "(the runbook's get-metric-statistics passes none)",
    )
    log_group: str | None = Field(
        None, description="also ship the JSON logs to this CloudWatch Logs group"
    )
    log_stream: str = "quality-gates"


class OpenTelemetrySettings(StrictModel):
    """OTLP/HTTP export: the gateway's requests in the GenAI semantic conventions (spans and
    histograms), the window metrics (gauges) and watch spans (evaluation cycles)."""

    enabled: bool = False
    endpoint: str = Field(
        "http://127.0.0.1:4318", description="OTLP/HTTP base URL; /v1/metrics and /v1/traces"
    )
    headers: dict[str, str] = Field(default_factory=dict, description="${VAR} allowed")
    service_name: str = "quality-gates"
    interval: Duration = Field(15.0, gt=0)
    sample_ratio: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="share of gateway requests traced (spans); the GenAI histograms count all",
    )
    capture_content: bool = Field(
        False,
        description="put the redacted prompt and answer (gateway.telemetry.store_text) on spans",
    )


class LogSettings(StrictModel):
    """Structured logs: one JSON object per line with `level` and `category`."""

    format: Literal["json", "text"] = "json"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file: str | None = Field(None, description="append here instead of stderr")


class ObservabilitySettings(StrictModel):
    """Exports to the tools operators already watch."""

    cloudwatch: CloudWatchSettings = Field(default_factory=CloudWatchSettings)
    opentelemetry: OpenTelemetrySettings = Field(default_factory=OpenTelemetrySettings)
    logging: LogSettings = Field(default_factory=LogSettings)
