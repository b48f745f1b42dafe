"""From per-item outcomes to metrics with intervals, paired comparisons and a verdict.

Pass/fail metrics use Tango's score test and interval for paired proportions (the null at
the margin); continuous ones the paired bootstrap. Holm's step-down correction runs over the
compared metrics, once for the non-inferiority family and once for the inferiority family.
See `quality_gates.gates.stats` for the tests themselves.

Items whose call failed (timeout, 5xx, overloaded, refused) are not wrong answers: quality
metrics are measured on the answered items, and the error rate on all of them, unless the
caller asks for errors to be scored as failures (`errors_as_failures`, `--allow-errors`).
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


def summarize(
    tally: Tally, role: str, confidence: float = 0.95, *, errors_as_failures: bool = False
) -> dict[str, Metric]:
    """Accuracy (Wilson), rates, latency percentiles, tokens and cost for one role.

    Accuracy and score count answered items only, unless `errors_as_failures`."""
    outcomes = list(tally.flat(role))
    n = len(outcomes)
    items = len(tally.outcomes(role))

    def rate(name: str, hits: int, total: int) -> Metric:
        interval = stats.wilson_interval(hits, total, confidence)
        value = hits / total if total else None
        return Metric(name, value, total, interval.low, interval.high, "ratio")

    answered = [o for o in outcomes if o.error_class is None]
    graded = outcomes if errors_as_failures else answered
    latencies = [o.latency_ms for o in answered]
    ttfts = [o.ttft_ms for o in answered if o.ttft_ms > 0]
    costs = [o.cost for o in outcomes]
    metrics = [
        rate("accuracy", sum(o.passed for o in graded), len(graded)),
        Metric("score", (sum(o.score for o in graded) / len(graded)) if graded else None, n),
        rate("error_rate", n - len(answered), n),
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
        Metric("answered", float(len(answered)), n),
        Metric("errors", float(n - len(answered)), n),
        Metric("items", float(items), items),
    ]
    return {m.name: m for m in metrics}


def error_classes(tally: Tally, role: str) -> dict[str, int]:
    """Failed calls of a role by error class (timeout, server, overloaded, ...)."""
    counts: dict[str, int] = {}
    for outcome in tally.flat(role):
        if outcome.error_class is not None:
            counts[outcome.error_class] = counts.get(outcome.error_class, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


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
    worse: int | None = None
    better: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        data = asdict(self)
        data["verdict"] = self.verdict.value
        return data


# Which outcomes a metric reads: every call, the answered ones, or the graded ones (the
# answered ones, or every call when errors are scored as failures).
Scope = str
# metric -> (outcome -> value, higher is better, binary, scope)
EXTRACTORS: dict[str, tuple[Callable[[Outcome], float], bool, bool, Scope]] = {
    "accuracy": (lambda o: float(o.passed), True, True, "graded"),
    "score": (lambda o: o.score, True, False, "graded"),
    "toxicity_rate": (lambda o: float(o.toxic), False, True, "answered"),
    "pii_rate": (lambda o: float(o.pii), False, True, "answered"),
    "refusal_rate": (lambda o: float(o.refused), False, True, "answered"),
    "error_rate": (lambda o: float(o.error_class is not None), False, True, "all"),
    "latency_mean_ms": (lambda o: o.latency_ms, False, False, "answered"),
    "cost_mean": (lambda o: o.cost, False, False, "answered"),
}


def _in_scope(outcomes: list[Outcome], scope: Scope, errors_as_failures: bool) -> list[Outcome]:
    if scope == "all" or (scope == "graded" and errors_as_failures):
        return outcomes
    return [o for o in outcomes if o.error_class is None]


def _paired_values(
    tally: Tally,
    ids: list[str],
    fn: Callable[[Outcome], float],
    scope: Scope,
    errors_as_failures: bool,
) -> tuple[Any, Any]:
    """Per-item means (baseline, candidate) over the items both sides have in scope."""
    base_of, cand_of = tally.outcomes("baseline"), tally.outcomes("candidate")
    base, cand = [], []
    for item in ids:
        b = _in_scope(base_of[item], scope, errors_as_failures)
        c = _in_scope(cand_of[item], scope, errors_as_failures)
        if b and c:
            base.append(sum(fn(o) for o in b) / len(b))
            cand.append(sum(fn(o) for o in c) / len(c))
    return np.array(base), np.array(cand)


def compare(
    tally: Tally,
    settings: GateSettings,
    *,
    metrics: list[str],
    resamples: int | None = None,
    errors_as_failures: bool = False,
) -> list[Comparison]:
    """Paired comparisons of candidate against baseline for `metrics`, Holm-corrected.

    Quality metrics pair the items both sides answered (every paired item when
    `errors_as_failures`); the error rate pairs every item."""
    ids = tally.paired_ids()
    if not ids:
        return []
    alpha = settings.alpha
    results: list[Comparison] = []
    for name in metrics:
        fn, higher, binary, scope = EXTRACTORS[name]
        policy = settings.policy(name)
        base, cand = _paired_values(tally, ids, fn, scope, errors_as_failures)
        n = int(base.size)
        if n == 0:
            continue
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
        better: int | None = None
        worse: int | None = None
        if is_binary:
            better = int(np.sum(e > 0))
            worse = int(np.sum(e < 0))
            p_ni, p_inf = stats.paired_binary_noninferiority(n, worse, better, margin)
            interval = stats.paired_binary_interval(n, worse, better, 1 - 2 * alpha)
            two_sided = stats.mcnemar_from_counts(n, worse, better).p_value
            test = (
                f"Tango score test for paired proportions ({n} items: "
                f"{better} only the candidate passed, {worse} only the baseline)"
            )
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
                worse=worse,
                better=better,
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
            if result.worse is not None and result.better is not None:
                result.sample_size = stats.paired_binary_sample_size(
                    result.n, result.worse, result.better, result.margin, alpha / family, power
                )
            else:
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
    n: int = 0
    policy: str = "evidence"
    items_to_decide: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        data = asdict(self)
        data["verdict"] = self.verdict.value
        return data


THRESHOLD_SPEC = (
    ("accuracy", ">", "accuracy"),
    ("toxicity_rate", "<", "toxicity_rate"),
    ("error_rate", "<", "error_rate"),
)


def check_thresholds(
    summary: dict[str, Metric],
    thresholds: dict[str, Any],
    *,
    measured: set[str],
    policy: str = "evidence",
    confidence: float = 0.95,
) -> list[ThresholdCheck]:
    """Accuracy, toxicity and error rate against the environment's thresholds.

    `evidence` (the default): APPROVE only when the whole interval clears the threshold,
    REJECT when the whole interval misses it, CONDITIONAL in between, with the number of
    items that would decide at the observed rate. `point`: the point estimate passes or
    fails, and a miss whose interval still reaches the threshold is CONDITIONAL.
    """
    checks = []
    for metric, op, key in THRESHOLD_SPEC:
        if metric not in measured or key not in thresholds:
            continue
        m = summary[metric]
        threshold = float(thresholds[key])
        if m.value is None or m.low is None or m.high is None:
            continue
        above = op == ">"
        clears = m.low > threshold if above else m.high < threshold
        misses = m.high <= threshold if above else m.low >= threshold
        point_ok = m.value > threshold if above else m.value < threshold
        if policy == "point":
            verdict = (
                GateVerdict.APPROVE
                if point_ok
                else (GateVerdict.REJECT if misses else GateVerdict.CONDITIONAL)
            )
        else:
            verdict = (
                GateVerdict.APPROVE
                if clears
                else (GateVerdict.REJECT if misses else GateVerdict.CONDITIONAL)
            )
        check = ThresholdCheck(
            metric, op, threshold, m.value, m.low, m.high, verdict, n=m.n, policy=policy
        )
        if verdict is GateVerdict.CONDITIONAL:
            check.items_to_decide = stats.wilson_items_to_decide(m.value, threshold, confidence)
            side = "passes" if point_ok else "fails"
            check.note = f"{confidence:.0%} interval straddles it, point estimate {side}; " + (
                f"about {check.items_to_decide:,} items at this rate would decide"
                if check.items_to_decide
                else "the observed rate sits on the threshold"
            )
        elif verdict is GateVerdict.APPROVE and policy == "point" and not clears:
            check.note = "passed on the point estimate (threshold_policy: point)"
        checks.append(check)
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
                f"{t.metric} {t.value:.4g} [{t.low:.4g}, {t.high:.4g}] on {t.n} vs threshold "
                f"{t.operator} {t.threshold:g}: {t.verdict.value}"
                + (f" ({t.note})" if t.note else "")
            )
    verdict = combine([c.verdict for c in deciding] + [t.verdict for t in checks])
    sizes = [c.sample_size for c in deciding if c.sample_size]
    sizes += [t.items_to_decide for t in checks if t.items_to_decide]
    return Decision(verdict, reasons, max(sizes) if sizes else None)


def finite(value: float | None) -> float | None:
    """None for NaN/inf (JSON has neither)."""
    return value if value is not None and math.isfinite(value) else None
