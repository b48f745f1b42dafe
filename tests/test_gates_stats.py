"""Statistics against references: scipy, and exact rational arithmetic."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest
from scipy import stats as sps

from quality_gates.gates import stats

TOL = 1e-9


def exact_binomial_two_sided_half(k: int, n: int) -> float:
    """Two-sided exact binomial p at p=0.5, in rationals: 2 * P(X <= min(k, n-k)), capped."""
    low = min(k, n - k)
    tail = sum(Fraction(comb(n, i), 2**n) for i in range(low + 1))
    return float(min(Fraction(1), 2 * tail))


@pytest.mark.parametrize(("b", "c"), [(12, 3), (5, 5), (0, 7), (40, 61), (1, 0)])
def test_exact_mcnemar_equals_the_exact_binomial_reference(b: int, c: int) -> None:
    result = stats.mcnemar_from_counts(200, b, c)
    assert result.p_value == pytest.approx(exact_binomial_two_sided_half(c, b + c), abs=TOL)
    assert result.p_value == pytest.approx(sps.binomtest(c, b + c, 0.5).pvalue, abs=TOL)


def test_mcnemar_counts_discordant_pairs_from_outcomes() -> None:
    baseline = [True, True, False, False, True, True]
    candidate = [True, False, True, False, False, True]
    result = stats.mcnemar_exact(baseline, candidate)
    assert (result.b, result.c) == (2, 1)
    assert result.difference == pytest.approx(-1 / 6)


def test_paired_bootstrap_equals_scipy_bootstrap_with_the_same_generator() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(100, 20, 400)
    y = x * 1.05 + rng.normal(0, 5, 400)
    mine = stats.paired_bootstrap(x, y, resamples=4000, confidence=0.9, seed=11)
    ref = sps.bootstrap(
        (x, y),
        lambda a, b, axis=-1: (b - a).mean(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=4000,
        confidence_level=0.9,
        method="percentile",
        rng=np.random.default_rng(11),
    )
    assert mine.interval.low == pytest.approx(ref.confidence_interval.low, abs=TOL)
    assert mine.interval.high == pytest.approx(ref.confidence_interval.high, abs=TOL)
    assert mine.standard_error == pytest.approx(ref.standard_error, abs=TOL)


def test_paired_bootstrap_batches_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.arange(300, dtype=float)
    y = x + np.sin(x)
    whole = stats.paired_bootstrap(x, y, resamples=1000, seed=5)
    monkeypatch.setattr(stats, "BOOTSTRAP_BATCH_CELLS", 700)
    batched = stats.paired_bootstrap(x, y, resamples=1000, seed=5)
    assert np.array_equal(whole.distribution, batched.distribution)


@pytest.mark.parametrize(("k", "n"), [(970, 1000), (0, 50), (50, 50), (193, 200), (1, 3)])
def test_wilson_interval_equals_scipy(k: int, n: int) -> None:
    mine = stats.wilson_interval(k, n, 0.95)
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert mine.low == pytest.approx(ref.low, abs=TOL)
    assert mine.high == pytest.approx(ref.high, abs=TOL)


def test_holm_matches_the_step_down_definition() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=TOL)
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_noninferiority_p_value_is_the_binomial_tail_at_the_margin() -> None:
    n, worse, better, margin = 1000, 30, 25, 0.02
    p_ni, p_inf = stats.paired_binary_noninferiority(n, worse, better, margin)
    d = worse + better
    pi0 = (1 - margin * n / d) / 2
    assert p_ni == pytest.approx(sps.binom.sf(better - 1, d, pi0), abs=TOL)
    assert p_inf == pytest.approx(sps.binom.cdf(better, d, pi0), abs=TOL)


def test_identical_outcomes_are_non_inferior() -> None:
    assert stats.paired_binary_noninferiority(100, 0, 0, 0.02) == (0.0, 1.0)


def test_sample_size_grows_as_the_effect_nears_the_margin() -> None:
    far = stats.sample_size_to_decide(-0.005, 0.02, 0.25, 0.05)
    near = stats.sample_size_to_decide(-0.015, 0.02, 0.25, 0.05)
    assert far is not None
    assert near is not None
    assert near > far
    assert stats.sample_size_to_decide(-0.02, 0.02, 0.25, 0.05) is None
