"""CloudWatch PutMetricData: the key metrics in namespace AI/Performance.

Each metric is published with an `Environment` dimension (and `Provider` where it applies),
and once more without dimensions for the configured environment, because the runbook's
`aws cloudwatch get-metric-statistics --metric-name P95Latency` passes no dimensions and
CloudWatch matches dimensions exactly. Credentials come from the standard AWS chain.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quality_gates.exports._exporters import KEY_METRICS, IntervalExporter, Point

if TYPE_CHECKING:
    from quality_gates.config import CloudWatchSettings

BATCH = 20  # PutMetricData's long-standing per-call limit
LOG_BATCH = 1000


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


def aws_client(service: str, settings: CloudWatchSettings) -> Any:
    """A boto3 client for CloudWatch or CloudWatch Logs, at the configured endpoint."""
    try:
        import boto3
    except ImportError:
        from quality_gates.errors import ConfigError

        raise ConfigError(
            "observability.cloudwatch needs boto3: pip install 'quality-gates[aws]'"
        ) from None
    from quality_gates.config import resolve_env

    endpoint = settings.endpoint
    url = resolve_env(endpoint, needed_by="observability.cloudwatch.endpoint") if endpoint else None
    return boto3.client(service, region_name=settings.region, endpoint_url=url)


class CloudWatchExporter(IntervalExporter):
    """Publishes a snapshot every `interval` seconds; ships the logs if `log_group` is set."""

    name = "cloudwatch"

    def __init__(self, settings: CloudWatchSettings) -> None:
        super().__init__(settings.interval, settings.window, settings.per_provider)
        self.settings = settings
        self._client: Any = None
        self.logs: CloudWatchLogsHandler | None = None
        if settings.log_group:
            from quality_gates._jsonlog import LOGGER, JsonFormatter

            self.logs = CloudWatchLogsHandler(
                aws_client("logs", settings), settings.log_group, settings.log_stream
            )
            self.logs.setFormatter(JsonFormatter())
            logging.getLogger(LOGGER).addHandler(self.logs)

    def publish(self, points: list[Point], now: float) -> None:
        if self._client is None:
            self._client = aws_client("cloudwatch", self.settings)
        data = metric_data(points, now, self.settings.environment)
        for start in range(0, len(data), BATCH):
            self._client.put_metric_data(
                Namespace=self.settings.namespace, MetricData=data[start : start + BATCH]
            )
        if self.logs is not None:
            self.logs.flush()

    async def close(self) -> None:
        if self.logs is not None:
            import asyncio

            from quality_gates._jsonlog import LOGGER

            logging.getLogger(LOGGER).removeHandler(self.logs)
            try:
                await asyncio.to_thread(self.logs.flush)
            except Exception as exc:  # shutting down: say so on the remaining handlers
                logging.getLogger(LOGGER).error(
                    "could not ship the last logs to CloudWatch Logs: %s", exc
                )


class CloudWatchLogsHandler(logging.Handler):
    """Ships the structured log lines to a CloudWatch Logs group and stream, in batches sent
    by `flush()` (the exporter flushes every interval and on shutdown), so the runbook's
    `aws logs filter-log-events --filter-pattern "ERROR"` finds them."""

    MAX_BUFFER = 10_000

    def __init__(self, client: Any, group: str, stream: str) -> None:
        super().__init__()
        self.client = client
        self.group = group
        self.stream = stream
        self.buffer: list[dict[str, Any]] = []
        self.dropped = 0
        self._ready = False
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self._lock:
            if len(self.buffer) >= self.MAX_BUFFER:
                self.dropped += 1
                return
            self.buffer.append({"timestamp": int(record.created * 1000), "message": line})

    def _ensure(self) -> None:
        if self._ready:
            return
        for call, kwargs in (
            (self.client.create_log_group, {"logGroupName": self.group}),
            (
                self.client.create_log_stream,
                {"logGroupName": self.group, "logStreamName": self.stream},
            ),
        ):
            try:
                call(**kwargs)
            except self.client.exceptions.ResourceAlreadyExistsException:
                pass
        self._ready = True

    def flush(self) -> None:
        with self._lock:
            events, self.buffer = self.buffer, []
        if not events:
            return
        try:
            self._ensure()
            events.sort(key=lambda e: e["timestamp"])
            for start in range(0, len(events), LOG_BATCH):
                self.client.put_log_events(
                    logGroupName=self.group,
                    logStreamName=self.stream,
                    logEvents=events[start : start + LOG_BATCH],
                )
        except Exception:
            with self._lock:  # keep them for the next flush, within the bound
                self.buffer = (events + self.buffer)[: self.MAX_BUFFER]
            raise
