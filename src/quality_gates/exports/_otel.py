"""OpenTelemetry export: the key window metrics as gauges and one span per evaluation cycle
(alert transitions as span events), over OTLP/HTTP to a collector.

The gauges are what the watch's rules read (a window's P95, error rate, ...), in base units
(seconds, ratios), with `deployment.environment.name` and, per provider,
`gen_ai.provider.name` (the conventions' name, `aws.bedrock`, ...) and `qg.provider` (the
config's). Per-request latency and token histograms in the GenAI conventions come from the
gateway itself (`_genai`).

Providers are private to the exporter (never the global ones), so embedding the watch loop
in `serve` does not take over an application's own OpenTelemetry set-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from quality_gates.exports._exporters import KEY_METRICS, IntervalExporter, Point

if TYPE_CHECKING:
    from quality_gates.config import OpenTelemetrySettings
    from quality_gates.watch._service import CycleReport

GAUGE_PREFIX = "qg.watch."
# CloudWatch unit -> (UCUM, factor from our base unit): latency in seconds, ratios not percents.
_UNITS = {"Milliseconds": ("s", 0.001), "Percent": ("1", 1.0), "Count/Second": ("{request}/s", 1.0)}


class OtelExporter(IntervalExporter):
    """Gauges read from the latest snapshot; spans for evaluation cycles."""

    name = "opentelemetry"

    def __init__(
        self,
        settings: OpenTelemetrySettings,
        *,
        metric_reader: Any = None,
        span_exporter: Any = None,
        provider_names: dict[str, str] | None = None,
    ) -> None:
        super().__init__(settings.interval, 60.0, True)
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            from quality_gates.errors import ConfigError

            raise ConfigError(
                "observability.opentelemetry needs the OpenTelemetry SDK: "
                "pip install 'quality-gates[otel]'"
            ) from None
        from quality_gates.config import resolve_env

        headers = {
            k: resolve_env(v, needed_by="observability.opentelemetry.headers")
            for k, v in settings.headers.items()
        }
        base = settings.endpoint.rstrip("/")
        if metric_reader is None:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            metric_reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=headers),
                export_interval_millis=settings.interval * 1000.0,
            )
        if span_exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=headers)
        resource = Resource.create({"service.name": settings.service_name})
        self.provider_names = provider_names or {}
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[metric_reader])
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        self.tracer = self.tracer_provider.get_tracer("quality_gates.watch")
        self._points: list[Point] = []
        meter = self.meter_provider.get_meter("quality_gates.watch")
        for metric, (_name, unit, _scale) in KEY_METRICS.items():
            ucum, factor = _UNITS[unit]
            meter.create_observable_gauge(
                GAUGE_PREFIX + metric,
                callbacks=[self._observe(metric, factor)],
                unit=ucum,
                description=f"{metric} over the last window, from the roll-ups",
            )

    def _observe(self, metric: str, factor: float) -> Any:
        from opentelemetry.metrics import Observation

        def callback(_options: Any) -> Iterable[Observation]:
            for point in self._points:
                if point.metric != metric:
                    continue
                attributes = {"deployment.environment.name": point.environment}
                if point.provider:
                    attributes["gen_ai.provider.name"] = self.provider_names.get(
                        point.provider, point.provider
                    )
                    attributes["qg.provider"] = point.provider
                yield Observation(point.value * factor, attributes)

        return callback

    def publish(self, points: list[Point], now: float) -> None:
        self._points = points
        self.meter_provider.force_flush()

    def on_cycle(self, report: CycleReport) -> None:
        """One span per evaluation cycle, with the alert transitions as events."""
        evaluation = report.evaluation
        if evaluation is None:
            return
        start = int(report.at * 1e9)
        span = self.tracer.start_span(
            "watch.evaluate",
            start_time=start,
            attributes={
                "qg.rules": evaluation.rules,
                "qg.series": evaluation.series,
                "qg.alerts.firing": evaluation.firing,
                "qg.alerts.pending": evaluation.pending,
                "qg.alerts.muted": evaluation.muted,
                "qg.notifications.sent": report.delivery.sent,
                "qg.notifications.failed": report.delivery.failed,
                "qg.notifications.retrying": report.delivery.retrying,
            },
        )
        for transition in evaluation.transitions:
            span.add_event(
                f"alert {transition.to_state}",
                attributes={
                    "qg.rule": transition.alert.rule,
                    "qg.from": transition.from_state,
                    "qg.severity": transition.alert.severity,
                    "qg.summary": transition.alert.summary,
                },
            )
        span.end(end_time=start + int(evaluation.seconds * 1e9))

    async def close(self) -> None:
        import asyncio

        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
