"""The GenAI export as a background service of the gateway app (`serve` adds it when
`observability.opentelemetry.enabled`). On the request path each finished record is counted
into the histograms (plain counters) and a random draw keeps the sampled share; once a
second a worker thread builds their spans and sends them over OTLP/HTTP (the histograms
every `interval`), unless the last send is still under way. See `_genai` for what is
exported."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from quality_gates.exports._genai import (
    MAX_QUEUE,
    OPERATION,
    SCOPE,
    SPAN_FLUSH,
    GenAiCounts,
    provider_names,
    request_model,
)

if TYPE_CHECKING:
    from quality_gates.config import OpenTelemetrySettings
    from quality_gates.gateway._telemetry import RequestRecord

log = logging.getLogger("quality_gates.watch")


class GenAiExporter:
    """Spans (sampled) and GenAI histograms (every request) of one gateway process."""

    def __init__(
        self,
        settings: OpenTelemetrySettings,
        counts: GenAiCounts,
        resource_attributes: dict[str, str],
        *,
        capture_content: bool = False,
    ) -> None:
        try:
            # Everything the worker thread needs, imported now rather than on its first
            # batch: an import there would hold the GIL away from the request path.
            import opentelemetry.sdk.metrics.export
            import opentelemetry.sdk.trace
            import opentelemetry.semconv._incubating.metrics.gen_ai_metrics  # noqa: F401
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        except ImportError:
            from quality_gates.errors import ConfigError

            raise ConfigError(
                "observability.opentelemetry needs the OpenTelemetry SDK: "
                "pip install 'quality-gates[otel]'"
            ) from None
        from quality_gates.config import resolve_env

        self.settings = settings
        self.counts = counts
        self.capture_content = capture_content
        self.ratio = settings.sample_ratio
        headers = {
            k: resolve_env(v, needed_by="observability.opentelemetry.headers")
            for k, v in settings.headers.items()
        }
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = settings.endpoint.rstrip("/")
        self.span_exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=headers)
        self.metric_exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=headers)
        self.resource = Resource.create(resource_attributes)
        self.scope = InstrumentationScope(SCOPE)
        self.pending: deque[RequestRecord] = deque()  # sampled, waiting for their spans
        self.dropped = self._dropped_reported = 0
        self.started_ns = time.time_ns()
        self._draw = random.random
        self._ids = random.getrandbits
        self.services: Any = None  # the gateway's, tapped by genai_background
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending: asyncio.Future[None] | None = None

    def observe(self, rec: RequestRecord) -> None:
        """The gateway's tap: count every request, keep a sampled share for spans."""
        self.counts.observe(rec)
        if self.ratio > 0 and self._draw() < self.ratio:
            if len(self.pending) >= MAX_QUEUE:
                self.dropped += 1
                return
            self.pending.append(rec)

    async def start(self) -> None:
        """Begin exporting in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="qg-genai-otel")

    async def _run(self) -> None:
        next_metrics = time.monotonic() + self.settings.interval
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), SPAN_FLUSH)
            due = time.monotonic() >= next_metrics or self._stop.is_set()
            if due:
                next_metrics = time.monotonic() + self.settings.interval
            try:
                self._tick(metrics=due)
            except Exception as exc:  # an exporter's fault never stops the gateway
                log.warning("OpenTelemetry export failed: %s", exc)
        await self._settle()
        try:
            self._tick(metrics=True)  # what the last second left
        except Exception as exc:
            log.warning("OpenTelemetry export failed: %s", exc)
        await self._settle()

    async def _settle(self) -> None:
        """Wait for the send under way."""
        if self._sending is not None:
            with contextlib.suppress(Exception):
                await self._sending
            self._report(self._sending)
            self._sending = None

    @staticmethod
    def _report(sending: asyncio.Future[None]) -> None:
        # A refused or unreachable collector is logged by the OTLP exporter itself; this is
        # for our own faults (a record that does not encode).
        if sending.done() and not sending.cancelled() and sending.exception() is not None:
            log.warning("OpenTelemetry export failed: %s", sending.exception())

    def _tick(self, *, metrics: bool) -> None:
        """Hand the sampled records (and the histograms, when due) to a worker thread,
        unless the last send is still under way: a slow collector delays the export, never
        a request."""
        if self.dropped > self._dropped_reported:
            log.warning(
                "OpenTelemetry: %d sampled requests were not traced (%d were waiting for a "
                "slow collector; lower observability.opentelemetry.sample_ratio?)",
                self.dropped - self._dropped_reported,
                MAX_QUEUE,
            )
            self._dropped_reported = self.dropped
        if self._sending is not None:
            if not self._sending.done():
                return
            self._report(self._sending)
            self._sending = None
        batch = [self.pending.popleft() for _ in range(len(self.pending))]
        # Built here, on the loop that updates the counts, so each data point is consistent.
        data = (
            self.counts.metrics_data(self.resource, self.started_ns, time.time_ns())
            if metrics
            else None
        )
        if data is not None and not data.resource_metrics[0].scope_metrics[0].metrics:
            data = None
        if batch or data is not None:
            self._sending = asyncio.ensure_future(asyncio.to_thread(self._send, batch, data))

    def _send(self, batch: list[RequestRecord], data: Any) -> None:
        """In a worker thread: the sampled records' spans, then the histograms."""
        if batch:
            spans: list[Any] = []
            for rec in batch:
                spans.extend(self._spans(rec))
            self.span_exporter.export(spans)
        if data is not None:
            self.metric_exporter.export(data)

    def _spans(self, rec: RequestRecord) -> list[Any]:
        """The request's SERVER span and a CLIENT span per upstream attempt, built as
        finished spans directly: the SDK's tracer would check, copy and lock every
        attribute of spans that are already over."""
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        start = int(rec.ts * 1e9)
        model = request_model(rec)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": OPERATION,
            "gen_ai.provider.name": self.counts.provider(rec.provider),
            "gen_ai.request.model": model,
            "gen_ai.response.id": rec.id,
            "http.response.status_code": rec.http_status,
            "qg.cache": rec.cache,
        }
        if rec.model_id:
            attributes["gen_ai.response.model"] = rec.model_id
        if rec.stream:
            attributes["gen_ai.request.stream"] = True
        if rec.status == "ok":
            attributes["gen_ai.usage.input_tokens"] = rec.input_tokens
            attributes["gen_ai.usage.output_tokens"] = rec.output_tokens
            if rec.finish_reason:
                attributes["gen_ai.response.finish_reasons"] = [rec.finish_reason]
        else:
            attributes["error.type"] = rec.error_class or "error"
        if rec.hops:
            attributes["qg.failover.hops"] = rec.hops
        if self.capture_content:
            attributes.update(content(rec))
        trace_id = self._ids(128)
        sampled = TraceFlags(TraceFlags.SAMPLED)
        context = SpanContext(trace_id, self._ids(64), False, sampled)
        failed = rec.status not in ("ok", "rejected")
        spans = [
            ReadableSpan(
                name=f"{OPERATION} {model}",
                context=context,
                resource=self.resource,
                attributes=attributes,
                kind=SpanKind.SERVER,
                instrumentation_scope=self.scope,
                status=Status(StatusCode.ERROR, rec.error_class) if failed else Status(),
                start_time=start,
                end_time=start + int(rec.latency_ms * 1e6),
            )
        ]
        for a in rec.attempts:
            ok = a.status == "ok"
            attempt: dict[str, Any] = {
                "gen_ai.operation.name": OPERATION,
                "gen_ai.provider.name": self.counts.provider(a.provider),
                "gen_ai.request.model": a.model_id,
                "qg.deployment": a.deployment,
                "qg.attempt": a.attempt,
            }
            if ok:
                attempt["gen_ai.response.model"] = a.model_id
            else:
                attempt["error.type"] = a.error_class or "error"
            if a.http_status is not None:
                attempt["http.response.status_code"] = a.http_status
            begun = int(a.ts * 1e9)
            spans.append(
                ReadableSpan(
                    name=f"{OPERATION} {a.model_id}",
                    context=SpanContext(trace_id, self._ids(64), False, sampled),
                    parent=context,
                    resource=self.resource,
                    attributes=attempt,
                    kind=SpanKind.CLIENT,
                    instrumentation_scope=self.scope,
                    status=Status() if ok else Status(StatusCode.ERROR, a.error_class),
                    start_time=begun,
                    end_time=begun + int(a.latency_ms * 1e6),
                )
            )
        return spans

    async def close(self) -> None:
        """Send what is left, then shut the providers down."""
        if self.services is not None:
            self.services.record_tap = None
        self._stop.set()
        if self._task is not None:
            await self._task
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self.span_exporter.shutdown()  # type: ignore[no-untyped-call]
        self.metric_exporter.shutdown()


def content(rec: RequestRecord) -> dict[str, str]:
    """gen_ai.input.messages / gen_ai.output.messages from the record's redacted text (the
    gateway keeps it only with `gateway.telemetry.store_text`)."""
    out = {}
    if rec.prompt:
        parts = [{"type": "text", "content": rec.prompt}]
        out["gen_ai.input.messages"] = json.dumps([{"role": "user", "parts": parts}])
    if rec.answer:
        parts = [{"type": "text", "content": rec.answer}]
        message = {"role": "assistant", "parts": parts, "finish_reason": rec.finish_reason}
        out["gen_ai.output.messages"] = json.dumps([message])
    return out


def genai_background(state: Any) -> GenAiExporter:
    """The exporter as a background service of the gateway app; it taps the gateway's
    finished requests (`Services.record_tap`)."""
    config = state.settings.config
    settings = config.observability.opentelemetry
    exporter = GenAiExporter(
        settings,
        GenAiCounts(provider_names(config)),
        {
            "service.name": settings.service_name,
            "deployment.environment.name": state.settings.environment,
            "service.instance.id": state.instance,
        },
        capture_content=settings.capture_content,
    )
    if settings.capture_content and not config.gateway.telemetry.store_text:
        log.warning(
            "observability.opentelemetry.capture_content exports the text the gateway keeps "
            "with gateway.telemetry.store_text, which is off: no prompt or answer goes out"
        )
    exporter.services = state.services
    state.services.record_tap = exporter.observe
    return exporter
