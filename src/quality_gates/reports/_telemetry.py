"""Measured figures from telemetry: the runbook's key metrics against the environment's
thresholds, availability per provider, series over time, the error budget and quota use.

Everything comes from the per-minute roll-ups (`signals._windows`), the sampled quality
scores and the feedback (`signals._metrics.MetricEngine`); a figure with nothing behind it is
None and its verdict `NO DATA`, never a default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quality_gates.signals._metrics import MetricEngine
from quality_gates.signals._windows import (
    Aggregate,
    SeriesKey,
    Window,
    per_minute_counts,
    read_window,
)
from quality_gates.store.db import Connection

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig, Thresholds

PASS, FAIL, NO_DATA = "PASS", "FAIL", "NO DATA"
MAX_POINTS = 60
# Bucket widths a chart steps through, so its axis reads in round numbers.
BUCKETS_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
QUOTA_WARN = 0.8  # the runbook's "maintain adequate provider quotas": flag peaks above 80%
MODEL_AT = 2  # position of model_id in a SeriesKey


@dataclass(frozen=True)
class Scope:
    """Which telemetry a report reads: a time range, an environment, a model."""

    start: float
    end: float
    now: float
    environment: str | None = None
    model_id: str | None = None

    @property
    def seconds(self) -> float:
        """The range's length."""
        return max(self.end - self.start, 0.0)

    def window(self) -> Window:
        """The range as a roll-up window."""
        return Window(self.start, self.end, self.now)

    def narrowed(self, start: float, end: float) -> Scope:
        """The same filters over another range."""
        return Scope(start, end, self.now, self.environment, self.model_id)


def verdict(measured: float | None, target: float, comparison: str) -> str:
    """PASS, FAIL or NO DATA for `measured` against `target` (`<` stay below, `>` exceed)."""
    if measured is None:
        return NO_DATA
    ok = measured < target if comparison == "<" else measured > target
    return PASS if ok else FAIL


def _keep(key: SeriesKey, scope: Scope) -> bool:
    return scope.model_id is None or key[MODEL_AT] == scope.model_id


def totals(
    conn: Connection, scope: Scope, *, histograms: bool = True
) -> tuple[Aggregate, Aggregate]:
    """Client requests and upstream attempts summed over the scope."""
    data = read_window(
        conn, scope.window(), environment=scope.environment, histograms=histograms, ttft=False
    )
    requests, attempts = Aggregate(), Aggregate()
    for key, agg in data.requests.items():
        if _keep(key, scope):
            requests.merge(agg)
    for key, agg in data.attempts.items():
        if _keep(key, scope):
            attempts.merge(agg)
    return requests, attempts


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _engine_value(conn: Connection, scope: Scope, metric: str) -> tuple[float | None, float]:
    """A MetricEngine metric over the whole scope, for its model if one is named."""
    engine = MetricEngine(conn, scope.end, environment=scope.environment)
    labels = ["model_id"] if scope.model_id else []
    for sample in engine.samples(metric, scope.seconds, labels, min_requests=1):
        if not scope.model_id or dict(sample.labels).get("model_id") == scope.model_id:
            return sample.value, sample.volume
    return None, 0.0


def busiest_minute(conn: Connection, scope: Scope) -> tuple[float | None, float | None]:
    """(requests/s in the busiest finished minute, mean requests/s over minutes with traffic)."""
    labels = ["model_id"] if scope.model_id else []
    counts = per_minute_counts(conn, scope.window(), labels, environment=scope.environment)
    minutes: list[float] = []
    for key, values in counts.items():
        if scope.model_id and dict(key).get("model_id") != scope.model_id:
            continue
        minutes = values if not minutes else [a + b for a, b in zip(minutes, values, strict=True)]
    active = [n for n in minutes if n > 0]
    if not active:
        return None, None
    return max(active) / 60.0, sum(active) / len(active) / 60.0


def compliance(
    conn: Connection, thresholds: Thresholds, scope: Scope, requests: Aggregate, attempts: Aggregate
) -> list[dict[str, Any]]:
    """Each key metric of the runbook: measured, target, verdict and what it rests on."""
    rows: list[dict[str, Any]] = []

    def add(
        metric: str,
        name: str,
        measured: float | None,
        target: float,
        comparison: str,
        unit: str,
        basis: str,
    ) -> None:
        rows.append(
            {
                "metric": metric,
                "name": name,
                "measured": measured,
                "target": target,
                "comparison": comparison,
                "unit": unit,
                "status": verdict(measured, target, comparison),
                "basis": basis,
            }
        )

    n = round(requests.count)
    p95 = requests.latency.quantile(0.95)
    add("p95_latency", "P95 latency", p95, thresholds.p95_latency_ms, "<", "ms", f"{n:,} requests")
    peak, mean = busiest_minute(conn, scope)
    add(
        "throughput",
        "Throughput (busiest minute)",
        peak,
        thresholds.throughput_rps,
        ">",
        "req/s",
        "no finished minute with traffic"
        if mean is None
        else f"mean {mean:.2f} req/s over minutes with traffic",
    )
    add(
        "error_rate",
        "Error rate",
        _ratio(requests.errors, requests.count),
        thresholds.error_rate,
        "<",
        "ratio",
        f"{round(requests.errors):,} failed of {n:,}",
    )
    accuracy, scored = _engine_value(conn, scope, "quality_score")
    add(
        "accuracy",
        "Accuracy (probe and sampled scores)",
        accuracy,
        thresholds.accuracy,
        ">",
        "ratio",
        f"{round(scored):,} scored answers",
    )
    satisfaction, votes = _engine_value(conn, scope, "satisfaction")
    add(
        "satisfaction",
        "User satisfaction (1-5)",
        satisfaction,
        thresholds.satisfaction,
        ">",
        "score",
        f"{round(votes):,} feedback ratings",
    )
    toxicity, checked = _engine_value(conn, scope, "toxicity_rate")
    add(
        "toxicity_rate",
        "Toxicity rate",
        toxicity,
        thresholds.toxicity_rate,
        "<",
        "ratio",
        f"{round(checked):,} answers checked",
    )
    availability = _ratio(attempts.count - attempts.availability_errors, attempts.count)
    add(
        "availability",
        "Provider availability",
        availability,
        thresholds.availability,
        ">",
        "ratio",
        f"{round(attempts.count):,} upstream attempts",
    )
    cacheable = requests.cache_hits + requests.cache_stale + requests.cache_misses
    add(
        "cache_hit_rate",
        "Cache hit rate",
        _ratio(requests.cache_hits, cacheable),
        thresholds.cache_hit_rate,
        ">",
        "ratio",
        f"{round(cacheable):,} cacheable requests",
    )
    return rows


def providers(merged: dict[str, Aggregate], target: float) -> list[dict[str, Any]]:
    """Availability, errors by class and latency of each provider's upstream attempts."""
    out = []
    for name, agg in sorted(merged.items()):
        availability = _ratio(agg.count - agg.availability_errors, agg.count)
        out.append(
            {
                "provider": name,
                "attempts": round(agg.count),
                "errors": round(agg.errors),
                "errors_by_class": {k: round(v) for k, v in sorted(agg.errors_by_class.items())},
                "availability": availability,
                "target": target,
                "status": verdict(availability, target, ">"),
                "p95_ms": agg.latency.quantile(0.95),
            }
        )
    return out


def bucket_seconds(span: float) -> int:
    """The round bucket width that draws `span` in at most MAX_POINTS points."""
    for width in BUCKETS_S:
        if span / width <= MAX_POINTS:
            return width
    return math.ceil(span / MAX_POINTS / 86400.0) * 86400


def data_span(conn: Connection, scope: Scope) -> tuple[float, float] | None:
    """The first and last roll-up minute with data in the scope, as epoch seconds."""
    sql = (
        "SELECT MIN(minute) AS a, MAX(minute) AS b FROM rollups WHERE minute >= :a AND minute <= :b"
    )
    params: dict[str, Any] = {"a": int(scope.start // 60), "b": int(scope.end // 60)}
    if scope.environment:
        sql += " AND environment = :env"
        params["env"] = scope.environment
    if scope.model_id:
        sql += " AND model_id = :model"
        params["model"] = scope.model_id
    row = conn.one(sql, params)
    if not row or row["a"] is None:
        return None
    return max(float(row["a"]) * 60.0, scope.start), min(float(row["b"]) * 60.0 + 60.0, scope.end)


@dataclass
class Collected:
    """The scope's telemetry read once, bucket by bucket: the series for the charts, and the
    totals and per-provider attempts merged from the same buckets."""

    bucket_seconds: int | None = None
    points: list[dict[str, Any]] = field(default_factory=list)
    requests: Aggregate = field(default_factory=Aggregate)
    attempts: Aggregate = field(default_factory=Aggregate)
    providers: dict[str, Aggregate] = field(default_factory=dict)


def _point(t: float, covered: float, requests: Aggregate) -> dict[str, Any]:
    return {
        "t": t,
        "seconds": covered,
        "requests": round(requests.count),
        "errors": round(requests.errors),
        "availability_errors": round(requests.availability_errors, 3),
        "p50_ms": requests.latency.quantile(0.50),
        "p95_ms": requests.latency.quantile(0.95),
        "p99_ms": requests.latency.quantile(0.99),
        "cost": round(requests.cost, 6),
        "input_tokens": round(requests.input_tokens),
        "output_tokens": round(requests.output_tokens),
    }


def collect(conn: Connection, scope: Scope) -> Collected:
    """Read the span with data in round buckets (each roll-up row once, edges weighted as one
    window would weigh them): points per bucket, totals, attempts per provider."""
    out = Collected()
    span = data_span(conn, scope)
    if span is None:
        return out
    width = out.bucket_seconds = bucket_seconds(span[1] - span[0])
    t = float(math.floor(span[0] / width) * width)
    while t < span[1]:
        bucket = scope.narrowed(max(t, scope.start), min(t + width, scope.end))
        data = read_window(conn, bucket.window(), environment=scope.environment, ttft=False)
        requests = Aggregate()
        for key, agg in data.requests.items():
            if _keep(key, scope):
                requests.merge(agg)
        for key, agg in data.attempts.items():
            if _keep(key, scope):
                out.attempts.merge(agg)
                out.providers.setdefault(key[3], Aggregate()).merge(agg)
        out.requests.merge(requests)
        if requests.count > 0:
            out.points.append(_point(t, min(t + width, span[1]) - max(t, span[0]), requests))
        t += width
    return out


def error_budget(
    config: QualityGatesConfig, thresholds: Thresholds, requests: Aggregate
) -> dict[str, Any]:
    """The availability SLO's error budget over the period: allowed, spent, burn rate."""
    slo = next((s for s in config.alerts.slos if s.sli == "availability"), None)
    objective = slo.objective if slo is not None else thresholds.availability
    budget = 1.0 - objective
    bad = requests.availability_errors
    allowed = budget * requests.count
    consumed = bad / allowed if allowed > 0 else None
    burn = (bad / requests.count) / budget if requests.count > 0 and budget > 0 else None
    return {
        "slo": slo.name if slo is not None else "availability (environment threshold)",
        "objective": objective,
        "requests": round(requests.count),
        "failed": round(bad),
        "allowed_failures": round(allowed, 2),
        "consumed": consumed,
        "burn_rate": burn,
        "status": NO_DATA if consumed is None else (PASS if consumed <= 1.0 else FAIL),
    }


def quota_usage(conn: Connection, config: QualityGatesConfig, scope: Scope) -> list[dict[str, Any]]:
    """Each provider's busiest and mean minute of requests and tokens against its quotas."""
    params: dict[str, Any] = {"a": int(scope.start // 60), "b": int(scope.end // 60)}
    where = "minute >= :a AND minute <= :b"
    if scope.environment:
        where += " AND environment = :env"
        params["env"] = scope.environment
    # Requests against rpm are upstream attempts; tokens are counted on the answered requests.
    rows = conn.execute(
        "SELECT provider, minute, SUM(CASE WHEN kind = 'attempt' THEN count ELSE 0 END) AS n, "
        "SUM(CASE WHEN kind = 'request' THEN input_tokens + output_tokens ELSE 0 END) AS tokens "
        f"FROM rollups WHERE {where} GROUP BY provider, minute",
        params,
    )
    per: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row["provider"]:
            per.setdefault(str(row["provider"]), []).append(
                (float(row["n"] or 0), float(row["tokens"] or 0))
            )
    out = []
    for provider in config.providers:
        minutes = per.get(provider.name, [])
        quota = provider.quotas
        entry: dict[str, Any] = {
            "provider": provider.name,
            "rpm_quota": quota.rpm,
            "tpm_quota": quota.tpm,
            "minutes_with_traffic": len(minutes),
            "peak_rpm": max((m[0] for m in minutes), default=None),
            "mean_rpm": (sum(m[0] for m in minutes) / len(minutes)) if minutes else None,
            "peak_tpm": max((m[1] for m in minutes), default=None),
            "mean_tpm": (sum(m[1] for m in minutes) / len(minutes)) if minutes else None,
        }
        shares = []
        for used, limit, name in (("peak_rpm", quota.rpm, "rpm"), ("peak_tpm", quota.tpm, "tpm")):
            share = entry[used] / limit if limit and entry[used] is not None else None
            entry[f"peak_{name}_share"] = share
            if share is not None:
                shares.append(share)
        if not minutes:
            entry["status"] = NO_DATA
        elif not shares:
            entry["status"] = "NO QUOTA"
        else:
            entry["status"] = (
                "OVER" if max(shares) > 1.0 else ("HIGH" if max(shares) > QUOTA_WARN else "OK")
            )
        out.append(entry)
    return out


def model_figures(conn: Connection, scope: Scope) -> dict[str, Any]:
    """One model's (or everything's) figures over the scope, for side-by-side comparisons."""
    requests, attempts = totals(conn, scope)
    accuracy, scored = _engine_value(conn, scope, "quality_score")
    satisfaction, votes = _engine_value(conn, scope, "satisfaction")
    cacheable = requests.cache_hits + requests.cache_stale + requests.cache_misses
    tokens = requests.input_tokens + requests.output_tokens
    return {
        "requests": round(requests.count),
        "error_rate": _ratio(requests.errors, requests.count),
        "p50_ms": requests.latency.quantile(0.50),
        "p95_ms": requests.latency.quantile(0.95),
        "p99_ms": requests.latency.quantile(0.99),
        "availability": _ratio(attempts.count - attempts.availability_errors, attempts.count),
        "cache_hit_rate": _ratio(requests.cache_hits, cacheable),
        "cost": round(requests.cost, 6),
        "cost_per_request": _ratio(requests.cost, requests.count),
        "tokens_per_request": _ratio(tokens, requests.count),
        "accuracy": accuracy,
        "scored_answers": round(scored),
        "satisfaction": satisfaction,
        "feedback_ratings": round(votes),
    }
