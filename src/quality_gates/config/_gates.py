"""Settings of the quality gates: statistics, the offline scorers, canary and performance."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from quality_gates.config._base import Duration, Ratio, StrictModel

MetricName = Literal[
    "accuracy",
    "score",
    "toxicity_rate",
    "pii_rate",
    "refusal_rate",
    "error_rate",
    "latency_mean_ms",
    "cost_mean",
]


class MetricPolicy(StrictModel):
    """How a candidate may differ from its baseline on one metric before the gate objects."""

    margin: Ratio = Field(description="non-inferiority margin: 2% (absolute, or of the baseline)")
    relative: bool = Field(False, description="margin is a fraction of the baseline's value")
    critical: bool = Field(True, description="an inferior result REJECTs (else CONDITIONAL)")
    decides: bool = Field(True, description="false: compared and reported, not in the verdict")


def _default_margins() -> dict[MetricName, MetricPolicy]:
    return {
        "accuracy": MetricPolicy(margin=0.02),
        "score": MetricPolicy(margin=0.02),
        "toxicity_rate": MetricPolicy(margin=0.005),
        "pii_rate": MetricPolicy(margin=0.005),
        "refusal_rate": MetricPolicy(margin=0.02, critical=False),
        "error_rate": MetricPolicy(margin=0.01, critical=False),
        # Offline latency and cost are reported; the performance gate and budgets decide them.
        "latency_mean_ms": MetricPolicy(margin=0.20, relative=True, critical=False, decides=False),
        "cost_mean": MetricPolicy(margin=0.20, relative=True, critical=False, decides=False),
    }


class CanaryMetric(StrictModel):
    """One canary comparison: which way is bad, how big a change matters, and whether it
    alone fails the canary."""

    bad: Literal["increase", "decrease"] = "increase"
    min_effect: Ratio = Field(0.10, description="relative change that matters (10% = 0.10)")
    critical: bool = True


def _default_canary_metrics() -> dict[str, CanaryMetric]:
    return {
        "latency_ms": CanaryMetric(min_effect=0.15),
        "ttft_ms": CanaryMetric(min_effect=0.20, critical=False),
        "output_tokens": CanaryMetric(min_effect=0.25, critical=False),
        "cost": CanaryMetric(min_effect=0.20, critical=False),
        "error_rate": CanaryMetric(min_effect=0.01),
        "refusal_rate": CanaryMetric(min_effect=0.02, critical=False),
        # Tool arguments or JSON an application cannot use: as bad as an error for it.
        "invalid_output_rate": CanaryMetric(min_effect=0.02),
    }


class CanarySettings(StrictModel):
    """Canary analysis: share, length, sequential looks, metrics."""

    traffic: float = Field(5.0, gt=0, le=100, description="percent of requests to the candidate")
    duration: Duration = 900.0
    looks: PositiveInt = Field(3, description="interim analyses; early stop on a clear failure")
    min_requests: PositiveInt = Field(50, description="per side, before a look can decide")
    alpha: Ratio = 0.05
    metrics: dict[str, CanaryMetric] = Field(default_factory=_default_canary_metrics)


class PerformanceSettings(StrictModel):
    """Load generation for the performance gate (development and staging)."""

    duration: Duration = 300.0
    rps: PositiveFloat | None = Field(None, description="open-loop rate; default: 2x threshold")
    concurrency: PositiveInt | None = Field(None, description="closed-loop workers instead")
    target: Literal["gateway", "provider"] = "provider"
    gateway_url: str = "http://127.0.0.1:8080"
    gateway_key: str | None = Field(None, description="${VAR} reference to a gateway API key")
    prompt: str = "Reply with the single word: ok"
    max_tokens: PositiveInt = 16


class GateSettings(StrictModel):
    """The `gates:` section."""

    alpha: Ratio = Field(0.05, description="one-sided error rate of each decision")
    power: Ratio = Field(0.8, description="for the sample size a CONDITIONAL suggests")
    bootstrap_resamples: PositiveInt = 10_000
    seed: int = 0
    dataset: str | None = Field(None, description="default dataset; none: the built-in one")
    default_scorer: str = Field("match", description="for items without assertions")
    judge_model: str | None = Field(None, description="model id for judge assertions")
    judge_k: PositiveInt = 3
    moderation: Literal["profanity", "judge", "none"] = Field(
        "profanity", description="what measures toxicity: profanity classifier, a judge, none"
    )
    pii: bool = True
    concurrency: PositiveInt = 16
    max_attempts: PositiveInt = 4
    max_error_share: Ratio = Field(
        0.10,
        description="a side whose calls failed more often than this is not compared (exit 4)",
    )
    threshold_policy: Literal["evidence", "point"] = Field(
        "evidence",
        description="evidence: a threshold passes only when its whole interval clears it",
    )
    temperature: float | None = Field(0.0, ge=0, le=2)
    max_tokens: PositiveInt | None = 512
    margins: dict[MetricName, MetricPolicy] = Field(default_factory=_default_margins)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    performance: PerformanceSettings = Field(default_factory=PerformanceSettings)

    def policy(self, metric: str) -> MetricPolicy:
        """The margin for `metric` (the built-in default when the config leaves it out)."""
        for name, policy in self.margins.items():
            if name == metric:
                return policy
        return next(p for n, p in _default_margins().items() if n == metric)
