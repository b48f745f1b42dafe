"""CloudWatch PutMetricData: the key metrics in namespace AI/Performance.

Each metric is published with an `Environment` dimension (and `Provider` where it applies),
and once more without dimensions for the configured environment, because the runbook's
`aws cloudwatch get-metric-statistics --metric-name P95Latency` passes no dimensions and
CloudWatch matches dimensions exactly. Credentials come from the standard AWS chain.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quality_gates.watch._exports import KEY_METRICS, IntervalExporter, Point

if TYPE_CHECKING:
    from quality_gates.config import CloudWatchSettings

BATCH = 20  # PutMetricData's long-standing per-call limit


def metric_data(points: list[Point], now: float, default_environment: str) -> list[dict[str, Any]]:
    """PutMetricData entries for a snapshot."""
    stamp = datetime.fromtimestamp(now, tz=UTC)
    data = []
    for point in points:
        name, unit, scale = KEY_METRICS[point.metric]
        dimensions = [{"Name": "Environment", "Value": point.environment}]
        if point.provider:
            dimensions.append({"Name": "Provider", "Value": point.provider})
        entry = {"MetricName": name, "Timestamp": stamp, "Value": point.value * scale, "Unit": unit}
        data.append({**entry, "Dimensions": dimensions})
        if point.environment == default_environment and not point.provider:
            data.append({**entry, "Dimensions": []})
    return data


class CloudWatchExporter(IntervalExporter):
    """Publishes a snapshot every `interval` seconds."""

    name = "cloudwatch"

    def __init__(self, settings: CloudWatchSettings) -> None:
        super().__init__(settings.interval, settings.window, settings.per_provider)
        self.settings = settings
        self._client: Any = None

    def client(self) -> Any:
        """The boto3 CloudWatch client (created on first use)."""
        if self._client is None:
            try:
                import boto3
            except ImportError:
                from quality_gates.errors import ConfigError

                raise ConfigError(
                    "observability.cloudwatch needs boto3: pip install 'quality-gates[aws]'"
                ) from None
            from quality_gates.config import resolve_env

            endpoint = self.settings.endpoint
            self._client = boto3.client(
                "cloudwatch",
                region_name=self.settings.region,
                endpoint_url=resolve_env(endpoint, needed_by="observability.cloudwatch.endpoint")
                if endpoint
                else None,
            )
        return self._client

    def publish(self, points: list[Point], now: float) -> None:
        data = metric_data(points, now, self.settings.environment)
        client = self.client()
        for start in range(0, len(data), BATCH):
            client.put_metric_data(
                Namespace=self.settings.namespace, MetricData=data[start : start + BATCH]
            )
