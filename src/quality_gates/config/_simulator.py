"""How a simulated provider behaves: latency, errors, outage, stream faults and answer quality.

A simulator's effective behaviour is its profile (healthy by default) with the keys written
under `faults:` laid over it; `PUT /_sim/faults` changes it live the same way. `models:`
overrides any key for one model name, so a candidate and a baseline can differ on one port.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, PositiveInt, ValidationError, model_validator

from quality_gates.config._base import Duration, LatencyMs, Ratio, StrictModel

SimulatorProfile = Literal["healthy", "degraded", "outage", "throttled", "flaky-stream"]
OutageMode = Literal["unavailable", "reset"]
StreamCutMode = Literal["drop", "error"]

# The error classes a simulator draws per request, in the order they are drawn.
ERROR_RATE_FIELDS = (
    "server_error_rate",
    "overloaded_rate",
    "rate_limit_rate",
    "hang_rate",
    "reset_rate",
    "content_filter_rate",
)


class SimulatorFaults(StrictModel):
    """Every behaviour knob of one simulated provider (or of one model on it)."""

    latency_p50_ms: LatencyMs = Field(250.0, ge=0, description="whole answer, median")
    latency_p95_ms: LatencyMs = Field(700.0, ge=0, description="whole answer, 95th percentile")
    ttft_p50_ms: LatencyMs = Field(150.0, ge=0, description="streams: time to first token")
    ttft_p95_ms: LatencyMs = Field(400.0, ge=0)
    token_delay_ms: LatencyMs = Field(8.0, ge=0, description="streams: delay per output token")
    server_error_rate: Ratio = Field(0.0, description="500 internal error")
    overloaded_rate: Ratio = Field(0.0, description="503 (Anthropic: 529) overloaded")
    rate_limit_rate: Ratio = Field(0.0, description="429 with retry-after")
    retry_after: Duration = Field(1.0, description="retry-after sent with a 429")
    hang_rate: Ratio = Field(0.0, description="no answer until the client gives up")
    hang_for: Duration = Field(300.0, description="how long a hung request holds on")
    reset_rate: Ratio = Field(0.0, description="connection reset before any byte")
    content_filter_rate: Ratio = Field(0.0, description="the provider's content-filter refusal")
    stream_cut_rate: Ratio = Field(0.0, description="streams cut at a random point")
    stream_cut_mode: StreamCutMode = Field(
        "drop",
        description="drop: the connection closes mid-body; error: the protocol's "
        "in-stream error event, then a clean end",
    )
    outage: bool = Field(False, description="every request fails (see outage_mode)")
    outage_mode: OutageMode = Field(
        "unavailable", description="unavailable: 503 in the protocol's shape; reset: RST"
    )
    accuracy: Ratio = Field(0.97, description="answer-key items answered right")
    toxicity_rate: Ratio = Field(0.0, description="answers with a toxic sentence added")
    pii_rate: Ratio = Field(0.0, description="answers with an email and phone number added")
    answer_tokens_p50: PositiveInt = Field(60, description="generic answers: median length")
    answer_tokens_p95: PositiveInt = Field(180)
    malformed_tool_args_rate: Ratio = Field(
        0.0, description="tool calls whose arguments are cut-off JSON (a quality fault)"
    )
    invalid_json_rate: Ratio = Field(
        0.0, description="JSON answers (response_format) that break the requested schema"
    )
    embedding_dimensions: PositiveInt = Field(256, description="length of every embedding")
    answer_key: str | None = Field(
        None, description="dataset file (JSON, JSONL, CSV, YAML) of items with input+expected"
    )
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="model name -> overrides of any key above"
    )

    @model_validator(mode="after")
    def _consistent(self) -> SimulatorFaults:
        if self.latency_p95_ms < self.latency_p50_ms:
            raise ValueError("latency_p95_ms must be at least latency_p50_ms")
        if self.ttft_p95_ms < self.ttft_p50_ms:
            raise ValueError("ttft_p95_ms must be at least ttft_p50_ms")
        if self.answer_tokens_p95 < self.answer_tokens_p50:
            raise ValueError("answer_tokens_p95 must be at least answer_tokens_p50")
        total = sum(getattr(self, name) for name in ERROR_RATE_FIELDS)
        if total > 1.0 + 1e-9:
            raise ValueError(f"error rates add up to {total:.0%}; at most 100% of requests fail")
        for name in self.models:
            try:
                self.for_model(name)
            except ValidationError as exc:
                problem = exc.errors()[0]
                where = ".".join(str(p) for p in problem["loc"])
                raise ValueError(
                    f"models.{name}: {where + ': ' if where else ''}{problem['msg']}"
                ) from None
        return self

    def updated(self, changes: dict[str, Any]) -> SimulatorFaults:
        """A copy with `changes` applied (validated; `models` entries merge per model)."""
        data = self.model_dump(mode="json")
        for key, value in changes.items():
            if key == "models" and isinstance(value, dict):
                merged = dict(data["models"])
                for name, overrides in value.items():
                    if overrides is None:
                        merged.pop(name, None)
                    else:
                        merged[name] = {**merged.get(name, {}), **overrides}
                data["models"] = merged
            else:
                data[key] = value
        return SimulatorFaults.model_validate(data)

    def for_model(self, model: str) -> SimulatorFaults:
        """The behaviour for requests naming `model`: this, with its overrides applied."""
        overrides = self.models.get(model)
        if not overrides:
            return self
        if "models" in overrides:
            raise ValueError("per-model overrides cannot hold another models section")
        data = {**self.model_dump(mode="json"), **overrides, "models": {}}
        return SimulatorFaults.model_validate(data)

    @property
    def error_rate(self) -> float:
        """The share of requests that fail before an answer starts."""
        return math.fsum(getattr(self, name) for name in ERROR_RATE_FIELDS)


PROFILES: dict[str, dict[str, Any]] = {
    "healthy": {},
    "degraded": {
        "latency_p50_ms": 900.0,
        "latency_p95_ms": 3000.0,
        "ttft_p50_ms": 600.0,
        "ttft_p95_ms": 2000.0,
        "token_delay_ms": 25.0,
        "server_error_rate": 0.04,
        "overloaded_rate": 0.02,
        "rate_limit_rate": 0.02,
        "accuracy": 0.90,
    },
    "outage": {"outage": True},
    "throttled": {"rate_limit_rate": 0.5, "retry_after": 2.0},
    "flaky-stream": {"stream_cut_rate": 0.3, "reset_rate": 0.05},
}


def profile_faults(profile: str | None, faults: SimulatorFaults | None = None) -> SimulatorFaults:
    """The profile's behaviour with the keys set in `faults` laid over it."""
    name = profile or "healthy"
    if name not in PROFILES:
        raise ValueError(f"unknown simulator profile {name!r} (known: {', '.join(PROFILES)})")
    base = SimulatorFaults.model_validate(PROFILES[name])
    if faults is None:
        return base
    explicit = {key: getattr(faults, key) for key in faults.model_fields_set}
    return base.updated(explicit) if explicit else base
