"""Latency histograms: quantiles within 1% of the truth, mergeable, storable."""

from __future__ import annotations

import random

import numpy as np
import pytest

from quality_gates.telemetry import RELATIVE_ACCURACY, LatencyHistogram


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_quantiles_are_within_the_relative_accuracy(q: float) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(5.5, 0.8) for _ in range(20000)]
    hist = LatencyHistogram.of(values)
    truth = float(np.quantile(values, q, method="lower"))
    assert hist.quantile(q) == pytest.approx(truth, rel=RELATIVE_ACCURACY * 1.01)


def test_merging_equals_one_histogram_of_everything() -> None:
    rng = random.Random(3)
    a = [rng.uniform(1, 500) for _ in range(1000)]
    b = [rng.uniform(100, 3000) for _ in range(1000)]
    merged = LatencyHistogram.of(a)
    merged.merge(LatencyHistogram.of(b))
    whole = LatencyHistogram.of(a + b)
    assert merged.buckets == whole.buckets
    assert merged.quantile(0.95) == whole.quantile(0.95)
    assert merged.mean == pytest.approx(sum(a + b) / 2000)


def test_round_trip_through_json_and_empty_cases() -> None:
    hist = LatencyHistogram.of([0.0, 1.0, 10.0, 100.0])
    again = LatencyHistogram.from_json(hist.to_json())
    assert (again.count, again.zeros, again.buckets) == (4, 1, hist.buckets)
    assert LatencyHistogram.from_json(None).quantile(0.5) is None
    assert LatencyHistogram.of([0.0]).quantile(0.99) == 0.0
    with pytest.raises(ValueError):
        hist.quantile(1.5)
