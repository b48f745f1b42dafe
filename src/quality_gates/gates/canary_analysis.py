"""Canary versus baseline over the same window, Kayenta-style, each side judged on its own
model's outcome (see `canary_samples`).

Each metric has a bad direction, a minimum effect that matters and a critical flag.
Continuous metrics (latency, TTFT, tokens, cost) use a one-sided Mann-Whitney U test;
rates (errors, refusals, unusable structured outputs) a one-sided two-proportion z-test. A
metric FAILs only when the test rejects at the look's alpha AND the effect reaches the
minimum (so a statistically clear but tiny change passes). Sequential looks split alpha
evenly (Bonferroni over looks), which keeps the overall false-failure rate at alpha however
many looks stop early.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps

from quality_gates.gates.canary_samples import Side
from quality_gates.gates.verdict import GateVerdict

if TYPE_CHECKING:
    from quality_gates.config import CanaryMetric

CONTINUOUS = ("latency_ms", "ttft_ms", "output_tokens", "input_tokens", "cost")
RATES = ("error_rate", "refusal_rate", "invalid_output_rate")
# Judged on the models' own upstream attempts; the others on the answers they gave.
FROM_ATTEMPTS = ("error_rate", "latency_ms", "ttft_ms")


@dataclass
class MetricResult:
    """One metric at one look."""

    metric: str
    canary: float | None
    baseline: float | None
    effect: float | None
    p_value: float | None
    min_effect: float
    bad: str
    critical: bool
    outcome: str  # pass | fail | nodata
    test: str
    n_canary: int
    n_baseline: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass
class Look:
    """One interim (or the final) analysis."""

    index: int
    of: int
    alpha: float
    enough_data: bool
    metrics: list[MetricResult] = field(default_factory=list)
    sides: dict[str, Any] = field(default_factory=dict)
    share: dict[str, Any] = field(default_factory=dict)

    @property
    def critical_failures(self) -> list[MetricResult]:
        """Critical metrics that failed at this look."""
        return [m for m in self.metrics if m.critical and m.outcome == "fail"]

    @property
    def failures(self) -> list[MetricResult]:
        """Every metric that failed at this look."""
        return [m for m in self.metrics if m.outcome == "fail"]

    def verdict(self, final: bool) -> GateVerdict | None:
        """REJECT on a critical failure (at any look); at the final look APPROVE, or
        CONDITIONAL for too little data or a non-critical failure; None: keep looking."""
        if self.enough_data and self.critical_failures:
            return GateVerdict.REJECT
        if not final:
            return None
        if not self.enough_data:
            return GateVerdict.CONDITIONAL
        return GateVerdict.CONDITIONAL if self.failures else GateVerdict.APPROVE

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "look": self.index,
            "of": self.of,
            "alpha": self.alpha,
            "enough_data": self.enough_data,
            "metrics": [m.to_json() for m in self.metrics],
            "sides": self.sides,
            "share": self.share,
        }


def compare_continuous(
    canary: list[float], baseline: list[float], spec: CanaryMetric, alpha: float, metric: str
) -> MetricResult:
    """Mann-Whitney U (one-sided toward `spec.bad`) and the relative change in medians."""
    if len(canary) < 2 or len(baseline) < 2:
        return MetricResult(
            metric, None, None, None, None, spec.min_effect, spec.bad, spec.critical,
            "nodata", "Mann-Whitney U", len(canary), len(baseline),
        )  # fmt: skip
    alternative = "greater" if spec.bad == "increase" else "less"
    p = float(sps.mannwhitneyu(canary, baseline, alternative=alternative).pvalue)
    c_med, b_med = float(np.median(canary)), float(np.median(baseline))
    effect = (c_med - b_med) / b_med if b_med else (math.inf if c_med > 0 else 0.0)
    worse = effect if spec.bad == "increase" else -effect
    failed = p < alpha and worse >= spec.min_effect
    return MetricResult(
        metric, c_med, b_med, effect, p, spec.min_effect, spec.bad, spec.critical,
        "fail" if failed else "pass", "Mann-Whitney U on medians", len(canary), len(baseline),
    )  # fmt: skip


def compare_rates(
    canary_hits: int,
    canary_n: int,
    base_hits: int,
    base_n: int,
    spec: CanaryMetric,
    alpha: float,
    metric: str,
) -> MetricResult:
    """One-sided two-proportion z-test (pooled) and the absolute difference in rates."""
    if canary_n == 0 or base_n == 0:
        return MetricResult(
            metric, None, None, None, None, spec.min_effect, spec.bad, spec.critical,
            "nodata", "two-proportion z", canary_n, base_n,
        )  # fmt: skip
    p1, p2 = canary_hits / canary_n, base_hits / base_n
    pooled = (canary_hits + base_hits) / (canary_n + base_n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / canary_n + 1 / base_n))
    diff = p1 - p2
    signed = diff if spec.bad == "increase" else -diff
    p = float(sps.norm.sf(signed / se)) if se > 0 else (0.0 if signed > 0 else 1.0)
    failed = p < alpha and signed >= spec.min_effect
    return MetricResult(
        metric, p1, p2, diff, p, spec.min_effect, spec.bad, spec.critical,
        "fail" if failed else "pass", "two-proportion z (one-sided)", canary_n, base_n,
    )  # fmt: skip


def analyze(
    canary: Side,
    baseline: Side,
    *,
    metrics: Mapping[str, CanaryMetric],
    alpha: float,
    look: int = 1,
    looks: int = 1,
    min_requests: int = 50,
) -> Look:
    """Compare the candidate's side with the baseline's (see `canary_samples`) at look
    `look` of `looks`: the error rate is the share of requests each model failed itself,
    latency and TTFT those of its own attempts, tokens, cost and refusals of its answers."""
    per_look = alpha / max(1, looks)
    result = Look(
        look,
        looks,
        per_look,
        canary.judged >= min_requests and baseline.judged >= min_requests,
        sides={"canary": canary.to_json(), "baseline": baseline.to_json()},
    )
    for name, spec in metrics.items():
        if name in CONTINUOUS:
            result.metrics.append(
                compare_continuous(canary.values(name), baseline.values(name), spec, per_look, name)
            )
        elif name == "error_rate":
            result.metrics.append(
                compare_rates(
                    canary.failures,
                    canary.judged,
                    baseline.failures,
                    baseline.judged,
                    spec,
                    per_look,
                    name,
                )
            )
        elif name == "refusal_rate":
            c, b = canary.refusals, baseline.refusals
            result.metrics.append(
                compare_rates(sum(c), len(c), sum(b), len(b), spec, per_look, name)
            )
        elif name == "invalid_output_rate":
            result.metrics.append(
                compare_rates(
                    canary.outputs_invalid,
                    canary.outputs_checked,
                    baseline.outputs_invalid,
                    baseline.outputs_checked,
                    spec,
                    per_look,
                    name,
                )
            )
    return result
