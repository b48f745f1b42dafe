"""Prometheus metrics of one gateway process, in its own CollectorRegistry.

Names follow `qg_gateway_<name>_<unit>`; labels stay low-cardinality (environment, model,
provider, status class, cache result, error class), never a key, prompt or request id.
Gauges that describe state (breakers, queue, cache size, telemetry buffer) are computed at
scrape time by a custom collector rather than updated on the request path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from quality_gates.gateway._breaker import STATE_VALUE, BreakerView
from quality_gates.gateway._series import SeriesBoard


@dataclass
class GatewayState:
    """Values read at scrape time."""

    environment: str
    breakers: Callable[[], list[BreakerView]]
    inflight: Callable[[], int]
    inflight_limit: Callable[[], int]
    queue_depth: Callable[[], int]
    queue_limit: Callable[[], int]
    cache_stats: Callable[[], tuple[int, int]]
    telemetry: Callable[[], tuple[int, int, int, int]]  # buffered, dropped, written, errors
    control_version: Callable[[], int]
    store_ok: Callable[[], bool]


class _StateCollector(Collector):
    def __init__(self, state: GatewayState) -> None:
        self.state = state

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Nothing at registration time: the values only exist once the app is assembled.
        return []

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        s = self.state
        env = s.environment
        breaker = GaugeMetricFamily(
            "qg_gateway_breaker_state",
            "Circuit breaker per deployment: 0 closed, 1 half-open, 2 open",
            labels=["environment", "deployment", "provider", "forced"],
        )
        for view in s.breakers():
            breaker.add_metric(
                [env, view.deployment, view.deployment.split("/", 1)[0], view.forced or ""],
                STATE_VALUE[view.state],
            )
        yield breaker
        for name, text, value in (
            ("qg_gateway_inflight_requests", "Requests being served now", s.inflight()),
            ("qg_gateway_inflight_limit", "Concurrency limit", s.inflight_limit()),
            ("qg_gateway_queue_depth", "Requests waiting in the admission queue", s.queue_depth()),
            ("qg_gateway_queue_limit", "Admission queue size (0 when disabled)", s.queue_limit()),
            ("qg_gateway_control_version", "Control-plane version applied", s.control_version()),
            ("qg_gateway_store_up", "1 when the last store access worked", int(s.store_ok())),
        ):
            gauge = GaugeMetricFamily(name, text, labels=["environment"])
            gauge.add_metric([env], value)
            yield gauge
        entries, size = s.cache_stats()
        for name, text, value in (
            ("qg_gateway_cache_entries", "Entries in the in-process cache", entries),
            ("qg_gateway_cache_bytes", "Approximate bytes held by the in-process cache", size),
        ):
            gauge = GaugeMetricFamily(name, text, labels=["environment"])
            gauge.add_metric([env], value)
            yield gauge
        buffered, dropped, written, errors = s.telemetry()
        gauge = GaugeMetricFamily(
            "qg_gateway_telemetry_buffered_rows", "Telemetry rows waiting", labels=["environment"]
        )
        gauge.add_metric([env], buffered)
        yield gauge
        for name, text, value in (
            ("qg_gateway_telemetry_dropped_rows", "Telemetry rows dropped (buffer full)", dropped),
            ("qg_gateway_telemetry_written_requests", "Request rows written", written),
            ("qg_gateway_telemetry_write_errors", "Failed telemetry writes", errors),
        ):
            counter = CounterMetricFamily(name, text, labels=["environment"])
            counter.add_metric([env], value)
            yield counter


class _Families(Collector):
    def __init__(self, board: SeriesBoard) -> None:
        self.board = board

    def describe(self) -> Iterable[CounterMetricFamily]:
        return []

    def collect(self) -> Iterable[CounterMetricFamily | HistogramMetricFamily]:
        return self.board.collect()


class GatewayMetrics:
    """The gateway's counters and histograms."""

    def __init__(self, state: GatewayState) -> None:
        # `_created` series double the exposition and no dashboard here reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.environment = state.environment
        self.failovers = Counter(
            "qg_gateway_failovers",
            "Moves to the next deployment of a chain",
            ["environment", "from_provider", "error_class"],
            registry=r,
        )
        self.retries = Counter(
            "qg_gateway_retries",
            "Retries of the same deployment",
            ["environment", "provider"],
            registry=r,
        )
        self.panic = Counter(
            "qg_gateway_panic_attempts",
            "Deployments tried past their open breaker because none of the route could serve",
            ["environment", "provider"],
            registry=r,
        )
        self.retry_budget_exhausted = Counter(
            "qg_gateway_retry_budget_exhausted",
            "Retries skipped because the retry budget was spent",
            ["environment"],
            registry=r,
        )
        self.cache = Counter(
            "qg_gateway_cache_lookups",
            "Cache lookups by result",
            ["environment", "result"],
            registry=r,
        )
        self.stale_served = Counter(
            "qg_gateway_stale_served",
            "Stale cache entries served in emergency mode",
            ["environment"],
            registry=r,
        )
        self.rate_limited = Counter(
            "qg_gateway_rate_limited",
            "Requests refused or rerouted by a rate limit",
            ["environment", "scope"],
            registry=r,
        )
        self.queue_rejected = Counter(
            "qg_gateway_queue_rejected",
            "Requests refused: queue full or timed out",
            ["environment", "reason"],
            registry=r,
        )
        self.stream_interrupted = Counter(
            "qg_gateway_streams_interrupted",
            "Streams that broke after the first byte (ended with an SSE error)",
            ["environment", "provider"],
            registry=r,
        )
        self.probes = Counter(
            "qg_gateway_probes",
            "Active probes by result",
            ["environment", "deployment", "result"],
            registry=r,
        )
        self.auth_failures = Counter(
            "qg_gateway_auth_failures",
            "Requests refused with 401: key missing, malformed, unknown or revoked",
            ["environment", "reason"],
            registry=r,
        )
        self.http_requests = Counter(
            "qg_gateway_http_requests",
            "Answered requests to the endpoints other than chat completions (which "
            "qg_gateway_requests_total counts), by route, HTTP status and error class",
            ["environment", "route", "method", "code", "error_class"],
            registry=r,
        )
        self.feedback = Counter(
            "qg_gateway_feedback",
            "User feedback received by score",
            ["environment", "score"],
            registry=r,
        )
        self.control_reloads = Counter(
            "qg_gateway_control_reloads",
            "Route tables reloaded after a control change",
            ["environment"],
            registry=r,
        )
        self.started = time.time()
        r.register(_StateCollector(state))
        self.series = SeriesBoard(state.environment)
        r.register(_Families(self.series))
