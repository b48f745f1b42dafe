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


def paired_binary_noninferiority(
    n: int, worse: int, better: int, margin: float
) -> tuple[float, float]:
    """One-sided exact p-values (non-inferior, inferior) for paired binary outcomes.

    Conditional on the d = worse + better discordant pairs, `better` ~ Bin(d, pi) and the
    improvement is e = d (2 pi - 1) / n; e = -margin corresponds to pi0 = (1 - margin n / d) / 2.
    This is the exact McNemar test with its null moved from e = 0 to the margin.
    """
    d = worse + better
    if d == 0:
        # Identical outcomes on every item: e = 0 exactly, which clears any positive margin.
        return (0.0 if margin > 0 else 1.0), 1.0
    pi0 = (1 - margin * n / d) / 2
    if pi0 <= 0:
        return 0.0, 1.0  # even all discordant pairs going the wrong way stays within the margin
    p_noninferior = float(sps.binomtest(better, d, pi0, alternative="greater").pvalue)
    p_inferior = float(sps.binomtest(better, d, pi0, alternative="less").pvalue)
    return p_noninferior, p_inferior


def paired_binary_interval(n: int, worse: int, better: int, confidence: float) -> Interval:
    """Interval of the improvement e from a Clopper-Pearson interval on the discordant split."""
    d = worse + better
    if d == 0:
        return Interval(0.0, 0.0, confidence)
    ci = sps.binomtest(better, d, 0.5).proportion_ci(confidence_level=confidence, method="exact")
    return Interval(d * (2 * ci.low - 1) / n, d * (2 * ci.high - 1) / n, confidence)


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
