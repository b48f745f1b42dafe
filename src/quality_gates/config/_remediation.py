"""Automatic remediation (`remediation:`) and the emergency procedure (`emergency:`).

Remediation reacts to firing alerts, per environment: a rollback trigger moves `current` back
to `previous-stable`; a provider trigger forces that provider's breakers open and moves its
traffic weight along the failover chain; once the provider has stayed healthy for
`failback.healthy_for`, its weight comes back in `failback.steps`. Golden probes and a
sampled share of live answers give the quality signal that quality triggers need.

    remediation:
      dry_run: false                 # true: log and record what would be done, change nothing
      cooldown: 10m
      rollback: {triggers: [error-rate-critical, p95-latency-critical, quality-score-drop-critical]}
      failover: {triggers: [provider-availability-critical, ...]}
      failback: {healthy_for: 5m, steps: [25%, 50%, 100%], step_interval: 1m}
      environments:
        development: {enabled: false}    # any key above, for one environment
"""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import Field, PositiveInt, field_validator, model_validator

from quality_gates.config._base import Duration, LatencyMs, Ratio, StrictModel

ROLLBACK_TRIGGERS = ["error-rate-critical", "p95-latency-critical", "quality-score-drop-critical"]
FAILOVER_TRIGGERS = [
    "provider-availability-critical",
    "provider-server-errors-critical",
    "provider-rate-limited-critical",
    "provider-p95-latency-critical",
]


class RollbackPolicy(StrictModel):
    """Which firing alerts roll `current` back, and to what."""

    enabled: bool = True
    triggers: list[str] = Field(
        default_factory=lambda: list(ROLLBACK_TRIGGERS), description="alert rule names"
    )
    target: str = Field("previous-stable", description="the alias rolled back to")
    verify_target: bool = Field(
        True, description="golden-probe the target first; never roll back onto a failing model"
    )
    min_target_score: Ratio = Field(
        0.8, description="the target's probe score it needs (with verify_target)"
    )


class FailoverPolicy(StrictModel):
    """Which firing alerts take a provider out of the route."""

    enabled: bool = True
    triggers: list[str] = Field(
        default_factory=lambda: list(FAILOVER_TRIGGERS), description="alert rule names"
    )
    open_breakers: bool = Field(True, description="force the provider's breakers open")


class FailbackPolicy(StrictModel):
    """Bringing a failed-over provider back, in steps, once it has stayed healthy."""

    enabled: bool = True
    healthy_for: Duration = Field(300.0, description="probes must pass this long first")
    probe_interval: Duration = Field(10.0, description="health probes while failed over")
    steps: list[Ratio] = Field(
        default_factory=lambda: [0.25, 0.5, 1.0],
        description="share of its weight the provider gets back at each step",
    )
    step_interval: Duration = Field(60.0, description="time between two steps, checked")

    @field_validator("steps")
    @classmethod
    def _rising(cls, steps: list[float]) -> list[float]:
        if not steps or steps[-1] != 1.0 or any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must rise and end at 100% (e.g. [25%, 50%, 100%])")
        return steps


class RemediationPolicy(StrictModel):
    """Remediation of one environment."""

    enabled: bool = True
    dry_run: bool = Field(False, description="record what would be done, change nothing")
    cooldown: Duration = Field(
        600.0, description="after an automatic action on a target, no other one on it"
    )
    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)
    failover: FailoverPolicy = Field(default_factory=FailoverPolicy)
    failback: FailbackPolicy = Field(default_factory=FailbackPolicy)


class ProbeSettings(StrictModel):
    """Golden probes: dataset items with expected answers, sent to the current model."""

    enabled: bool = True
    dataset: str | None = Field(None, description="default: gates.dataset, else the built-in")
    items: PositiveInt = Field(5, description="items per round")
    interval: Duration = Field(30.0, description="time between rounds")
    timeout: Duration = Field(15.0, description="time allowed for one answer")
    scorer: str = Field("match", description="accuracy scorer for items without assertions")
    pool: PositiveInt = Field(100, description="dataset items rotated through")


class SamplingSettings(StrictModel):
    """A share of live answers scored off the request path by reference-free scorers."""

    enabled: bool = True
    share: Ratio = Field(0.05, description="share of answered requests scored")
    max_per_second: PositiveInt = Field(20, description="bound on scored answers per second")
    queue: PositiveInt = Field(1000, description="answers waiting to be scored (then dropped)")


class RemediationSettings(RemediationPolicy):
    """Remediation defaults, per-environment overrides, probes and live sampling."""

    environments: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-environment overrides of the keys above"
    )
    probes: ProbeSettings = Field(default_factory=ProbeSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)

    @model_validator(mode="after")
    def _overrides_valid(self) -> RemediationSettings:
        for name in self.environments:
            self.policy(name)
        return self

    def policy(self, environment: str) -> RemediationPolicy:
        """The policy in force for `environment` (defaults with its overrides laid over)."""
        base = self.model_dump(
            mode="python", exclude={"environments", "probes", "sampling"}, by_alias=True
        )
        override = self.environments.get(environment) or {}
        merged = _deep_merge(base, override)
        try:
            return RemediationPolicy.model_validate(merged)
        except ValueError as exc:
            raise ValueError(f"environments.{environment}: {exc}") from None


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class DegradedTargets(StrictModel):
    """The relaxed targets in force while degraded service is on."""

    p95_latency_ms: LatencyMs = Field(5000.0, gt=0, description="P95 latency must stay below")
    accuracy: Ratio = Field(0.80, description="accuracy must exceed")
    availability: Ratio = Field(0.95, description="answered requests must exceed")


class EmergencySettings(StrictModel):
    """`emergency`: degraded service (stale cache, queueing, relaxed targets) or a stop."""

    degraded: DegradedTargets = Field(default_factory=DegradedTargets)
    queue_size: PositiveInt = Field(500, description="requests queued in degraded mode")
    queue_timeout: Duration = Field(30.0, description="longest wait in the degraded queue")
    retry_after: Duration = Field(
        60.0, description="what a shut-down gateway tells clients to wait"
    )
