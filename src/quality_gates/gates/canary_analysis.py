"""Canary versus baseline over the same window, Kayenta-style, on request rows.

Each metric has a bad direction, a minimum effect that matters and a critical flag.
Continuous metrics (latency, TTFT, tokens, cost) use a one-sided Mann-Whitney U test;
rates (errors, refusals) a one-sided two-proportion z-test. A metric FAILs only when the test
rejects at the look's alpha AND the effect reaches the minimum (so a statistically clear but
tiny change passes). Sequential looks split alpha evenly (Bonferroni over looks), which keeps
the overall false-failure rate at alpha however many looks stop early.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps

from quality_gates.gates.verdict import GateVerdict

if TYPE_CHECKING:
    from quality_gates.config import CanaryMetric

CONTINUOUS = ("latency_ms", "ttft_ms", "output_tokens", "input_tokens", "cost")
RATES = ("error_rate", "refusal_rate")


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
        }


def _value(row: Mapping[str, Any], metric: str) -> float | None:
    value = row.get(metric)
    return None if value is None else float(value)


def _values(rows: list[Mapping[str, Any]], metric: str) -> list[float]:
    """The metric over rows the model answered: not failed (a failed call's latency is not
    the model's) and not served from the gateway's cache (a hit says nothing of the model)."""
    return [
        v
        for r in rows
        if not _is_error(r) and not _from_cache(r) and (v := _value(r, metric)) is not None
    ]


def _from_cache(row: Mapping[str, Any]) -> bool:
    return str(row.get("cache") or "miss") in ("hit", "stale")


def _is_error(row: Mapping[str, Any]) -> bool:
    return row.get("error_class") is not None or str(row.get("status", "ok")) not in ("ok", "200")


def _is_refusal(row: Mapping[str, Any]) -> bool | None:
    answer = row.get("answer")
    if answer is None:
        return None
    from quality_gates.gates.scorers._text import is_refusal

    return is_refusal(str(answer))


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
    rows: Iterable[Mapping[str, Any]],
    *,
    canary_model: str,
    baseline_model: str,
    metrics: Mapping[str, CanaryMetric],
    alpha: float,
    look: int = 1,
    looks: int = 1,
    min_requests: int = 50,
) -> Look:
    """Compare canary rows (canary=1, model=candidate) with baseline rows (canary=0,
    model=baseline) at look `look` of `looks`."""
    canary_rows, base_rows = [], []
    for row in rows:
        if _from_cache(row):
            continue  # neither model answered it
        if row.get("canary") and row.get("model_id") == canary_model:
            canary_rows.append(row)
        elif not row.get("canary") and row.get("model_id") == baseline_model:
            base_rows.append(row)
    per_look = alpha / max(1, looks)
    result = Look(
        look,
        looks,
        per_look,
        len(canary_rows) >= min_requests and len(base_rows) >= min_requests,
    )
    for name, spec in metrics.items():
        if name in CONTINUOUS:
            ok_c, ok_b = _values(canary_rows, name), _values(base_rows, name)
            result.metrics.append(compare_continuous(ok_c, ok_b, spec, per_look, name))
        elif name == "error_rate":
            result.metrics.append(
                compare_rates(
                    sum(map(_is_error, canary_rows)),
                    len(canary_rows),
                    sum(map(_is_error, base_rows)),
                    len(base_rows),
                    spec,
                    per_look,
                    name,
                )
            )
        elif name == "refusal_rate":
            c = [x for r in canary_rows if (x := _is_refusal(r)) is not None]
            b = [x for r in base_rows if (x := _is_refusal(r)) is not None]
            result.metrics.append(
                compare_rates(sum(c), len(c), sum(b), len(b), spec, per_look, name)
            )
    return result
