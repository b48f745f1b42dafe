"""Helpers for tests that start simulators: instant behaviour and adapters pointed at them."""

from __future__ import annotations

from typing import Any

from quality_gates.config import SimulatorFaults
from quality_gates.providers import (
    AnthropicProvider,
    BedrockProvider,
    GeminiProvider,
    HttpChatProvider,
    OpenAIProvider,
)
from quality_gates.providers._sigv4 import AwsCredentials, StaticCredentials
from quality_gates.simulator import SimulatorSpec

PROTOCOLS = ("openai", "anthropic", "gemini", "bedrock")
INSTANT: dict[str, Any] = {
    "latency_p50_ms": 0,
    "latency_p95_ms": 0,
    "ttft_p50_ms": 0,
    "ttft_p95_ms": 0,
    "token_delay_ms": 0,
}


def instant(**changes: Any) -> SimulatorFaults:
    """Behaviour with no delays, plus `changes`."""
    return SimulatorFaults.model_validate({**INSTANT, **changes})


def spec(protocol: str, *, name: str | None = None, **kw: Any) -> SimulatorSpec:
    """A simulator on a free port with instant behaviour unless `faults` is given."""
    kw.setdefault("faults", instant())
    kw.setdefault("seed", 7)
    return SimulatorSpec(name or protocol, protocol, **kw)


def adapter(protocol: str, base_url: str, *, key: str = "test-key", **kw: Any) -> HttpChatProvider:
    """The adapter for `protocol` pointed at `base_url`."""
    if protocol == "bedrock":
        keys = StaticCredentials(AwsCredentials(key, "secret"))
        return BedrockProvider("bedrock", base_url, region="us-east-1", credentials=keys, **kw)
    cls = {"openai": OpenAIProvider, "anthropic": AnthropicProvider, "gemini": GeminiProvider}
    return cls[protocol](protocol, base_url, api_key=key, **kw)
