"""Window metrics: every metric an alert rule can name, per group of labels.

`MetricEngine` reads each window once per evaluation and shares it between rules. Request and
attempt metrics come from the roll-ups (`_windows`); quality, toxicity and PII from the
sampled scores, satisfaction from `POST /v1/feedback`, resource use from the gateways'
heartbeats. A metric with too little behind it (fewer requests than the rule's
`min_requests`) has no value: no verdict is better than a verdict on noise. The provider
health metrics (`PROBED_METRICS`) count the gateways' active probes as samples beside the
upstream attempts, so a provider that traffic left is still judged on its probes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from quality_gates.errors import StoreUnavailable
from quality_gates.signals._live import LiveTail
from quality_gates.signals._resources import gateway_utilization
from quality_gates.signals._windows import (
    LABELS,
    Aggregate,
    Window,
    WindowData,
    group,
    per_minute_counts,
    read_window,
    with_probes,
)
from quality_gates.store.db import Connection

Labels = tuple[tuple[str, str], ...]
# Provider health: upstream attempts and the gateways' active probes are both its samples.
PROBED_METRICS = frozenset({"provider_availability", "server_error_rate", "rate_limited_rate"})
# Reference-free signals of sampled live answers: rates of their own, not quality scores.
QUALITY_EXCLUDED_SCORERS = ("toxicity", "pii", "prompt_pii", "injection", "refused")
MIN_BASELINE_MINUTES = 10
# Iglewicz and Hoaglin's modified z-score, 0.6745 (x - median) / MAD: dividing the MAD by
# 0.6745 makes it comparable to a standard deviation; 3.5 is their outlier cut-off (the
# default rule's threshold).
MAD_SCALE = 0.6745
MEAN_AD_SCALE = 1.253314  # sqrt(pi/2): mean absolute deviation to sigma, when the MAD is 0


@dataclass(frozen=True)
class Sample:
    """One metric value for one group of labels, with the volume behind it."""

    labels: Labels
    value: float | None
    volume: float


@dataclass(frozen=True)
class Quota:
    """A provider's quota (None where unset)."""

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None


def labels_dict(labels: Labels) -> dict[str, str]:
    """Labels as a mapping."""
    return dict(labels)


class MetricEngine:
    """Computes metrics for one evaluation instant; windows are read once and shared."""

    def __init__(
        self,
        conn: Connection | None,
        now: float,
        *,
        environment: str | None = None,
        quotas: dict[str, Quota] | None = None,
        live: LiveTail | None = None,
    ) -> None:
        self.conn = conn
        self.live = live
        self.now = now
        self.environment = environment
        self.quotas = quotas or {}
        self._windows: dict[tuple[float, float, bool], WindowData] = {}

    @property
    def db(self) -> Connection:
        """The store; an engine on a gateway's in-memory figures alone (`conn` None) has
        none, and only windows its live tail covers can be read."""
        if self.conn is None:
            raise StoreUnavailable("the store is unreachable: only in-memory figures can be read")
        return self.conn

    def window(
        self, seconds: float, *, offset: float = 0.0, histograms: bool = False
    ) -> WindowData:
        """The roll-ups over [now - offset - seconds, now - offset]."""
        key = (seconds, offset, histograms)
        data = self._windows.get(key)
        if data is None and not histograms:
            data = self._windows.get((seconds, offset, True))
        if data is None:
            end = self.now - offset
            window = Window(end - seconds, end, self.now)
            if self.live is not None and self.live.covers(window):
                data = self.live.read(window)
            else:
                data = read_window(
                    self.db, window, environment=self.environment, histograms=histograms
                )
            self._windows[key] = data
        return data

    def samples(
        self,
        metric: str,
        seconds: float,
        group_by: Iterable[str],
        *,
        min_requests: float = 0.0,
        baseline: float = 86400.0,
        floor: float = 0.0,
    ) -> list[Sample]:
        """The metric for every group seen in the window; value None below `min_requests`
        (relative metrics: also when the baseline is under `floor`, or the change is not
        significant)."""
        labels = list(group_by)
        compute = _SIMPLE.get(metric)
        if compute is not None:
            kind, func, needs_hist = compute
            data = self.window(seconds, histograms=needs_hist)
            if metric in PROBED_METRICS:
                groups = with_probes(data, labels)
            else:
                groups = group(data.series(kind), labels)
            out = []
            for key, agg in sorted(groups.items()):
                value, volume = func(agg, seconds)
                enough = volume >= min_requests or metric == "throughput"
                out.append(Sample(key, value if enough else None, volume))
            return out
        special: dict[str, Callable[[], list[Sample]]] = {
            "cost_increase": lambda: self._cost_increase(
                seconds, labels, baseline, min_requests, floor
            ),
            "unusual_traffic_pattern": lambda: self._traffic_z(seconds, labels, baseline),
            "quality_score": lambda: self._quality(seconds, labels, min_requests),
            "quality_score_decrease": lambda: self._quality_decrease(
                seconds, labels, baseline, min_requests, floor
            ),
            "toxicity_rate": lambda: self._flag_rate("toxicity", seconds, labels, min_requests),
            "pii_rate": lambda: self._flag_rate("pii", seconds, labels, min_requests),
            "refusal_rate": lambda: self._flag_rate("refused", seconds, labels, min_requests),
            "prompt_injection_rate": lambda: self._flag_rate(
                "injection", seconds, labels, min_requests
            ),
            "satisfaction": lambda: self._satisfaction(seconds, labels, min_requests),
            "quota_utilization": lambda: self._quota(seconds, labels),
            "resource_utilization": lambda: self._resources(labels),
        }
        if metric not in special:
            raise ValueError(f"no computation for metric {metric!r}")
        return special[metric]()

    # --- metrics with a baseline -------------------------------------------------------

    def _cost_increase(
        self,
        seconds: float,
        labels: list[str],
        baseline: float,
        min_requests: float,
        floor: float = 0.0,
    ) -> list[Sample]:
        """Relative rise of spend per minute; no verdict when the baseline spend per minute
        is under `floor` or the baseline saw fewer than `min_requests` requests."""
        current = group(self.window(seconds).requests, labels)
        before = group(self.window(baseline, offset=seconds).requests, labels)
        out = []
        for key, agg in sorted(current.items()):
            base = before.get(key)
            rate = agg.cost / seconds
            base_rate = base.cost / baseline if base is not None else 0.0
            enough_base = base is not None and base.count >= min_requests
            value = (
                (rate - base_rate) / base_rate
                if base_rate > 0 and base_rate * 60.0 >= floor and enough_base
                else None
            )
            out.append(Sample(key, value if agg.count >= min_requests else None, agg.count))
        return out

    def _traffic_z(self, seconds: float, labels: list[str], baseline: float) -> list[Sample]:
        end = self.now - seconds
        history = per_minute_counts(
            self.db,
            Window(end - baseline, end, self.now),
            labels,
            environment=self.environment,
        )
        current = group(self.window(seconds).requests, labels)
        out = []
        for key in sorted(set(history) | set(current)):
            counts = history.get(key, [])
            agg = current.get(key)
            rate = (agg.count if agg else 0.0) / (seconds / 60.0)
            out.append(Sample(key, robust_z(rate, counts), float(len(counts))))
        return out

    # --- sampled quality scores and feedback -------------------------------------------

    def _score_rows(
        self, start: float, end: float, where: str, params: dict[str, object]
    ) -> list[dict[str, object]]:
        sql = (
            "SELECT environment, model_id, provider, scorer, score, passed FROM quality_samples "
            "WHERE ts >= :start AND ts <= :end" + where
        )
        if self.environment is not None:
            sql += " AND environment = :env"
            params["env"] = self.environment
        return self.db.execute(sql, {"start": start, "end": end, **params})

    def _quality_means(
        self, start: float, end: float, labels: list[str]
    ) -> dict[Labels, tuple[float, int, float]]:
        """Per group: (mean score, samples, sample variance)."""
        excluded = ", ".join(f"'{name}'" for name in QUALITY_EXCLUDED_SCORERS)
        rows = self._score_rows(start, end, f" AND scorer NOT IN ({excluded})", {})
        buckets: dict[Labels, list[float]] = {}
        for row in rows:
            buckets.setdefault(_row_labels(row, labels), []).append(float(row["score"]))  # type: ignore[arg-type]
        return {
            k: (statistics.fmean(v), len(v), statistics.variance(v) if len(v) > 1 else 0.0)
            for k, v in buckets.items()
        }

    def _quality(self, seconds: float, labels: list[str], min_requests: float) -> list[Sample]:
        means = self._quality_means(self.now - seconds, self.now, labels)
        return [
            Sample(k, mean if n >= min_requests else None, n)
            for k, (mean, n, _) in sorted(means.items())
        ]

    def _quality_decrease(
        self,
        seconds: float,
        labels: list[str],
        baseline: float,
        min_requests: float,
        floor: float = 0.0,
    ) -> list[Sample]:
        """Relative drop of the mean sampled score against the baseline, given only when
        both sides have `min_requests` samples, the baseline is at least `floor`, and a
        one-sided Welch test says the drop is significant (p < QUALITY_DROP_ALPHA): a dip in
        a handful of probes is not a drop."""
        current = self._quality_means(self.now - seconds, self.now, labels)
        before = self._quality_means(self.now - seconds - baseline, self.now - seconds, labels)
        # A model without a baseline of its own (just promoted, or rolled back to) is compared
        # with what the rest of its group scored before it: the previous model's score.
        peers = [n for n in labels if n != "model_id"]
        group_before = (
            self._quality_means(self.now - seconds - baseline, self.now - seconds, peers)
            if len(peers) < len(labels)
            else before
        )
        out = []
        for key, (mean, n, variance) in sorted(current.items()):
            base = before.get(key)
            if base is None or base[1] < min_requests:
                base = group_before.get(tuple(p for p in key if p[0] != "model_id"), base)
            value = None
            if (
                base is not None
                and base[0] > 0
                and base[0] >= floor
                and n >= min_requests
                and base[1] >= min_requests
                and drop_is_significant(base, (mean, n, variance))
            ):
                value = (base[0] - mean) / base[0]
            out.append(Sample(key, value, n))
        return out

    def _flag_rate(
        self, scorer: str, seconds: float, labels: list[str], min_requests: float
    ) -> list[Sample]:
        rows = self._score_rows(
            self.now - seconds, self.now, " AND scorer = :scorer", {"scorer": scorer}
        )
        buckets: dict[Labels, list[int]] = {}
        for row in rows:
            buckets.setdefault(_row_labels(row, labels), []).append(0 if row["passed"] else 1)
        return [
            Sample(k, (sum(v) / len(v)) if len(v) >= min_requests else None, len(v))
            for k, v in sorted(buckets.items())
        ]

    def _satisfaction(self, seconds: float, labels: list[str], min_requests: float) -> list[Sample]:
        sql = (
            "SELECT f.score AS score, r.environment AS environment, r.alias AS alias, "
            "r.model_id AS model_id, r.provider AS provider FROM feedback f "
            "JOIN requests r ON r.id = f.request_id WHERE f.ts >= :start AND f.ts <= :end"
        )
        params: dict[str, object] = {"start": self.now - seconds, "end": self.now}
        if self.environment is not None:
            sql += " AND r.environment = :env"
            params["env"] = self.environment
        buckets: dict[Labels, list[float]] = {}
        for row in self.db.execute(sql, params):
            buckets.setdefault(_row_labels(row, labels), []).append(float(row["score"]))
        return [
            Sample(k, statistics.fmean(v) if len(v) >= min_requests else None, len(v))
            for k, v in sorted(buckets.items())
        ]

    # --- capacity -----------------------------------------------------------------------

    def _quota(self, seconds: float, labels: list[str]) -> list[Sample]:
        names = [n for n in labels if n in ("environment", "provider")]
        minute = group(self.window(min(seconds, 60.0)).attempts, names)
        tokens = group(self.window(min(seconds, 60.0)).requests, names)
        day = group(self.window(86400.0).attempts, names)
        per_minute = 60.0 / min(seconds, 60.0)
        out = []
        for key, agg in sorted(minute.items()):
            quota = self.quotas.get(dict(key).get("provider", ""))
            if quota is None:
                continue
            used = tokens.get(key, Aggregate())
            shares = []
            if quota.rpm:
                shares.append(agg.count * per_minute / quota.rpm)
            if quota.tpm:
                shares.append((used.input_tokens + used.output_tokens) * per_minute / quota.tpm)
            if quota.rpd:
                shares.append(day.get(key, Aggregate()).count / quota.rpd)
            out.append(Sample(key, max(shares) if shares else None, agg.count))
        return out

    def _resources(self, labels: list[str]) -> list[Sample]:
        usage = gateway_utilization(self.db, self.now, environment=self.environment)
        out = []
        for environment, share in sorted(usage.items()):
            key = tuple((n, environment) for n in labels if n == "environment")
            out.append(Sample(key, share, 1.0))
        return out


def robust_z(value: float, history: list[float]) -> float | None:
    """|modified z-score| of `value` against per-minute `history` (oldest first); None on too
    short a history."""
    # Minutes before the first recorded traffic are not history, just an empty store.
    start = next((i for i, x in enumerate(history) if x > 0), len(history))
    history = history[start:]
    if len(history) < MIN_BASELINE_MINUTES:
        return None
    median = statistics.median(history)
    mad = statistics.median(abs(x - median) for x in history)
    mean_ad = statistics.fmean(abs(x - median) for x in history)
    # Counts per minute vary at least as a Poisson count does (sqrt of the mean), so
    # perfectly steady history does not turn a 10% wobble into an infinite score.
    sigma = max(mad / MAD_SCALE, MEAN_AD_SCALE * mean_ad, math.sqrt(max(median, 1.0)))
    return abs(value - median) / sigma


def _row_labels(row: dict[str, object], labels: list[str]) -> Labels:
    return tuple((name, str(row.get(name) or "")) for name in labels if name in LABELS)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _error_rate(agg: Aggregate, _s: float) -> tuple[float | None, float]:
    return _ratio(agg.errors, agg.count), agg.count


def _quantile(q: float) -> Callable[[Aggregate, float], tuple[float | None, float]]:
    def compute(agg: Aggregate, _s: float) -> tuple[float | None, float]:
        return agg.latency.quantile(q), agg.count

    return compute


def _ttft_p95(agg: Aggregate, _s: float) -> tuple[float | None, float]:
    return agg.ttft.quantile(0.95), agg.ttft.count


def _throughput(agg: Aggregate, seconds: float) -> tuple[float | None, float]:
    return agg.count / seconds, agg.count


def _availability(agg: Aggregate, _s: float) -> tuple[float | None, float]:
    share = _ratio(agg.availability_errors, agg.count)
    return (1.0 - share if share is not None else None), agg.count


def _class_rate(*classes: str) -> Callable[[Aggregate, float], tuple[float | None, float]]:
    def compute(agg: Aggregate, _s: float) -> tuple[float | None, float]:
        return _ratio(sum(agg.errors_by_class.get(c, 0.0) for c in classes), agg.count), agg.count

    return compute


def _cache_hit_rate(agg: Aggregate, _s: float) -> tuple[float | None, float]:
    cacheable = agg.cache_hits + agg.cache_stale + agg.cache_misses
    return _ratio(agg.cache_hits, cacheable), cacheable


def _invalid_output_rate(agg: Aggregate, _s: float) -> tuple[float | None, float]:
    return _ratio(agg.outputs_invalid, agg.outputs_checked), agg.outputs_checked


def _cost_per_minute(agg: Aggregate, seconds: float) -> tuple[float | None, float]:
    return agg.cost / (seconds / 60.0), agg.count


# metric -> (series kind, computation, needs histograms)
_SIMPLE: dict[str, tuple[str, Callable[[Aggregate, float], tuple[float | None, float]], bool]] = {
    "error_rate": ("request", _error_rate, False),
    "p50_latency": ("request", _quantile(0.50), True),
    "p95_latency": ("request", _quantile(0.95), True),
    "p99_latency": ("request", _quantile(0.99), True),
    "ttft_p95": ("request", _ttft_p95, True),
    "throughput": ("request", _throughput, False),
    "cache_hit_rate": ("request", _cache_hit_rate, False),
    "cost_per_minute": ("request", _cost_per_minute, False),
    "invalid_output_rate": ("request", _invalid_output_rate, False),
    "provider_availability": ("attempt", _availability, False),
    "rate_limited_rate": ("attempt", _class_rate("rate_limited"), False),
    "server_error_rate": ("attempt", _class_rate("server_error", "overloaded"), False),
}
# Metrics computed from one window's counters alone, meaningful over any window length.
SIMPLE_METRICS = frozenset(_SIMPLE)


QUALITY_DROP_ALPHA = 0.05


def drop_is_significant(
    before: tuple[float, int, float],
    now: tuple[float, int, float],
    alpha: float = QUALITY_DROP_ALPHA,
) -> bool:
    """One-sided Welch t-test that the mean score fell from `before` to `now`, each given as
    (mean, samples, sample variance). Pure Python: the watch shares the gateway's event
    loop in `serve`, and importing scipy.stats there would stall every request for ~0.5 s."""
    import math

    (m0, n0, v0), (m1, n1, v1) = before, now
    if m1 >= m0 or n0 < 2 or n1 < 2:
        return False
    se2 = v0 / n0 + v1 / n1
    if se2 <= 0:
        return True  # no spread on either side and a lower mean: every sample says so
    t = (m0 - m1) / math.sqrt(se2)
    dof = se2**2 / ((v0 / n0) ** 2 / (n0 - 1) + (v1 / n1) ** 2 / (n1 - 1) or 1e-300)
    return student_t_sf(t, dof) < alpha


def student_t_sf(t: float, dof: float) -> float:
    """P(T > t) for Student's t with `dof` degrees of freedom (t >= 0), through the
    regularized incomplete beta function: P = I_x(dof/2, 1/2) / 2 with x = dof/(dof+t^2)."""
    x = dof / (dof + t * t)
    return 0.5 * _betainc(dof / 2.0, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by its continued fraction (modified Lentz)."""
    import math

    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return front * f / a
