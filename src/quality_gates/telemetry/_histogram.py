"""A mergeable latency histogram with bounded relative error (the DDSketch bucketing).

Bucket i holds values in (gamma^(i-1), gamma^i] with gamma = (1 + a) / (1 - a), so any
quantile read back is within `a` (1% by default) of a true sample value. Per-minute roll-ups
store one sparse histogram per series; windows merge them by adding counts, so P50/P95/P99
over any window come from the roll-ups, not from raw rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import orjson

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
MIN_VALUE = 1e-3  # values below this (ms) count as zero


class LatencyHistogram:
    """Counts of latencies (milliseconds) in logarithmic buckets."""

    __slots__ = ("buckets", "count", "total", "zeros")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.total = 0.0

    def add(self, value: float, times: int = 1) -> None:
        """Record `value` (ms) `times` times; negative values are clock skew and count as 0."""
        self.count += times
        self.total += max(value, 0.0) * times
        if value < MIN_VALUE:
            self.zeros += times
            return
        index = math.ceil(math.log(value) / _LOG_GAMMA)
        self.buckets[index] = self.buckets.get(index, 0) + times

    def merge(self, other: LatencyHistogram) -> None:
        """Add another histogram's counts to this one."""
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.zeros += other.zeros
        self.count += other.count
        self.total += other.total

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1) within the relative accuracy, or None when empty."""
        if self.count == 0:
            return None
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q} is not between 0 and 1")
        rank = q * (self.count - 1)
        seen = self.zeros
        if rank < seen:
            return 0.0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if rank < seen:
                return 2.0 * GAMMA**index / (GAMMA + 1.0)
        return 2.0 * GAMMA ** max(self.buckets) / (GAMMA + 1.0)

    @property
    def mean(self) -> float | None:
        """The exact mean of recorded values, or None when empty."""
        return self.total / self.count if self.count else None

    def to_json(self) -> str:
        """Compact JSON for the store."""
        return orjson.dumps(
            {
                "n": self.count,
                "s": round(self.total, 6),
                "z": self.zeros,
                "b": self.buckets,
            },
            option=orjson.OPT_NON_STR_KEYS,
        ).decode()

    @classmethod
    def from_json(cls, text: str | None) -> LatencyHistogram:
        """Read back `to_json`; None or empty gives an empty histogram."""
        hist = cls()
        if not text:
            return hist
        data: Mapping[str, object] = orjson.loads(text)
        hist.count = int(data.get("n", 0))  # type: ignore[call-overload]
        hist.total = float(data.get("s", 0.0))  # type: ignore[arg-type]
        hist.zeros = int(data.get("z", 0))  # type: ignore[call-overload]
        buckets = data.get("b", {})
        if isinstance(buckets, dict):
            hist.buckets = {int(k): int(v) for k, v in buckets.items()}
        return hist

    @classmethod
    def of(cls, values: Iterable[float]) -> LatencyHistogram:
        """A histogram of `values`."""
        hist = cls()
        for value in values:
            hist.add(value)
        return hist
