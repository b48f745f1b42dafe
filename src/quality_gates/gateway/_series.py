"""Per-(model, provider) request metrics kept as plain numbers on the event loop and turned
into Prometheus families at scrape time.

prometheus_client's Counter and Histogram take a lock and build a label key on every update;
nine such updates per request cost about a third of the gateway's own time per request. Only
the event loop updates these series and /metrics reads them on the same loop, so no lock is
needed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0,
    20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
)  # fmt: skip
_LE = [f"{b:g}" for b in LATENCY_BUCKETS] + ["+Inf"]


class Hist:
    """Bucket counts and a sum, in seconds."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one value (buckets are `le`, so the first bound >= the value)."""
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs for the exposition."""
        running = 0
        out = []
        for le, n in zip(_LE, self.counts, strict=True):
            running += n
            out.append((le, float(running)))
        return out


class RequestSeries:
    """Everything counted for one (model, provider) pair."""

    __slots__ = (
        "attempts",
        "cost",
        "duration",
        "model",
        "outputs",
        "provider",
        "requests",
        "tokens_in",
        "tokens_out",
        "ttft",
        "upstream",
    )

    def __init__(self, model: str, provider: str) -> None:
        self.model, self.provider = model, provider
        self.requests: dict[tuple[str, str, str], int] = {}  # (status, cache, error) -> n
        self.attempts: dict[str, int] = {}  # outcome -> n
        self.outputs: dict[str, int] = {}  # structured-output verdict -> n
        self.duration = Hist()
        self.ttft = Hist()
        self.upstream = Hist()
        self.tokens_in = self.tokens_out = 0
        self.cost = 0.0

    def request(self, code: str, cache: str, error_class: str = "") -> None:
        """Count one answered request: its HTTP status, cache result and error class."""
        key = (code, cache, error_class)
        self.requests[key] = self.requests.get(key, 0) + 1

    def output(self, verdict: str) -> None:
        """Count one checked structured output: `valid` or why it is unusable."""
        self.outputs[verdict] = self.outputs.get(verdict, 0) + 1

    def attempt(self, outcome: str, seconds: float) -> None:
        """Count one upstream call."""
        self.attempts[outcome] = self.attempts.get(outcome, 0) + 1
        self.upstream.observe(seconds)


class SeriesBoard:
    """RequestSeries by (model, provider), and their exposition."""

    def __init__(self, environment: str) -> None:
        self.environment = environment
        self.series: dict[tuple[str, str], RequestSeries] = {}

    def __call__(self, model: str, provider: str) -> RequestSeries:
        """The series of this pair (created on first use)."""
        found = self.series.get((model, provider))
        if found is None:
            found = self.series[(model, provider)] = RequestSeries(model, provider)
        return found

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        """The families, computed now."""
        env = self.environment
        requests = CounterMetricFamily(
            "qg_gateway_requests",
            "Chat completion requests answered, by HTTP status and error class (refusals "
            "before routing, such as 400 and 401, have model and provider none)",
            labels=["environment", "model", "provider", "code", "cache", "error_class"],
        )  # fmt: skip
        attempts = CounterMetricFamily(
            "qg_gateway_upstream_attempts", "Upstream calls by outcome (ok or error class)",
            labels=["environment", "provider", "model", "outcome"],
        )  # fmt: skip
        tokens = CounterMetricFamily(
            "qg_gateway_tokens", "Tokens by direction",
            labels=["environment", "provider", "model", "direction"],
        )  # fmt: skip
        cost = CounterMetricFamily(
            "qg_gateway_cost_usd", "Cost in USD", labels=["environment", "provider", "model"]
        )
        outputs = CounterMetricFamily(
            "qg_gateway_structured_outputs",
            "Answers to tools / response_format requests by verdict: valid, or why the "
            "output is unusable (tool_arguments_not_json, output_schema, ...)",
            labels=["environment", "model", "provider", "verdict"],
        )
        hists = {
            "duration": HistogramMetricFamily(
                "qg_gateway_request_duration_seconds",
                "Time to answer a request, as the client saw it",
                labels=["environment", "model", "provider"],
            ),
            "ttft": HistogramMetricFamily(
                "qg_gateway_time_to_first_token_seconds",
                "Time to the first streamed token",
                labels=["environment", "model", "provider"],
            ),
            "upstream": HistogramMetricFamily(
                "qg_gateway_upstream_duration_seconds",
                "Upstream call time",
                labels=["environment", "model", "provider"],
            ),
        }
        for s in self.series.values():
            for (code, cache, error_class), n in s.requests.items():
                requests.add_metric([env, s.model, s.provider, code, cache, error_class], n)
            for outcome, n in s.attempts.items():
                attempts.add_metric([env, s.provider, s.model, outcome], n)
            if s.tokens_in or s.tokens_out:
                tokens.add_metric([env, s.provider, s.model, "input"], s.tokens_in)
                tokens.add_metric([env, s.provider, s.model, "output"], s.tokens_out)
            if s.cost:
                cost.add_metric([env, s.provider, s.model], s.cost)
            for verdict, n in s.outputs.items():
                outputs.add_metric([env, s.model, s.provider, verdict], n)
            for name, family in hists.items():
                hist: Hist = getattr(s, name)
                if hist.counts[-1] or any(hist.counts):
                    family.add_metric(
                        [env, s.model, s.provider], hist.cumulative(), sum_value=hist.total
                    )
        yield requests
        yield attempts
        yield tokens
        yield cost
        yield outputs
        yield from hists.values()
