"""Time windows over the per-minute roll-ups: counters and latency histograms per series.

A window [start, end] covers whole minutes plus a partial minute at each edge. Each roll-up
row is weighted by the share of its minute's data span that falls inside the window: the
span of a finished minute is the full 60 s, the span of the current minute is what has
elapsed of it. So an error burst that began ten seconds ago weighs ten seconds' worth in a
60 s window, as it would with raw rows, while the read cost depends on the number of minutes
and series, never on the number of requests. Readers sum over writer processes.

Three kinds of series: client `request`s, upstream `attempt`s, and the gateways' active
`probe`s of providers (no alias or model; see `with_probes`). Probes are kept apart so that
no client figure counts them; only the provider rules that say so add them as samples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from quality_gates.store.db import Connection
from quality_gates.telemetry import LatencyHistogram
from quality_gates.telemetry._histogram import GAMMA

MINUTE = 60.0
LABELS = ("environment", "alias", "model_id", "provider")
PROBE = "probe"  # the roll-up kind of the gateways' active probes
# Probes belong to a provider, not to an alias or a model: only groups of these labels
# can count them.
PROBE_LABELS = frozenset({"environment", "provider"})
SeriesKey = tuple[str, str, str, str]  # environment, alias, model_id, provider
# Upstream answers that say the request was bad, not that the provider was unavailable.
CLIENT_ERROR_CLASSES = frozenset({"bad_request", "content_filtered"})
_NUMBERS = (
    "count",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost",
    "cache_hits",
    "cache_stale",
    "cache_misses",
    "failovers",
    "canary",
    "outputs_checked",
    "outputs_invalid",
)


def minute_of(ts: float) -> int:
    """The roll-up minute a timestamp falls in (minutes since the epoch)."""
    return int(ts // MINUTE)


class Histogram:
    """A latency histogram whose counts may be fractional (edge minutes are weighted)."""

    __slots__ = ("buckets", "count", "total", "zeros")

    def __init__(self) -> None:
        self.buckets: dict[int, float] = {}
        self.zeros = 0.0
        self.count = 0.0
        self.total = 0.0

    def add(self, hist: LatencyHistogram, weight: float = 1.0) -> None:
        """Add a stored histogram's counts, scaled by `weight`."""
        buckets = self.buckets
        for index, n in hist.buckets.items():
            buckets[index] = buckets.get(index, 0.0) + n * weight
        self.zeros += hist.zeros * weight
        self.count += hist.count * weight
        self.total += hist.total * weight

    def merge(self, other: Histogram) -> None:
        """Add another window histogram."""
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0.0) + n
        self.zeros += other.zeros
        self.count += other.count
        self.total += other.total

    def quantile(self, q: float) -> float | None:
        """The q-quantile in ms (within the histogram's 1% relative accuracy), or None."""
        if self.count <= 0:
            return None
        rank = q * self.count
        seen = self.zeros
        if rank <= seen and seen > 0:
            return 0.0
        ordered = sorted(self.buckets)
        for index in ordered:
            seen += self.buckets[index]
            if rank <= seen:
                return _bucket_value(index)
        return _bucket_value(ordered[-1]) if ordered else 0.0

    def share_above(self, threshold_ms: float) -> float | None:
        """The share of values slower than `threshold_ms`, or None when empty."""
        if self.count <= 0:
            return None
        limit = math.ceil(math.log(threshold_ms) / math.log(GAMMA)) if threshold_ms > 0 else 0
        slow = sum(n for index, n in self.buckets.items() if index > limit)
        return slow / self.count

    @property
    def mean(self) -> float | None:
        """Mean latency in ms, or None."""
        return self.total / self.count if self.count > 0 else None


def _bucket_value(index: int) -> float:
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


@dataclass
class Aggregate:
    """Counters and histograms of one series (or group of series) over a window."""

    count: float = 0.0
    errors: float = 0.0
    errors_by_class: dict[str, float] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cost: float = 0.0
    cache_hits: float = 0.0
    cache_stale: float = 0.0
    cache_misses: float = 0.0
    failovers: float = 0.0
    canary: float = 0.0
    outputs_checked: float = 0.0  # answers whose structured output was checked
    outputs_invalid: float = 0.0  # of them, unusable (bad tool arguments, invalid JSON)

    def merge(self, other: Aggregate) -> None:
        """Add another aggregate's counts."""
        for name in _NUMBERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name, n in other.errors_by_class.items():
            self.errors_by_class[name] = self.errors_by_class.get(name, 0.0) + n
        self.latency.merge(other.latency)
        self.ttft.merge(other.ttft)

    @property
    def availability_errors(self) -> float:
        """Errors that count against availability (client mistakes do not)."""
        client = sum(self.errors_by_class.get(c, 0.0) for c in CLIENT_ERROR_CLASSES)
        return max(self.errors - client, 0.0)


@dataclass(frozen=True)
class Window:
    """[start, end] in epoch seconds; `now` is when it is read (bounds the current minute)."""

    start: float
    end: float
    now: float

    @classmethod
    def last(cls, seconds: float, now: float) -> Window:
        """The `seconds` up to `now`."""
        return cls(now - seconds, now, now)

    @property
    def seconds(self) -> float:
        """The window's length."""
        return max(self.end - self.start, 0.0)

    def weight(self, minute: int) -> float:
        """The share of `minute`'s recorded data that lies inside the window."""
        span_start = minute * MINUTE
        span_end = min(span_start + MINUTE, self.now)
        span = span_end - span_start
        if span <= 0:
            return 1.0 if self.start <= span_start <= self.end else 0.0
        inside = min(span_end, self.end) - max(span_start, self.start)
        return max(0.0, min(1.0, inside / span))


@dataclass
class WindowData:
    """Client requests, upstream attempts and active probes per series over one window."""

    window: Window
    requests: dict[SeriesKey, Aggregate] = field(default_factory=dict)
    attempts: dict[SeriesKey, Aggregate] = field(default_factory=dict)
    probes: dict[SeriesKey, Aggregate] = field(default_factory=dict)

    def series(self, kind: str) -> dict[SeriesKey, Aggregate]:
        """`request`, `attempt` or `probe` series."""
        if kind == "request":
            return self.requests
        return self.probes if kind == PROBE else self.attempts


def read_window(
    conn: Connection,
    window: Window,
    *,
    environment: str | None = None,
    histograms: bool = True,
    ttft: bool = True,
) -> WindowData:
    """Sum the roll-ups of every series over `window` (edge minutes weighted).

    Numbers are summed in SQL; histograms are read only when `histograms` is set (the TTFT
    histogram unless `ttft` is False: parsing is most of a long window's cost), and error
    classes then, or else only from the attempt rows that carry errors.
    """
    first, last = minute_of(window.start), minute_of(max(window.end - 1e-9, window.start))
    params: dict[str, object] = {"first": first, "last": last}
    where = "minute >= :first AND minute <= :last"
    if environment is not None:
        where += " AND environment = :env"
        params["env"] = environment
    data = WindowData(window)
    weights = {m: window.weight(m) for m in range(first, last + 1)}
    inner = {m for m, w in weights.items() if w >= 1.0}
    sums = ", ".join(f"SUM({name}) AS {name}" for name in _NUMBERS)
    # Inner minutes weigh 1 and are summed by the database; the (at most two) edge minutes
    # are summed apart and scaled here.
    edge = sorted(m for m in weights if m not in inner)
    groups = "environment, alias, model_id, provider, kind"
    rows = conn.execute(
        f"SELECT {groups}, -1 AS minute, {sums} FROM rollups WHERE {where}"
        + (" AND minute NOT IN (" + ", ".join(str(m) for m in edge) + ")" if edge else "")
        + f" GROUP BY {groups}",
        params,
    )
    if edge:
        rows += conn.execute(
            f"SELECT {groups}, minute, {sums} FROM rollups WHERE {where} AND minute IN ("
            + ", ".join(str(m) for m in edge)
            + f") GROUP BY {groups}, minute",
            params,
        )
    for row in rows:
        weight = 1.0 if row["minute"] == -1 else weights[row["minute"]]
        agg = _slot(data, row)
        for name in _NUMBERS:
            setattr(agg, name, getattr(agg, name) + float(row[name] or 0) * weight)
    detail_columns = "errors_by_class"
    if histograms:
        detail_columns += ", latency_hist" + (", ttft_hist" if ttft else "")
    # Without histograms only error classes are needed, and only where they change a
    # metric: upstream attempts (availability excludes client mistakes, 429 and 5xx rates).
    # A failed client request is a 5xx by definition, whatever its class.
    detail_filter = "" if histograms else " AND errors > 0 AND kind IN ('attempt', 'probe')"
    for row in conn.execute(
        f"SELECT minute, environment, alias, model_id, provider, kind, {detail_columns} "
        f"FROM rollups WHERE {where}{detail_filter}",
        params,
    ):
        weight = weights.get(row["minute"], 0.0)
        if weight <= 0:
            continue
        agg = _slot(data, row)
        _add_classes(agg.errors_by_class, row["errors_by_class"], weight)
        if histograms:
            agg.latency.add(LatencyHistogram.from_json(row["latency_hist"]), weight)
            if ttft:
                agg.ttft.add(LatencyHistogram.from_json(row["ttft_hist"]), weight)
    return data


def _slot(data: WindowData, row: dict[str, object]) -> Aggregate:
    key: SeriesKey = (
        str(row["environment"]),
        str(row["alias"]),
        str(row["model_id"]),
        str(row["provider"]),
    )
    series = data.series(str(row["kind"]))
    agg = series.get(key)
    if agg is None:
        agg = series[key] = Aggregate()
    return agg


@lru_cache(maxsize=4096)
def _classes(text: str) -> tuple[tuple[str, float], ...]:
    # Roll-ups repeat the same few class mixes ({"server_error": 3}, ...): parse each once.
    return tuple((name, float(n)) for name, n in json.loads(text).items())


def _add_classes(target: dict[str, float], text: object, weight: float) -> None:
    if not text or text == "{}":
        return
    for name, n in _classes(str(text)):
        target[name] = target.get(name, 0.0) + n * weight


def group(
    series: dict[SeriesKey, Aggregate], labels: Iterable[str]
) -> dict[tuple[tuple[str, str], ...], Aggregate]:
    """Merge series that share the values of `labels` (a subset of LABELS)."""
    positions = [(name, LABELS.index(name)) for name in labels if name in LABELS]
    merged: dict[tuple[tuple[str, str], ...], Aggregate] = {}
    for key, agg in series.items():
        label_key = tuple((name, key[i]) for name, i in positions)
        target = merged.get(label_key)
        if target is None:
            target = merged[label_key] = Aggregate()
        target.merge(agg)
    return merged


def with_probes(
    data: WindowData, labels: Iterable[str]
) -> dict[tuple[tuple[str, str], ...], Aggregate]:
    """Upstream attempts grouped by `labels`, the gateways' probes of each provider added as
    samples when `labels` are among environment and provider (a probe has no alias or
    model); otherwise the attempts alone."""
    names = list(labels)
    merged = group(data.attempts, names)
    if not set(names) <= PROBE_LABELS:
        return merged
    for key, agg in group(data.probes, names).items():
        target = merged.get(key)
        if target is None:
            target = merged[key] = Aggregate()
        target.merge(agg)
    return merged


def per_minute_counts(
    conn: Connection,
    window: Window,
    labels: Iterable[str],
    *,
    environment: str | None = None,
) -> dict[tuple[tuple[str, str], ...], list[float]]:
    """Requests per finished minute in `window`, per group of `labels` (zero-filled)."""
    names = [name for name in labels if name in LABELS]
    first, last = minute_of(window.start), minute_of(window.end) - 1
    if last < first:
        return {}
    params: dict[str, object] = {"first": first, "last": last}
    where = "kind = 'request' AND minute >= :first AND minute <= :last"
    if environment is not None:
        where += " AND environment = :env"
        params["env"] = environment
    columns = ", ".join([*names, "minute"])
    rows = conn.execute(
        f"SELECT {columns}, SUM(count) AS n FROM rollups WHERE {where} GROUP BY {columns}", params
    )
    counts: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for row in rows:
        key = tuple((name, str(row[name])) for name in names)
        slots = counts.setdefault(key, [0.0] * (last - first + 1))
        slots[int(row["minute"]) - first] = float(row["n"] or 0)
    return counts


def not_2xx(agg: Aggregate) -> tuple[int, dict[str, int]]:
    """Answers clients got that were not 2xx (gateway errors and refusals: 400, 429, 503
    shutdown, ...), and their classes; from a request aggregate's error classes."""
    classes = {k: round(v) for k, v in sorted(agg.errors_by_class.items()) if round(v)}
    return max(round(agg.errors), sum(classes.values())), classes
