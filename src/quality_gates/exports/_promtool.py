"""`rules export --tests FILE`: `promtool test rules` unit tests for the exported rules.

For every exported alert, synthetic gateway series at the scrape interval in three
scenarios: traffic that breaks the threshold (the alert must fire, with its labels and
summary, once its window and `for` have passed), traffic on the good side (it must stay
quiet), and breaking traffic below the rule's minimum sample (quiet too). The series are the
ones the gateway exports, so a rule whose `for` cannot be met or whose minimum sample is
never reached fails its test. Rules are evaluated every 1.5 scrape intervals and checked at
an evaluation between two scrapes, as a real Prometheus evaluates out of step with its
scrapes, so a window holding fewer than two scrapes fails too. Long windows (an SLO's 3 days,
a cost baseline's day) are scripted with samples a quarter of the shortest window apart, which
keeps promtool to seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quality_gates.exports._prometheus import (
    ATTEMPTS,
    CACHE,
    COST,
    DURATION,
    REQUESTS,
    TTFT,
    RuleExport,
    duration,
    query,
    summary,
    valid_window,
)
from quality_gates.gateway._series import LATENCY_BUCKETS
from quality_gates.watch._evaluate import SLO_MIN_REQUESTS, rule_specs

if TYPE_CHECKING:
    from quality_gates.alerts._rules import RuleSpec
    from quality_gates.config import QualityGatesConfig

VOLUME = 2.0  # requests per second in the scenarios that must reach the minimum sample
MODEL = "test-model"
Series = list[tuple[dict[str, str], float]]  # (labels, increase per second)
RATIOS = frozenset(
    {
        "error_rate",
        "provider_availability",
        "rate_limited_rate",
        "server_error_rate",
        "cache_hit_rate",
    }
)


@dataclass(frozen=True)
class Scenario:
    """Synthetic traffic: counters with their increase per second, after `baseline` for
    `baseline_seconds` (a cost baseline)."""

    counters: Series
    baseline_seconds: float = 0.0
    baseline: Series | None = None


def _value(op: str, threshold: float, breaking: bool, upper: float) -> float | None:
    """A value in [0, upper] that breaks the threshold (or not); None if there is none."""
    if breaking == (op in (">", ">=")):  # wanted: a value above the threshold
        if threshold >= upper:
            return None
        return (threshold + upper) / 2 if upper < math.inf else 2 * threshold + 1
    if threshold > 0:
        return threshold / 2
    # Nothing here is below zero: zero is only "not above" a strict `>` or within a `<=`.
    return 0.0 if op in (">", "<=") else None


def _histogram(name: str, labels: dict[str, str], seconds: float, volume: float) -> Series:
    """A histogram whose every observation falls in the bucket holding `seconds`."""
    out: Series = []
    for bound in (*LATENCY_BUCKETS, math.inf):
        le = "+Inf" if bound == math.inf else f"{bound:g}"
        out.append(
            ({"__name__": f"{name}_bucket", **labels, "le": le}, volume * (bound >= seconds))
        )
    out.append(({"__name__": f"{name}_count", **labels}, volume))
    out.append(({"__name__": f"{name}_sum", **labels}, volume * seconds))
    return out


def _latency_seconds(op: str, threshold_ms: float, breaking: bool) -> float | None:
    """An observation whose bucket puts the quantile on the wanted side of the threshold."""
    threshold = threshold_ms / 1000.0
    high = breaking == (op in (">", ">="))
    if high:  # in the bucket just above the first bound at or over the threshold
        above = [b for b in LATENCY_BUCKETS if b >= threshold]
        return (above[0] + above[1]) / 2 if len(above) >= 2 else None
    return LATENCY_BUCKETS[0] / 2 if threshold > LATENCY_BUCKETS[0] else None


class Builder:
    """Scenarios for one rule at one scrape interval."""

    def __init__(self, spec: RuleSpec, labels: dict[str, str]) -> None:
        self.spec, self.labels = spec, labels
        self.requests = {"__name__": REQUESTS, **labels, "model": MODEL, "cache": "miss"}

    def ok(self, volume: float) -> tuple[dict[str, str], float]:
        """Answered requests, per second."""
        return ({**self.requests, "code": "200", "error_class": ""}, volume)

    def scenario(self, breaking: bool, volume: float) -> Scenario | None:
        """Traffic whose rule value breaks the threshold (or not), `volume` requests a second."""
        spec, base = self.spec, {**self.labels, "model": MODEL}
        metric = spec.metric
        if metric in RATIOS:
            value = _value(spec.op, spec.threshold, breaking, 1.0)
            if value is None:
                return None
            return Scenario(self._ratio(metric, value, volume))
        if metric in ("p50_latency", "p95_latency", "p99_latency", "ttft_p95"):
            seconds = _latency_seconds(spec.op, spec.threshold, breaking)
            if seconds is None:
                return None
            name = TTFT if metric == "ttft_p95" else DURATION
            return Scenario([self.ok(volume), *_histogram(name, base, seconds, volume)])
        if metric == "throughput":
            value = _value(spec.op, spec.threshold, breaking, math.inf)
            return None if value is None else Scenario([self.ok(value)])
        if metric == "cost_per_minute":
            value = _value(spec.op, spec.threshold, breaking, math.inf)
            if value is None:
                return None
            return Scenario([self.ok(volume), ({"__name__": COST, **base}, value / 60.0)])
        if metric == "cost_increase":
            value = _value(spec.op, spec.threshold, breaking, math.inf)
            if value is None or value <= -1:
                return None
            before = 0.01 / 60.0  # a cent a minute before
            spend = {"__name__": COST, **base}
            return Scenario(
                [self.ok(volume), (spend, before * (1 + value))],
                baseline_seconds=spec.baseline_window,
                baseline=[self.ok(volume), (spend, before)],
            )
        return None  # unusual_traffic_pattern: a baseline with a spread cannot be scripted

    def _ratio(self, metric: str, value: float, volume: float) -> Series:
        attempt = {"__name__": ATTEMPTS, **self.labels, "model": MODEL}
        if metric == "error_rate":
            failed = {**self.requests, "code": "503", "error_class": "server_error"}
            refused = {**self.requests, "code": "401", "error_class": "auth_failed"}
            # A flood of refused keys rides along: it must not dilute the error rate.
            return [self.ok(volume * (1 - value)), (failed, volume * value), (refused, volume * 10)]
        if metric == "cache_hit_rate":
            lookups = {"__name__": CACHE, **self.labels}
            return [
                ({**lookups, "result": "hit"}, volume * value),
                ({**lookups, "result": "miss"}, volume * (1 - value)),
            ]
        bad = {
            "provider_availability": "server_error",
            "rate_limited_rate": "rate_limited",
            "server_error_rate": "server_error",
        }[metric]
        good_share = value if metric == "provider_availability" else 1 - value
        return [
            ({**attempt, "outcome": "ok"}, volume * good_share),
            ({**attempt, "outcome": bad}, volume * (1 - good_share)),
        ]


def _ms(seconds: float) -> str:
    """A Prometheus duration that keeps fractions of a second."""
    return duration(seconds) if seconds == int(seconds) else f"{round(seconds * 1000)}ms"


def _spacing(shortest: float, interval: float) -> float:
    """Samples a quarter of the shortest window apart, in whole scrape intervals."""
    return interval * max(1, math.floor(shortest / (4 * interval)))


def _eval_time(needed: float, interval: float) -> float:
    """The first evaluation at or after `needed` that falls between two scrapes: every
    1.5 intervals, the odd ones sit half an interval after a scrape."""
    step = 1.5 * interval
    k = math.ceil(needed / step)
    return (k if k % 2 == 1 else k + 1) * step


def _input(scenario: Scenario, spacing: float, end: float) -> list[dict[str, str]]:
    """input_series in promtool's expanding notation (`start+increment x count`)."""
    before = math.ceil(scenario.baseline_seconds / spacing) if scenario.baseline_seconds else 0
    after = math.ceil(end / spacing) - before
    baseline = {_series_name(labels): rate for labels, rate in (scenario.baseline or [])}
    out = []
    for labels, rate in scenario.counters:
        name = _series_name(labels)
        step = rate * spacing
        if before:
            base = baseline.get(name, 0.0) * spacing
            values = f"0+{base:g}x{before} {base * before + step:g}+{step:g}x{after - 1}"
        else:
            values = f"0+{step:g}x{after}"
        out.append({"series": name, "values": values})
    return out


def _series_name(labels: dict[str, str]) -> str:
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels['__name__']}{{{rest}}}"


def _test(
    name: str, spacing: float, series: list[dict[str, str]], at: float, alert: str, fires: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "interval": _ms(spacing),
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": _ms(at), "alertname": alert, "exp_alerts": [fires] if fires else []}
        ],
    }


def unit_tests(
    config: QualityGatesConfig, export: RuleExport, rule_file: str
) -> tuple[dict[str, Any], list[str]]:
    """The promtool test file (as data) for the exported alerts, and the alerts without a
    generated test (with why)."""
    interval = export.scrape_interval
    environment = next(iter(config.environments), "production")
    provider = next(iter(p.name for p in config.providers), "provider")
    exported = {r["alert"]: r for g in export.data["groups"] for r in g["rules"] if "alert" in r}
    tests: list[dict[str, Any]] = []
    untested: list[str] = []
    for spec in rule_specs(config):
        rule = exported.get(spec.name)
        if rule is None:
            continue
        if spec.metric == "burn_rate":
            tests.extend(_burn_tests(spec, rule, environment, interval))
            continue
        found = query(spec, interval)
        if found is None:
            continue
        labels = {"environment": environment}
        if "provider" in spec.group_by:
            labels["provider"] = provider
        group = {k: v for k, v in (*labels.items(), ("model", MODEL)) if _grouped(spec, k)}
        builder = Builder(spec, labels)
        volume = max(VOLUME, 2 * spec.min_requests / found.window)
        made: list[tuple[str, Scenario | None, bool]] = [
            ("breaks", builder.scenario(True, volume), True),
            ("holds", builder.scenario(False, volume), False),
        ]
        if found.volume is not None and spec.min_requests > 0:
            sparse = spec.min_requests / found.window / 2
            made.append(("too few requests", builder.scenario(True, sparse), False))
        if made[0][1] is None:
            untested.append(f"{spec.name} ({spec.metric}: no synthetic series for it)")
            continue
        spacing = _spacing(found.window, interval)
        fired = {
            "exp_labels": {**group, **rule["labels"]},
            "exp_annotations": {"summary": summary(spec, found.window)},
        }
        for label, scenario, fires in made:
            if scenario is None:
                continue
            needed = scenario.baseline_seconds + found.window + spec.for_ + 2 * spacing
            at = _eval_time(needed, interval)
            series = _input(scenario, spacing, at + spacing)
            tests.append(
                _test(f"{spec.name}: {label}", spacing, series, at, spec.name, fires and fired)
            )
    data = {
        "rule_files": [rule_file],
        "evaluation_interval": _ms(1.5 * interval),
        "tests": tests,
    }
    return data, untested


def _grouped(spec: RuleSpec, label: str) -> bool:
    names = {"environment": "environment", "provider": "provider", "model": "model_id"}
    return names[label] in spec.group_by


def _burn_tests(
    spec: RuleSpec, rule: dict[str, Any], environment: str, interval: float
) -> list[dict[str, Any]]:
    """An SLO burn alert fires when both windows burn faster than its factor."""
    budget = 1.0 - float((spec.slo or {}).get("objective", 0.999))
    long_window = valid_window(spec.window, interval)
    short_window = valid_window(spec.short_window or spec.window, interval)
    spacing = _spacing(short_window, interval)
    at = _eval_time(long_window + 2 * spacing, interval)
    builder = Builder(spec, {"environment": environment})
    volume = max(VOLUME, 2 * SLO_MIN_REQUESTS / short_window)
    fired = {
        "exp_labels": {"environment": environment, **rule["labels"]},
        "exp_annotations": dict(rule["annotations"]),
    }
    out = []
    for label, share, fires in (
        ("burns", min(1.0, 2 * spec.threshold * budget), True),
        ("within budget", spec.threshold * budget / 2, False),
    ):
        failed = {**builder.requests, "code": "503", "error_class": "server_error"}
        scenario = Scenario([builder.ok(volume * (1 - share)), (failed, volume * share)])
        series = _input(scenario, spacing, at + spacing)
        out.append(_test(f"{spec.name}: {label}", spacing, series, at, spec.name, fires and fired))
    return out
