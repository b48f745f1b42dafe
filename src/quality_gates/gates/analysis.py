"""From per-item outcomes to metrics with intervals, paired comparisons and a verdict.

Pass/fail metrics use the exact McNemar machinery (Clopper-Pearson on the discordant split,
the null moved to the margin); continuous ones the paired bootstrap. Holm's step-down
correction runs over the compared metrics, once for the non-inferiority family and once for
the inferiority family. See `quality_gates.gates.stats` for the tests themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from quality_gates.gates import stats
from quality_gates.gates.tally import Outcome, Tally
from quality_gates.gates.verdict import GateVerdict, combine

if TYPE_CHECKING:
    from quality_gates.config import GateSettings


@dataclass
class Metric:
    """A measured value with its interval (for rates) and sample size."""

    name: str
    value: float | None
    n: int
    low: float | None = None
    high: float | None = None
    unit: str = ""


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarize(tally: Tally, role: str, confidence: float = 0.95) -> dict[str, Metric]:
    """Accuracy (Wilson), rates, latency percentiles, tokens and cost for one role."""
    outcomes = list(tally.flat(role))
    n = len(outcomes)
    items = len(tally.outcomes(role))

    def rate(name: str, hits: int, total: int) -> Metric:
        interval = stats.wilson_interval(hits, total, confidence)
        value = hits / total if total else None
        return Metric(name, value, total, interval.low, interval.high, "ratio")

    answered = [o for o in outcomes if o.error_class is None]
    latencies = [o.latency_ms for o in answered]
    ttfts = [o.ttft_ms for o in answered if o.ttft_ms > 0]
    costs = [o.cost for o in outcomes]
    metrics = [
        rate("accuracy", sum(o.passed for o in outcomes), n),
        Metric("score", (sum(o.score for o in outcomes) / n) if n else None, n),
        rate("error_rate", sum(o.error_class is not None for o in outcomes), n),
        rate("toxicity_rate", sum(o.toxic for o in answered), len(answered)),
        rate("pii_rate", sum(o.pii for o in answered), len(answered)),
        rate("refusal_rate", sum(o.refused for o in answered), len(answered)),
        Metric("latency_mean_ms", float(np.mean(latencies)) if latencies else None, len(latencies)),
        Metric("latency_p50_ms", _percentile(latencies, 50), len(latencies), unit="ms"),
        Metric("latency_p95_ms", _percentile(latencies, 95), len(latencies), unit="ms"),
        Metric("latency_p99_ms", _percentile(latencies, 99), len(latencies), unit="ms"),
        Metric("ttft_p95_ms", _percentile(ttfts, 95), len(ttfts), unit="ms"),
        Metric("cost_total", float(sum(costs)), n, unit="usd"),
        Metric("cost_mean", float(np.mean(costs)) if costs else None, n, unit="usd"),
        Metric("input_tokens", float(sum(o.input_tokens for o in outcomes)), n),
        Metric("output_tokens", float(sum(o.output_tokens for o in outcomes)), n),
        Metric("cached", float(sum(o.cached for o in outcomes)), n),
        Metric("items", float(items), items),
    ]
    return {m.name: m for m in metrics}


@dataclass
class Comparison:
    """Candidate versus baseline on one metric, paired by item."""

    metric: str
    higher_is_better: bool
    baseline: float
    candidate: float
    improvement: float
    low: float
    high: float
    margin: float
    test: str
    p_noninferior: float
    p_inferior: float
    critical: bool
    n: int
    sd: float
    decides: bool = True
    p_two_sided: float | None = None
    p_noninferior_adj: float = 1.0
    p_inferior_adj: float = 1.0
    verdict: GateVerdict = GateVerdict.CONDITIONAL
    sample_size: int | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        data = asdict(self)
        data["verdict"] = self.verdict.value
        return data


# metric -> (outcome -> value, higher is better, binary)
EXTRACTORS: dict[str, tuple[Callable[[Outcome], float], bool, bool]] = {
    "accuracy": (lambda o: float(o.passed), True, True),
    "score": (lambda o: o.score, True, False),
    "toxicity_rate": (lambda o: float(o.toxic), False, True),
    "pii_rate": (lambda o: float(o.pii), False, True),
    "refusal_rate": (lambda o: float(o.refused), False, True),
    "error_rate": (lambda o: float(o.error_class is not None), False, True),
    "latency_mean_ms": (lambda o: o.latency_ms, False, False),
    "cost_mean": (lambda o: o.cost, False, False),
}


def _per_item(tally: Tally, role: str, ids: list[str], fn: Callable[[Outcome], float]) -> Any:
    outcomes = tally.outcomes(role)
    return np.array([sum(fn(o) for o in outcomes[i]) / len(outcomes[i]) for i in ids])


def compare(
    tally: Tally,
    settings: GateSettings,
    *,
    metrics: list[str],
    resamples: int | None = None,
) -> list[Comparison]:
    """Paired comparisons of candidate against baseline for `metrics`, Holm-corrected."""
    ids = tally.paired_ids()
    n = len(ids)
    if n == 0:
        return []
    alpha = settings.alpha
    results: list[Comparison] = []
    for name in metrics:
        fn, higher, binary = EXTRACTORS[name]
        policy = settings.policy(name)
        base = _per_item(tally, "baseline", ids, fn)
        cand = _per_item(tally, "candidate", ids, fn)
        sign = 1.0 if higher else -1.0
        base_mean, cand_mean = float(base.mean()), float(cand.mean())
        margin = policy.margin * abs(base_mean) if policy.relative else policy.margin
        improvement = sign * (cand_mean - base_mean)
        e = sign * (cand - base)
        sd = float(e.std(ddof=0))
        is_binary = (
            binary
            and bool(np.all((base == 0) | (base == 1)))
            and bool(np.all((cand == 0) | (cand == 1)))
        )
        if is_binary:
            better = int(np.sum(e > 0))
            worse = int(np.sum(e < 0))
            p_ni, p_inf = stats.paired_binary_noninferiority(n, worse, better, margin)
            interval = stats.paired_binary_interval(n, worse, better, 1 - 2 * alpha)
            two_sided = stats.mcnemar_from_counts(n, worse, better).p_value
            test = "exact McNemar (conditional binomial at the margin)"
        else:
            boot = stats.paired_bootstrap(
                base * sign,
                cand * sign,
                resamples=resamples or settings.bootstrap_resamples,
                confidence=1 - 2 * alpha,
                seed=settings.seed,
            )
            p_ni = boot.share_at_or_below(-margin)
            p_inf = boot.share_at_or_above(-margin)
            interval = boot.interval
            two_sided = None
            test = f"paired bootstrap ({len(boot.distribution)} resamples, percentile)"
        results.append(
            Comparison(
                metric=name,
                higher_is_better=higher,
                baseline=base_mean,
                candidate=cand_mean,
                improvement=improvement,
                low=interval.low,
                high=interval.high,
                margin=margin,
                test=test,
                p_noninferior=p_ni,
                p_inferior=p_inf,
                critical=policy.critical,
                decides=policy.decides,
                n=n,
                sd=sd,
                p_two_sided=two_sided,
            )
        )
    _decide(results, alpha, settings.power)
    return results


def _decide(results: list[Comparison], alpha: float, power: float) -> None:
    """Holm within each family: the metrics that decide, and (apart) those only reported."""
    for family in ([r for r in results if r.decides], [r for r in results if not r.decides]):
        if family:
            _decide_family(family, alpha, power)


def _decide_family(results: list[Comparison], alpha: float, power: float) -> None:
    adjusted_ni = stats.holm([r.p_noninferior for r in results])
    adjusted_inf = stats.holm([r.p_inferior for r in results])
    family = len(results)
    for result, p_ni, p_inf in zip(results, adjusted_ni, adjusted_inf, strict=True):
        result.p_noninferior_adj, result.p_inferior_adj = p_ni, p_inf
        if p_ni < alpha:
            result.verdict = GateVerdict.APPROVE
        elif p_inf < alpha:
            result.verdict = GateVerdict.REJECT if result.critical else GateVerdict.CONDITIONAL
            result.note = "worse than the margin" + ("" if result.critical else " (not critical)")
        else:
            result.verdict = GateVerdict.CONDITIONAL
            # Bonferroni's alpha / m is the strictest level Holm may need: a safe suggestion.
            result.sample_size = stats.sample_size_to_decide(
                result.improvement, result.margin, result.sd, alpha / family, power
            )
            result.note = (
                f"undecided: about {result.sample_size:,} items would decide"
                if result.sample_size
                else "undecided: the observed difference sits on the margin"
            )


@dataclass
class ThresholdCheck:
    """The candidate against one of the environment's thresholds."""

    metric: str
    operator: str
    threshold: float
    value: float | None
    low: float | None
    high: float | None
    verdict: GateVerdict
    critical: bool = True
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        data = asdict(self)
        data["verdict"] = self.verdict.value
        return data


def check_thresholds(
    summary: dict[str, Metric], thresholds: dict[str, Any], *, measured: set[str]
) -> list[ThresholdCheck]:
    """Accuracy, toxicity and error rate against the environment's thresholds.

    A point estimate on the right side passes; on the wrong side it REJECTs when the whole
    interval is there too, and is CONDITIONAL while the interval still reaches the threshold.
    """
    checks = []
    spec = (
        ("accuracy", ">", "accuracy"),
        ("toxicity_rate", "<", "toxicity_rate"),
        ("error_rate", "<", "error_rate"),
    )
    for metric, op, key in spec:
        if metric not in measured or key not in thresholds:
            continue
        m = summary[metric]
        threshold = float(thresholds[key])
        if m.value is None:
            continue
        ok = m.value >= threshold if op == ">" else m.value <= threshold
        beyond = (
            (m.high is not None and m.high < threshold)
            if op == ">"
            else (m.low is not None and m.low > threshold)
        )
        verdict = (
            GateVerdict.APPROVE
            if ok
            else (GateVerdict.REJECT if beyond else GateVerdict.CONDITIONAL)
        )
        checks.append(ThresholdCheck(metric, op, threshold, m.value, m.low, m.high, verdict))
    return checks


@dataclass
class Decision:
    """The gate's verdict and the reasons for it."""

    verdict: GateVerdict
    reasons: list[str] = field(default_factory=list)
    sample_size: int | None = None


def decide(comparisons: list[Comparison], checks: list[ThresholdCheck]) -> Decision:
    """Worst of the comparisons and the threshold checks, with one reason per finding."""
    reasons = []
    deciding = [c for c in comparisons if c.decides]
    for c in deciding:
        if c.verdict is not GateVerdict.APPROVE:
            reasons.append(
                f"{c.metric}: {c.verdict.value} (improvement {c.improvement:+.4g}, interval "
                f"[{c.low:+.4g}, {c.high:+.4g}], margin -{c.margin:.4g}; {c.note})"
            )
    for t in checks:
        if t.verdict is not GateVerdict.APPROVE:
            reasons.append(
                f"{t.metric} {t.value:.4g} vs threshold {t.operator} {t.threshold:g}: "
                f"{t.verdict.value}"
            )
    verdict = combine([c.verdict for c in deciding] + [t.verdict for t in checks])
    sizes = [c.sample_size for c in deciding if c.sample_size]
    return Decision(verdict, reasons, max(sizes) if sizes else None)


def finite(value: float | None) -> float | None:
    """None for NaN/inf (JSON has neither)."""
    return value if value is not None and math.isfinite(value) else None
