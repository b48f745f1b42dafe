"""Environments: aliases, failover chains, traffic distribution and the runbook's thresholds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, field_validator

from quality_gates.config._base import LatencyMs, Ratio, StrictModel

ENVIRONMENT_NAMES = ("development", "staging", "production")
STANDARD_ALIASES = ("current", "previous-stable", "last-known-good", "backup")
RoutingStrategy = Literal["weighted", "priority", "latency"]


class Thresholds(StrictModel):
    """The runbook's key metrics; a gate or an alert compares against these."""

    p95_latency_ms: LatencyMs = Field(1500.0, gt=0, description="P95 latency must stay below")
    throughput_rps: PositiveFloat = Field(20.0, description="sustained requests/s must exceed")
    error_rate: Ratio = Field(0.02, description="error rate must stay below")
    accuracy: Ratio = Field(0.95, description="accuracy must exceed")
    satisfaction: float = Field(4.0, ge=1.0, le=5.0, description="mean 1-5 feedback must exceed")
    toxicity_rate: Ratio = Field(0.001, description="toxic answers must stay below")
    availability: Ratio = Field(0.999, description="provider availability must exceed")
    cache_hit_rate: Ratio = Field(0.80, description="cache hit rate must exceed")
    resource_utilization: Ratio = Field(0.80, description="gateway CPU/memory/queue use below")


class FailoverChain(StrictModel):
    """Where traffic for `primary` goes when it fails: secondary, then tertiary."""

    primary: str
    secondary: str
    tertiary: str | None = None

    @property
    def models(self) -> list[str]:
        """The chain in order, primary first."""
        return [m for m in (self.primary, self.secondary, self.tertiary) if m]


def parse_traffic(value: Any) -> dict[str, float]:
    """`bedrock:50,google:30,meta:20` or a mapping -> {provider: weight}."""
    if isinstance(value, str):
        weights: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, sep, number = part.partition(":")
            if not sep or not name.strip():
                raise ValueError(f"{part!r} is not provider:weight (example: bedrock:50,google:50)")
            try:
                weights[name.strip()] = float(number.strip().rstrip("%"))
            except ValueError:
                raise ValueError(
                    f"weight {number!r} for {name.strip()!r} is not a number"
                ) from None
        value = weights
    if not isinstance(value, dict):
        raise ValueError("traffic must be a mapping provider: weight or 'bedrock:50,google:50'")
    result = {str(k): float(v) for k, v in value.items()}
    for name, weight in result.items():
        if weight < 0:
            raise ValueError(f"weight for {name!r} is negative")
    if result and sum(result.values()) <= 0:
        raise ValueError("traffic weights add up to zero: at least one provider needs weight")
    return result


class Environment(StrictModel):
    """One deployment environment: which model each alias names and how traffic flows."""

    aliases: dict[str, str] = Field(
        default_factory=dict, description="initial aliases; the store owns them afterwards"
    )
    failover_chains: list[FailoverChain] = Field(default_factory=list)
    traffic: dict[str, float] = Field(
        default_factory=dict,
        description="provider -> the share of its own models' requests it keeps (100: all); "
        "empty: every provider keeps all (docs/routing.md)",
    )
    routing: RoutingStrategy = "weighted"
    allow_model_ids: bool = Field(
        True, description="requests may name a model id as well as an alias"
    )
    thresholds: Thresholds = Field(default_factory=Thresholds)
    cache_serve: Literal["off", "deterministic", "always"] | None = Field(
        None, description="overrides gateway.cache.serve in this environment"
    )

    @field_validator("traffic", mode="before")
    @classmethod
    def _parse_traffic(cls, value: Any) -> dict[str, float]:
        weights = parse_traffic(value)
        total = sum(weights.values())
        if weights and abs(total - 100.0) > 1e-6:
            raise ValueError(
                f"traffic weights add up to {total:g}, not 100 (nothing is rescaled: each is "
                "the share of its own models' requests a provider keeps, docs/routing.md); "
                "leave traffic empty for every provider to keep all of its own"
            )
        return weights

    def chain_for(self, model_id: str) -> FailoverChain | None:
        """The failover chain whose primary is `model_id`."""
        return next((c for c in self.failover_chains if c.primary == model_id), None)
