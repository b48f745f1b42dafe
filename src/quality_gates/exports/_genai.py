"""The gateway's requests in OpenTelemetry's GenAI semantic conventions, over OTLP/HTTP.

Per gateway request a SERVER span `chat {model}` and, under it, a CLIENT span `chat
{model}` per upstream attempt, with `gen_ai.operation.name`, `gen_ai.provider.name`
(`aws.bedrock`, `gcp.gemini`, `anthropic`, `openai`: the wire protocol the provider speaks),
request and response model, token usage, finish reasons and `error.type`. Histograms:
`gen_ai.client.operation.duration` (s) and `gen_ai.client.token.usage` ({token}) per upstream
attempt, `gen_ai.server.request.duration` (s) and `gen_ai.server.time_to_first_token` (s) per
gateway request, with the conventions' bucket boundaries. Resource: `service.name`,
`deployment.environment.name`, `service.instance.id`. Names come from
opentelemetry-semantic-conventions (0.66b2 marks them as moved to the GenAI conventions
repository; the names are unchanged).

Off the request path (`_genai_export`): a finished request costs the gateway a few counter
updates (plain numbers, turned into OTLP data points when sent, rather than the SDK's
instruments, which cost microseconds per recording) and a random draw for the sampled share
(`sample_ratio`); spans are built as finished spans, encoded and sent from a worker thread.
Prompts and answers go out only with `capture_content`, and then only the redacted text the
gateway keeps with `gateway.telemetry.store_text`.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig
    from quality_gates.gateway._telemetry import RequestRecord

SCOPE = "quality_gates.gateway"
OPERATION = "chat"
# The wire protocol a provider speaks -> the conventions' gen_ai.provider.name.
PROVIDER_NAMES = {
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "anthropic": "anthropic",
    "openai": "openai",
}
NO_PROVIDER = "quality_gates"  # a request no provider answered (refused, unknown model)
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
SPAN_FLUSH = 1.0  # seconds between span batches
MAX_QUEUE = 4096  # sampled records waiting while a send is under way; beyond, dropped


class Hist:
    """Explicit-bucket counts (upper bound inclusive, as OTLP) and a sum: two updates per
    value on the request path; the count is the buckets' total, min and max are left out
    (both optional in OTLP)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    @property
    def count(self) -> int:
        """Values counted."""
        return sum(self.counts)

    def add(self, other: Hist) -> None:
        """Add another histogram's counts (same bounds)."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total

    def observe(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class Route:
    """The histograms a request answered by one (asked model, provider, model) updates, kept
    together so the common case costs one dictionary lookup."""

    __slots__ = ("duration", "input_tokens", "output_tokens", "server", "ttft")

    def __init__(self) -> None:
        self.duration = Hist(DURATION_BUCKETS)
        self.input_tokens = Hist(TOKEN_BUCKETS)
        self.output_tokens = Hist(TOKEN_BUCKETS)
        self.server = Hist(DURATION_BUCKETS)
        self.ttft = Hist(TTFT_BUCKETS)


class GenAiCounts:
    """The four histograms by their attributes, updated and read on the event loop."""

    def __init__(self, provider_names: dict[str, str]) -> None:
        self.provider_names = provider_names
        # (request model, provider, model): answered requests and their answering attempt
        self.routes: dict[tuple[str, str, str], Route] = {}
        # (provider, model, error type): failed attempts
        self.failed_attempts: dict[tuple[str, str, str], Hist] = {}
        # (request model, provider, model, error type): failed requests
        self.failed_requests: dict[tuple[str, str, str, str], Hist] = {}

    def provider(self, name: str | None) -> str:
        """gen_ai.provider.name for one of the config's providers."""
        if not name:
            return NO_PROVIDER
        return self.provider_names.get(name, name)

    def observe(self, rec: RequestRecord) -> None:
        """Count one finished request and its upstream attempts (on the request path, so
        written for the common case: one route lookup, a few bucket increments)."""
        alias = rec.alias
        model = alias if alias and alias[0] != "(" else rec.model_id or "unknown"
        provider, model_id = rec.provider or "", rec.model_id or ""
        seconds = rec.latency_ms / 1000.0
        route = None
        if rec.status == "ok":
            key = (model, provider, model_id)
            route = self.routes.get(key)
            if route is None:
                route = self.routes[key] = Route()
            route.server.observe(seconds)
            if rec.stream and rec.ttft_ms is not None:
                route.ttft.observe(rec.ttft_ms / 1000.0)
        else:
            error = (model, provider, model_id, rec.error_class or "error")
            _hist(self.failed_requests, error, DURATION_BUCKETS).observe(seconds)
        for a in rec.attempts:
            if a.status != "ok":
                failed = (a.provider, a.model_id, a.error_class or "error")
                _hist(self.failed_attempts, failed, DURATION_BUCKETS).observe(a.latency_ms / 1000.0)
            elif route is not None and a.provider == provider:
                route.duration.observe(a.latency_ms / 1000.0)
                if rec.input_tokens:
                    route.input_tokens.observe(rec.input_tokens)
                if rec.output_tokens:
                    route.output_tokens.observe(rec.output_tokens)
            else:  # an answer the client did not get (a stream cut later, a cancelled call)
                key = (model, a.provider, a.model_id)
                other = self.routes.get(key)
                if other is None:
                    other = self.routes[key] = Route()
                other.duration.observe(a.latency_ms / 1000.0)

    def metrics_data(self, resource: Any, started_ns: int, now_ns: int) -> Any:
        """The cumulative histograms as the SDK's MetricsData, ready for the exporter."""
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Histogram,
            HistogramDataPoint,
            Metric,
            MetricsData,
            ResourceMetrics,
            ScopeMetrics,
        )
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as names

        def points(series: dict[Any, Hist], attributes: Any) -> list[Any]:
            return [
                HistogramDataPoint(
                    attributes=attributes(key),
                    start_time_unix_nano=started_ns,
                    time_unix_nano=now_ns,
                    count=h.count,
                    sum=h.total,
                    bucket_counts=list(h.counts),
                    explicit_bounds=list(h.bounds),
                    min=None,  # type: ignore[arg-type]  # optional in OTLP, not tracked
                    max=None,  # type: ignore[arg-type]
                )
                for key, h in list(series.items())
                if h.count
            ]

        def metric(name: str, unit: str, text: str, series: dict[Any, Hist], attrs: Any) -> Any:
            data = Histogram(points(series, attrs), AggregationTemporality.CUMULATIVE)
            return Metric(name=name, description=text, unit=unit, data=data)

        routes = list(self.routes.items())
        client = _merge(
            [((p, m, m, ""), r.duration) for (_, p, m), r in routes]
            + [((p, m, "", e), h) for (p, m, e), h in list(self.failed_attempts.items())]
        )
        tokens = _merge(
            [((p, m, m, "input"), r.input_tokens) for (_, p, m), r in routes]
            + [((p, m, m, "output"), r.output_tokens) for (_, p, m), r in routes]
        )
        server = _merge(
            [((p, asked, m, ""), r.server) for (asked, p, m), r in routes]
            + [((p, a, m, e), h) for (a, p, m, e), h in list(self.failed_requests.items())]
        )
        ttft = _merge([((p, asked, m, ""), r.ttft) for (asked, p, m), r in routes])
        metrics = [
            metric(
                names.GEN_AI_CLIENT_OPERATION_DURATION,
                "s",
                "GenAI operation duration (one upstream attempt).",
                client,
                self._operation_attributes,
            ),
            metric(
                names.GEN_AI_CLIENT_TOKEN_USAGE,
                "{token}",
                "Number of input and output tokens used.",
                tokens,
                self._token_attributes,
            ),
            metric(
                names.GEN_AI_SERVER_REQUEST_DURATION,
                "s",
                "Generative AI server request duration (the gateway's answer).",
                server,
                self._operation_attributes,
            ),
            metric(
                names.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
                "s",
                "Time to generate first token for successful responses.",
                ttft,
                self._operation_attributes,
            ),
        ]
        scope = ScopeMetrics(
            InstrumentationScope(SCOPE), [m for m in metrics if m.data.data_points], ""
        )
        return MetricsData([ResourceMetrics(resource, [scope], "")])

    def _model_attributes(self, key: tuple[str, ...]) -> dict[str, str]:
        out = {
            "gen_ai.operation.name": OPERATION,
            "gen_ai.provider.name": self.provider(key[0]),
            "gen_ai.request.model": key[1],
        }
        if key[2]:
            out["gen_ai.response.model"] = key[2]
        return out

    def _operation_attributes(self, key: tuple[str, str, str, str]) -> dict[str, str]:
        out = self._model_attributes(key)
        if key[3]:
            out["error.type"] = key[3]
        return out

    def _token_attributes(self, key: tuple[str, str, str, str]) -> dict[str, str]:
        return {**self._model_attributes(key), "gen_ai.token.type": key[3]}


def _merge(pairs: list[tuple[Any, Hist]]) -> dict[Any, Hist]:
    """Copies of the histograms by attributes, those that share them added up (two aliases
    of one model are one client series: an upstream attempt does not know the alias)."""
    out: dict[Any, Hist] = {}
    for key, hist in pairs:
        if not hist.count:
            continue
        merged = out.get(key)
        if merged is None:
            merged = out[key] = Hist(hist.bounds)
        merged.add(hist)
    return out


def _hist(series: dict[Any, Hist], key: Any, bounds: tuple[float, ...]) -> Hist:
    found = series.get(key)
    if found is None:
        found = series[key] = Hist(bounds)
    return found


def request_model(rec: RequestRecord) -> str:
    """The model the client asked for: its alias, else the model that answered."""
    if rec.alias and not rec.alias.startswith("("):
        return rec.alias
    return rec.model_id or "unknown"


def provider_names(config: QualityGatesConfig) -> dict[str, str]:
    """gen_ai.provider.name of each configured provider, by the protocol it speaks."""
    return {p.name: PROVIDER_NAMES.get(p.wire_protocol, p.wire_protocol) for p in config.providers}
