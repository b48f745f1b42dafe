"""Statistics the gates decide with: intervals, paired tests, multiplicity, non-inferiority.

Every function is pure and deterministic given its inputs (and a seed where it resamples);
tests/test_gates_stats.py checks them against scipy and exact rational arithmetic.

Non-inferiority is read on an "improvement" scale e (candidate better when e > 0, whatever
the metric's direction): the candidate is non-inferior when the one-sided test of
H0: e <= -margin rejects, inferior when the test of H0: e >= -margin rejects, and undecided
otherwise; undecided metrics report the sample size at which the same effect would decide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize
from scipy import stats as sps

Alternative = Literal["two-sided", "greater", "less"]
DEFAULT_POWER = 0.8
# Rows of bootstrap indices drawn per batch: bounds memory at ~16 MB whatever the dataset size.
BOOTSTRAP_BATCH_CELLS = 2_000_000


@dataclass(frozen=True)
class Interval:
    """A confidence interval and its level."""

    low: float
    high: float
    level: float


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a binomial proportion (no continuity correction)."""
    if n <= 0:
        return Interval(0.0, 1.0, confidence)
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} not within 0..{n}")
    z = float(sps.norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(max(0.0, center - half), min(1.0, center + half), confidence)


def _wilson_bounds(rate: float, n: float, z: float) -> tuple[float, float]:
    denominator = 1 + z * z / n
    center = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return center - half, center + half


def wilson_items_to_decide(
    rate: float, threshold: float, confidence: float = 0.95, limit: int = 10**9
) -> int | None:
    """Items at which the Wilson interval around `rate` no longer holds `threshold`
    (the interval narrows as n grows); None when the rate is the threshold or more than
    `limit` items would be needed."""
    if abs(rate - threshold) < 1e-12:
        return None
    z = float(sps.norm.ppf(1 - (1 - confidence) / 2))

    def decided(n: int) -> bool:
        low, high = _wilson_bounds(rate, n, z)
        return low > threshold if rate > threshold else high < threshold

    if not decided(limit):
        return None
    low_n, high_n = 1, limit
    while low_n < high_n:
        mid = (low_n + high_n) // 2
        if decided(mid):
            high_n = mid
        else:
            low_n = mid + 1
    return low_n


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on paired pass/fail outcomes.

    `b`: baseline passed, candidate failed; `c`: candidate passed, baseline failed.
    """

    n: int
    b: int
    c: int
    statistic: int
    p_value: float

    @property
    def difference(self) -> float:
        """Candidate minus baseline pass rate."""
        return (self.c - self.b) / self.n if self.n else 0.0


def mcnemar_exact(
    baseline: Sequence[bool], candidate: Sequence[bool], alternative: Alternative = "two-sided"
) -> McNemarResult:
    """Exact (binomial) McNemar test; `greater` asks whether the candidate passes more often."""
    if len(baseline) != len(candidate):
        raise ValueError("paired samples differ in length")
    b = sum(1 for x, y in zip(baseline, candidate, strict=True) if x and not y)
    c = sum(1 for x, y in zip(baseline, candidate, strict=True) if y and not x)
    return mcnemar_from_counts(len(baseline), b, c, alternative)


def mcnemar_from_counts(
    n: int, b: int, c: int, alternative: Alternative = "two-sided"
) -> McNemarResult:
    """Exact McNemar from the discordant counts (see McNemarResult)."""
    discordant = b + c
    if discordant == 0:
        return McNemarResult(n, b, c, 0, 1.0)
    p = float(sps.binomtest(c, discordant, 0.5, alternative=alternative).pvalue)
    return McNemarResult(n, b, c, min(b, c), p)


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap of the mean difference (candidate - baseline)."""

    estimate: float
    interval: Interval
    standard_error: float
    distribution: np.ndarray

    def share_at_or_below(self, value: float) -> float:
        """Fraction of resampled differences <= value (a one-sided bootstrap p-value)."""
        return float(np.mean(self.distribution <= value))

    def share_at_or_above(self, value: float) -> float:
        """Fraction of resampled differences >= value."""
        return float(np.mean(self.distribution >= value))


def paired_bootstrap(
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Percentile bootstrap CI of mean(candidate - baseline), resampling items (pairs).

    Draws the same index matrix as `scipy.stats.bootstrap(..., paired=True)` with a
    numpy Generator seeded alike, in row batches so memory stays bounded.
    """
    x = np.asarray(baseline, dtype=float)
    y = np.asarray(candidate, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("paired samples must be 1-D and of equal length")
    n = x.size
    diffs = y - x
    if n == 0:
        empty = np.zeros(0)
        return BootstrapResult(0.0, Interval(0.0, 0.0, confidence), 0.0, empty)
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    rows = max(1, BOOTSTRAP_BATCH_CELLS // n)
    for start in range(0, resamples, rows):
        count = min(rows, resamples - start)
        index = rng.integers(0, n, (count, n))
        out[start : start + count] = diffs[index].mean(axis=-1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(out, [alpha, 1 - alpha])
    return BootstrapResult(
        float(diffs.mean()),
        Interval(float(low), float(high), confidence),
        float(np.std(out, ddof=1)) if resamples > 1 else 0.0,
        out,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def paired_score_z(n: int, worse: int, better: int, null: float) -> float:
    """Tango's score statistic for H0: p_candidate - p_baseline = `null` on paired pass/fail.

    Tango T. (1998), "Equivalence test and confidence interval for the difference in
    proportions for the paired-sample design", Statistics in Medicine 17:891-908. With
    `worse` = b (baseline passed, candidate failed) and `better` = c, the improvement is
    e = (c - b) / n; the variance of its estimate is taken at the maximum-likelihood cell
    probabilities restricted to e = `null`: p_b is the positive root of
    2n p^2 - (b + c - null (2n + b - c)) p - b null (1 - null) = 0, and p_c = p_b + null.
    Large positive values favour e > null.
    """
    if n <= 0:
        return 0.0
    quad_b = null * (2 * n + worse - better) - (worse + better)
    quad_c = -worse * null * (1 - null)
    root = math.sqrt(max(quad_b * quad_b - 8 * n * quad_c, 0.0))
    p_worse = (root - quad_b) / (4 * n)
    variance = n * (2 * p_worse + null - null * null)
    numerator = better - worse - n * null
    if variance <= 1e-15:
        return 0.0 if abs(numerator) < 1e-12 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def paired_binary_noninferiority(
    n: int, worse: int, better: int, margin: float
) -> tuple[float, float]:
    """One-sided p-values (non-inferior, inferior) at the margin for paired pass/fail.

    Tango's score test of H0: e = -margin (see `paired_score_z`): the non-inferiority
    p-value is P(Z >= z), the inferiority one P(Z <= z). Unlike the McNemar test conditional
    on the discordant pairs, it keeps its size when disagreements are one-sided, and it
    needs evidence from the concordant items too: identical outcomes on a handful of items
    decide nothing (1 item: p = 0.44 at a 2-point margin).
    """
    if n <= 0:
        return 1.0, 1.0
    z = paired_score_z(n, worse, better, -margin)
    return float(sps.norm.sf(z)), float(sps.norm.cdf(z))


def paired_binary_interval(n: int, worse: int, better: int, confidence: float) -> Interval:
    """Tango's score interval for e = p_candidate - p_baseline: the nulls the two-sided
    score test at `confidence` does not reject (found by root finding; Z falls as the
    null rises)."""
    if n <= 0:
        return Interval(-1.0, 1.0, confidence)
    z = float(sps.norm.ppf(1 - (1 - confidence) / 2))
    estimate = (better - worse) / n
    edge = 1 - 1e-12

    def excess(null: float, target: float) -> float:
        return paired_score_z(n, worse, better, null) - target

    low = -1.0
    if estimate > -edge and excess(-edge, z) > 0:
        low = float(optimize.brentq(excess, -edge, estimate, args=(z,), xtol=1e-10))
    high = 1.0
    if estimate < edge and excess(edge, -z) < 0:
        high = float(optimize.brentq(excess, estimate, edge, args=(-z,), xtol=1e-10))
    return Interval(low, high, confidence)


def paired_binary_sample_size(
    n: int, worse: int, better: int, margin: float, alpha: float, power: float = DEFAULT_POWER
) -> int | None:
    """Items for the score test at the margin to decide (either way) with `power`, if the
    observed shares of discordant items hold; None when the observed effect is the margin.
    The statistic grows as the square root of n at fixed shares."""
    if n <= 0:
        return None
    z = paired_score_z(n, worse, better, -margin)
    if abs(z) < 1e-9:
        return None
    if math.isinf(z):
        return n
    needed = float(sps.norm.ppf(1 - alpha) + sps.norm.ppf(power))
    return max(2, math.ceil(n * (needed / abs(z)) ** 2))


def sample_size_to_decide(
    effect: float, margin: float, sd: float, alpha: float, power: float = DEFAULT_POWER
) -> int | None:
    """Items needed for a one-sided test at `alpha` to decide with `power`, if the observed
    improvement `effect` and per-item SD `sd` hold; None when the effect sits on the margin."""
    distance = abs(effect + margin)
    if distance < 1e-12:
        return None
    if sd <= 0:
        return 2
    z = float(sps.norm.ppf(1 - alpha) + sps.norm.ppf(power))
    return max(2, math.ceil((z * sd / distance) ** 2))
