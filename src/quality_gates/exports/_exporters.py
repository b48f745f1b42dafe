"""Publishing the key metrics where operators already look: CloudWatch and OpenTelemetry.

Both read the same snapshot: per environment (and per provider for availability, latency and
errors) the runbook's key metrics over one window, computed from the roll-ups.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quality_gates._jsonlog import log_event
from quality_gates.signals._metrics import MetricEngine
from quality_gates.store.db import Connection

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

logger = logging.getLogger("quality_gates.watch.exports")

# our metric -> (CloudWatch name, unit, scale to that unit)
KEY_METRICS: dict[str, tuple[str, str, float]] = {
    "p95_latency": ("P95Latency", "Milliseconds", 1.0),
    "error_rate": ("ErrorRate", "Percent", 100.0),
    "throughput": ("Throughput", "Count/Second", 1.0),
    "provider_availability": ("ProviderAvailability", "Percent", 100.0),
    "cache_hit_rate": ("CacheHitRate", "Percent", 100.0),
}
PER_PROVIDER = ("p95_latency", "error_rate", "provider_availability")


@dataclass(frozen=True)
class Point:
    """One metric value with its labels."""

    metric: str
    value: float
    environment: str
    provider: str | None = None


def snapshot(conn: Connection, now: float, window: float, *, per_provider: bool) -> list[Point]:
    """The key metrics over the last `window` seconds, per environment (and provider)."""
    engine = MetricEngine(conn, now)
    points = []
    for metric in KEY_METRICS:
        groupings: list[tuple[str, ...]] = [("environment",)]
        if per_provider and metric in PER_PROVIDER:
            groupings.append(("environment", "provider"))
        if metric == "provider_availability":
            groupings = [("environment", "provider")]
        for labels in groupings:
            for sample in engine.samples(metric, window, labels):
                if sample.value is None:
                    continue
                values = dict(sample.labels)
                points.append(
                    Point(metric, sample.value, values["environment"], values.get("provider"))
                )
    return points


class IntervalExporter(abc.ABC):
    """Runs `publish` every `interval` seconds with a fresh snapshot; failures are logged
    (category ERROR) and retried at the next interval, never raised into the loop."""

    name = "exporter"

    def __init__(self, interval: float, window: float, per_provider: bool = True) -> None:
        self.interval = interval
        self.window = window
        self.per_provider = per_provider
        self.last: float | None = None
        self.published = 0

    async def maybe_export(self, service: Any, now: float) -> None:
        if self.last is not None and now - self.last < self.interval:
            return
        self.last = now
        points = await service._db(_snapshot_call, now, self.window, self.per_provider)
        try:
            await asyncio.to_thread(self.publish, points, now)
            self.published += 1
        except Exception as exc:
            log_event(
                logger,
                logging.ERROR,
                "ERROR",
                f"{self.name} export failed: {type(exc).__name__}: {exc}",
                exporter=self.name,
            )

    @abc.abstractmethod
    def publish(self, points: list[Point], now: float) -> None:
        """Send one snapshot (runs on a worker thread)."""

    def on_cycle(self, report: Any) -> None:
        """Called after every evaluation cycle (spans, for exporters that trace)."""
        return

    async def close(self) -> None:
        return None


def _snapshot_call(conn: Connection, now: float, window: float, per_provider: bool) -> list[Point]:
    return snapshot(conn, now, window, per_provider=per_provider)


def exporters_for(config: QualityGatesConfig) -> list[IntervalExporter]:
    """The exporters the config turns on: pass it to `WatchService(exporters=...)` (or
    `watch_background`), since the watch never imports its exporters."""
    found: list[IntervalExporter] = []
    observability = config.observability
    if observability.cloudwatch.enabled:
        from quality_gates.exports._cloudwatch import CloudWatchExporter

        found.append(CloudWatchExporter(observability.cloudwatch))
    if observability.opentelemetry.enabled:
        from quality_gates.exports._genai import provider_names
        from quality_gates.exports._otel import OtelExporter

        found.append(
            OtelExporter(observability.opentelemetry, provider_names=provider_names(config))
        )
    return found
