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


def _reference_score_z(n: int, worse: int, better: int, null: float) -> float:
    """Tango's statistic from first principles: the multinomial likelihood maximised
    numerically under e = null (no closed form), then (observed - null) / restricted SE."""
    from scipy import optimize

    rest = n - worse - better
    low, high = max(0.0, -null), min(1.0, (1 - null) / 2)

    def negative_log_likelihood(p_worse: float) -> float:
        p_better = p_worse + null
        total = 0.0
        for count, prob in ((worse, p_worse), (better, p_better), (rest, 1 - p_worse - p_better)):
            if count:
                total -= count * np.log(max(prob, 1e-300))
        return total

    fit = optimize.minimize_scalar(
        negative_log_likelihood, bounds=(low, high), method="bounded",
        options={"xatol": 1e-13},
    )  # fmt: skip
    p_worse = float(fit.x)
    variance = n * (2 * p_worse + null - null * null)
    return (better - worse - n * null) / np.sqrt(variance)


# (n, worse, better): b = 0, c = 0, all agree, tiny, one-sided, balanced and large n.
REFERENCE_TABLES = [
    (46, 0, 0), (200, 0, 0), (5000, 0, 0), (1, 0, 0), (10, 3, 0), (10, 0, 3),
    (100, 0, 5), (100, 5, 0), (100, 7, 2), (100, 2, 7), (160, 40, 20), (160, 20, 40),
    (500, 15, 5), (1000, 30, 25), (1000, 95, 12), (5000, 95, 12), (5000, 12, 95),
    (5000, 300, 280), (20000, 600, 450), (50, 25, 25), (30, 0, 30), (30, 30, 0),
    (1000, 150, 150), (250, 1, 0),
]  # fmt: skip


@pytest.mark.parametrize(("n", "worse", "better"), REFERENCE_TABLES)
@pytest.mark.parametrize("margin", [0.02, 0.05])
def test_score_test_matches_the_numerical_reference(
    n: int, worse: int, better: int, margin: float
) -> None:
    z = stats.paired_score_z(n, worse, better, -margin)
    reference = _reference_score_z(n, worse, better, -margin)
    # rel 1e-7 is the bounded optimiser's reach when the maximum sits on its boundary.
    assert z == pytest.approx(reference, rel=1e-7, abs=1e-6)
    p_ni, p_inf = stats.paired_binary_noninferiority(n, worse, better, margin)
    assert p_ni == pytest.approx(sps.norm.sf(reference), rel=1e-4, abs=1e-9)
    assert p_ni + p_inf == pytest.approx(1.0)


@pytest.mark.parametrize(("n", "worse", "better"), REFERENCE_TABLES)
def test_score_interval_inverts_the_reference_statistic(n: int, worse: int, better: int) -> None:
    """Each finite bound is where the reference statistic reaches the normal quantile."""
    interval = stats.paired_binary_interval(n, worse, better, 0.90)
    z = float(sps.norm.ppf(0.95))
    estimate = (better - worse) / n
    assert interval.low <= estimate <= interval.high
    if interval.low > -1.0:
        assert _reference_score_z(n, worse, better, interval.low) == pytest.approx(z, abs=1e-4)
    if interval.high < 1.0:
        assert _reference_score_z(n, worse, better, interval.high) == pytest.approx(-z, abs=1e-4)


def test_one_sided_disagreements_no_longer_approve() -> None:
    """The issue's table: 95 items only the baseline passes, 12 only the candidate, n=5000.
    Conditional McNemar said p = 0.0002 (APPROVE); Tango's score test says 0.060."""
    p_ni, _ = stats.paired_binary_noninferiority(5000, 95, 12, 0.02)
    assert p_ni == pytest.approx(0.0595, abs=5e-4)
    assert p_ni > 0.05


def test_identical_outcomes_on_one_item_decide_nothing() -> None:
    p_ni, p_inf = stats.paired_binary_noninferiority(1, 0, 0, 0.02)
    assert p_ni > 0.4
    assert p_inf > 0.4
    needed = stats.paired_binary_sample_size(1, 0, 0, 0.02, 0.05)
    assert needed is not None
    assert 250 < needed < 350  # identical outcomes clear a 2-point margin at about 300 items


def test_identical_outcomes_on_many_items_are_non_inferior() -> None:
    p_ni, _ = stats.paired_binary_noninferiority(1000, 0, 0, 0.02)
    assert p_ni < 1e-4


def _false_approvals(n: int, discordance: float, margin: float, runs: int, seed: int) -> float:
    """Share of runs that approve when the candidate is exactly `margin` worse."""
    rng = np.random.default_rng(seed)
    p_worse, p_better = (discordance + margin) / 2, (discordance - margin) / 2
    tables = rng.multinomial(n, [p_worse, p_better, 1 - p_worse - p_better], size=runs)
    memo: dict[tuple[int, int], bool] = {}
    approvals = 0
    for worse, better, _ in tables:
        key = (int(worse), int(better))
        if key not in memo:
            memo[key] = stats.paired_binary_noninferiority(n, *key, margin)[0] < 0.05
        approvals += memo[key]
    return approvals / runs


@pytest.mark.parametrize("n", [200, 1000, 5000])
@pytest.mark.parametrize("discordance", [0.03, 0.10, 0.30])
def test_false_approvals_at_the_margin_stay_near_nominal(n: int, discordance: float) -> None:
    """Size by simulation (seeded): at most 5% + 1.5 points; 4,000 runs give an SE of 0.35."""
    rate = _false_approvals(n, discordance, 0.02, runs=4000, seed=n + int(discordance * 1000))
    assert rate <= 0.065, f"{rate:.2%} false approvals at n={n}, discordance {discordance:.0%}"


def test_power_against_an_equal_candidate_is_reported_high_at_scale() -> None:
    rng = np.random.default_rng(3)
    tables = rng.multinomial(5000, [0.05, 0.05, 0.90], size=2000)
    approved = np.mean(
        [stats.paired_binary_noninferiority(5000, int(w), int(b), 0.02)[0] < 0.05
         for w, b, _ in tables]
    )  # fmt: skip
    assert approved > 0.95


def test_sample_size_grows_as_the_effect_nears_the_margin() -> None:
    far = stats.sample_size_to_decide(-0.005, 0.02, 0.25, 0.05)
    near = stats.sample_size_to_decide(-0.015, 0.02, 0.25, 0.05)
    assert far is not None
    assert near is not None
    assert near > far
    assert stats.sample_size_to_decide(-0.02, 0.02, 0.25, 0.05) is None
