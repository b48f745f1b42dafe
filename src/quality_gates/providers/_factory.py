"""From a provider in the config to a live adapter; cost from tokens; live health probes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from quality_gates.errors import ConfigError, CredentialMissing
from quality_gates.providers._types import ProbeResult, Usage

if TYPE_CHECKING:
    from quality_gates.config import Model, Provider, QualityGatesConfig
    from quality_gates.providers._base import HttpChatProvider

# What an adapter sends to a simulator when no QG_SIMULATOR_API_KEY is set: the simulator
# accepts any key unless it was started with one.
SIMULATOR_KEY = "qg-simulator"
DEFAULT_REGION = "us-east-1"
DEFAULT_PROBE_TIMEOUT = 10.0


def cost_of(model: Model, usage: Usage) -> float:
    """USD for `usage` at `model`'s configured prices."""
    return model.cost(usage.input_tokens, usage.output_tokens)


def build_provider(
    provider: Provider,
    models: Iterable[Model] = (),
    *,
    base_url: str | None = None,
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
) -> HttpChatProvider:
    """The adapter for `provider` (its models give prices and the probe model).

    Raises CredentialMissing naming the variable when a required credential is unset.
    `base_url` overrides where it connects (a simulator started on port 0).
    """
    from quality_gates.providers._anthropic import AnthropicProvider
    from quality_gates.providers._bedrock import BedrockProvider
    from quality_gates.providers._gemini import GeminiProvider
    from quality_gates.providers._openai import OpenAIProvider
    from quality_gates.providers._sigv4 import AwsCredentials, StaticCredentials

    own = {m.provider_model: m for m in models if m.provider == provider.name}
    url = base_url or provider.base_url
    if provider.kind == "simulator" and base_url is None and not provider.port:
        raise ConfigError(
            f"simulator {provider.name!r} has no port, so nothing can reach it",
            hint="set providers[].port, or pass the address `quality-gates simulate` printed",
        )
    common: dict[str, Any] = {
        "timeout": provider.timeout,
        "max_connections": provider.max_connections,
        "models": own,
        "probe_model": next(iter(own), None),
        "probe_timeout": probe_timeout,
    }
    protocol = provider.wire_protocol
    region = provider.region or DEFAULT_REGION
    if provider.kind == "simulator":
        key = provider.credential("api_key") or SIMULATOR_KEY
        if protocol == "bedrock":
            keys = StaticCredentials(AwsCredentials(key, SIMULATOR_KEY))
            return BedrockProvider(provider.name, url, region=region, credentials=keys, **common)
        if protocol == "gemini":
            return GeminiProvider(provider.name, url, api_key=key, **common)
        if protocol == "anthropic":
            return AnthropicProvider(provider.name, url, api_key=key, **common)
        return OpenAIProvider(provider.name, url, api_key=key, **common)
    if provider.kind == "bedrock":
        access_key = provider.credential("access_key_id")
        secret = provider.credential("secret_access_key")
        static = None
        if access_key and secret:
            token = provider.credential("session_token")
            static = StaticCredentials(AwsCredentials(access_key, secret, token))
        return BedrockProvider(
            provider.name,
            url,
            region=region,
            credentials=static,
            bearer_token=provider.credential("bearer_token"),
            profile=provider.credential("profile"),
            **common,
        )
    if provider.kind == "gemini":
        return GeminiProvider(provider.name, url, api_key=provider.credential("api_key"), **common)
    if provider.kind == "anthropic":
        return AnthropicProvider(
            provider.name, url, api_key=provider.credential("api_key"), **common
        )
    return OpenAIProvider(provider.name, url, api_key=provider.credential("api_key"), **common)


async def probe_provider(
    provider: Provider, models: Iterable[Model] = (), *, timeout: float = DEFAULT_PROBE_TIMEOUT
) -> ProbeResult:
    """A live probe of one provider; raises CredentialMissing before any traffic."""
    adapter = build_provider(provider, models, probe_timeout=timeout)
    try:
        return await adapter.probe()
    finally:
        await adapter.close()


async def probe_providers(
    config: QualityGatesConfig,
    names: Iterable[str] | None = None,
    *,
    timeout: float = DEFAULT_PROBE_TIMEOUT,
) -> list[ProbeResult]:
    """Probe `names` (default: every provider) concurrently; an unset credential is an
    unhealthy result with error class `credentials`, not an exception."""
    wanted = list(names) if names is not None else [p.name for p in config.providers]

    async def one(name: str) -> ProbeResult:
        provider = config.provider(name)
        if provider is None:
            return ProbeResult(name, False, 0.0, "bad_request", "not in the config")
        started = time.perf_counter()
        try:
            return await probe_provider(provider, config.models, timeout=timeout)
        except CredentialMissing as exc:
            return ProbeResult(name, False, 0.0, "credentials", str(exc))
        except ConfigError as exc:
            elapsed = (time.perf_counter() - started) * 1000.0
            return ProbeResult(name, False, elapsed, "config", str(exc))

    return list(await asyncio.gather(*(one(name) for name in wanted)))


def provider_health(
    config: QualityGatesConfig,
    names: Iterable[str] | None = None,
    *,
    timeout: float = DEFAULT_PROBE_TIMEOUT,
) -> list[dict[str, Any]]:
    """Live health of providers as JSON-ready rows (for `status` and reports)."""
    results = asyncio.run(probe_providers(config, names, timeout=timeout))
    return [probe_to_dict(r, config) for r in results]


def probe_to_dict(result: ProbeResult, config: QualityGatesConfig | None = None) -> dict[str, Any]:
    """One probe as JSON-ready data."""
    provider = config.provider(result.provider) if config is not None else None
    return {
        "provider": result.provider,
        "kind": provider.kind if provider else None,
        "protocol": provider.wire_protocol if provider else None,
        "healthy": result.healthy,
        "status": "HEALTHY" if result.healthy else "UNHEALTHY",
        "latency_ms": round(result.latency_ms, 1),
        "error_class": result.error_class,
        "detail": result.detail,
        "checked": result.checked,
    }
