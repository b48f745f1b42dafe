"""The gateway's settings (`gateway:` in quality-gates.yaml): where it listens, how it retries,
when breakers open, how the cache, the limits and the telemetry writer behave.

Every field has a default that works on one machine; `quality-gates serve` flags override
host, port, environment and workers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from quality_gates.config._base import Duration, Ratio, StrictModel

DEFAULT_PORT = 8080


class RetrySettings(StrictModel):
    """Retries of the same deployment: only retryable errors, with backoff and a budget."""

    max_retries: NonNegativeInt = Field(1, description="retries per deployment before failover")
    backoff: Duration = Field(0.05, description="first backoff; doubles per retry, full jitter")
    max_backoff: Duration = Field(2.0, description="longest backoff between two tries")
    max_retry_after: Duration = Field(
        2.0, description="a provider's retry-after longer than this fails over instead of waiting"
    )
    budget_ratio: Ratio = Field(
        0.2, description="retries may add at most this share of requests (retry budget)"
    )
    budget_min_per_second: NonNegativeInt = Field(
        10, description="retries allowed per second whatever the ratio"
    )
    route_retry_after: Duration = Field(
        1.0,
        description=(
            "when every deployment of a route failed with a retryable error, try the route "
            "once more after this long (jittered down to half), within the deadline and the "
            "retry budget: a blip shorter than this, or stale answers once degraded service "
            "is switched on, answer the request; 0 turns it off"
        ),
    )


class BreakerSettings(StrictModel):
    """Circuit breaker per deployment: closed -> open -> half-open -> closed."""

    consecutive_failures: PositiveInt = Field(5, description="open after this many in a row")
    error_rate: Ratio = Field(0.5, description="or when this share of the window failed")
    window: PositiveInt = Field(20, description="outcomes in the error-rate window")
    min_requests: PositiveInt = Field(10, description="outcomes needed before the rate counts")
    open_for: Duration = Field(10.0, description="cool-down before a half-open trial")
    close_after: PositiveInt = Field(2, description="successes in half-open that close it")
    probe_interval: Duration = Field(5.0, description="active probe of each deployment")


CacheServe = Literal["off", "deterministic", "always"]


class CacheSettings(StrictModel):
    """Exact-match response cache. Answers are recorded (for emergency stale serving) but
    served fresh only where `serve` (or the environment's `cache_serve`) allows it, or when
    the request asks with `x-qg-cache: allow`: a client asking for a sample at
    temperature 1 must not get an old one without asking."""

    enabled: bool = Field(True, description="record answers (memory-bounded)")
    serve: CacheServe = Field(
        "off",
        description="serve fresh hits: off (only when a request asks), deterministic "
        "(temperature 0 only), always",
    )
    backend: Literal["auto", "memory", "redis"] = Field(
        "auto", description="auto: Redis when QG_REDIS_URL is set, else in-process LRU"
    )
    ttl: Duration = Field(300.0, description="an entry is fresh this long")
    stale_for: Duration = Field(
        86400.0, description="kept this long after expiry for emergency stale serving"
    )
    max_entries: PositiveInt = 10_000
    max_bytes: PositiveInt = Field(64 * 1024 * 1024, description="memory bound of the LRU")


class KeyLimit(StrictModel):
    """Requests and tokens per minute for one API key."""

    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None


class LimitSettings(StrictModel):
    """Admission: concurrency, per-key limits (provider limits come from providers[].quotas)."""

    max_inflight: PositiveInt = Field(1024, description="requests served at once")
    per_key: KeyLimit = Field(default_factory=KeyLimit, description="default for every key")
    keys: dict[str, KeyLimit] = Field(default_factory=dict, description="per key name")
    queue_size: PositiveInt = Field(256, description="queue length when queuing is enabled")
    queue_timeout: Duration = Field(10.0, description="longest wait in the queue")


class TelemetrySettings(StrictModel):
    """The background writer of request, attempt and roll-up rows."""

    enabled: bool = True
    buffer: PositiveInt = Field(200_000, description="rows held while the store is slow or down")
    batch: PositiveInt = Field(5_000, description="rows per write transaction")
    flush_interval: Duration = 0.5
    store_text: bool = Field(False, description="keep prompt and answer text (PII-redacted)")
    max_text_chars: PositiveInt = 4_000


class GatewaySettings(StrictModel):
    """`quality-gates serve`: the OpenAI-compatible gateway."""

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    workers: PositiveInt = 1
    server: Literal["auto", "lean", "uvicorn", "granian"] = Field(
        "auto",
        description="HTTP server: auto is lean (the gateway's own HTTP/1.1 server, one "
        "process) for one worker and uvicorn (uvloop, httptools) for several; lean served "
        "13% more requests per second than uvicorn and added less latency, granian the most "
        "(bench/gateway.py)",
    )
    environment: str = "production"
    watch: bool = Field(
        True,
        description="run the alert evaluator inside serve; with several processes a lease in "
        "the store lets one act",
    )
    auth: Literal["auto", "required", "disabled"] = Field(
        "auto", description="auto: keys required once at least one active key exists"
    )
    metrics_require_key: bool = Field(False, description="/metrics needs an operator or admin key")
    deadline: Duration = Field(60.0, description="end-to-end time per request, all tries included")
    attempt_timeout: Duration = Field(
        30.0, description="one upstream try (to the first chunk when streaming)"
    )
    max_body_bytes: PositiveInt = Field(4 * 1024 * 1024, description="largest request body")
    lenient_fields: list[str] = Field(
        default_factory=list,
        description="request fields to ignore where the route cannot honour them (tools, "
        "response_format, n, seed, top_p, presence_penalty, frequency_penalty, logprobs, "
        "image_url, or an OpenAI field the gateway does not carry such as logit_bias); by "
        "default such a request is refused with a 400 naming the field and provider",
    )
    max_connections: PositiveInt | None = Field(
        None,
        description="open client connections per process; past it a new connection gets a "
        "fast 503 and is counted (qg_gateway_connections_refused_total). Default: serve raises "
        "the file-descriptor limit to its hard limit and keeps 128 + limits.max_inflight of "
        "them for upstream calls, the store and files",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses whose X-Forwarded-For is believed (uvicorn and granian); none by "
        "default. The lean server always uses the peer address",
    )
    header_timeout: Duration = Field(
        10.0, description="a request head must be complete this long after its first byte (408)"
    )
    control_poll: PositiveFloat = Field(0.25, description="seconds between control-version polls")
    heartbeat: Duration = Field(2.0, description="gateway_instances heartbeat interval")
    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    failover_pause: Duration = Field(
        30.0, description="pause between steps of gradual/canary failover and failback"
    )
