"""`rules export --format prometheus`: the config's rules as a Prometheus rule file.

The expressions read the gateway's `/metrics` (qg_gateway_requests_total,
qg_gateway_request_duration_seconds, qg_gateway_upstream_attempts_total, ...), so a
Prometheus scraping the gateways alerts as `quality-gates watch` does: the same minimum
sample per rule, refused keys (401) outside every denominator, and the labels the watch's
inhibitions and notification routes match on (`severity`, `type`, `metric`, `priority`, the
incident severity the watch would give the alert before any escalation).

Windows are valid at the scrape interval: `rate()` needs at least two samples in its range,
and Prometheus's own advice is four, so a window under 4x the interval is widened to it
(and the header says so). Metrics that live only in the store (sampled quality scores,
feedback, quotas, heartbeats) have no series in `/metrics`; their rules are listed in the
file's header as not exported, never faked. SLOs become recording rules per window plus the
SRE workbook's multi-window alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quality_gates.watch._evaluate import SLO_MIN_REQUESTS, rule_specs

if TYPE_CHECKING:
    from quality_gates.alerts._rules import RuleSpec
    from quality_gates.config import QualityGatesConfig

DEFAULT_SCRAPE_INTERVAL = 60.0
SAMPLES_PER_WINDOW = 4  # the fewest scrapes a rate() window should span
BASELINE_POINTS = 96  # points of a z-score's baseline subquery
REQUESTS = "qg_gateway_requests_total"
DURATION = "qg_gateway_request_duration_seconds"
TTFT = "qg_gateway_time_to_first_token_seconds"
ATTEMPTS = "qg_gateway_upstream_attempts_total"
CACHE = "qg_gateway_cache_lookups_total"
COST = "qg_gateway_cost_usd_total"
OUTPUTS = "qg_gateway_structured_outputs_total"
# Refused keys are counted but, as in the watch's roll-ups, never dilute a client metric.
COUNTED = 'error_class!="auth_failed"'
# A controlled emergency stop answers 503 on purpose: the watch does not count it as failed.
FAILED = 'code=~"5..", error_class!="shutdown"'
UNAVAILABLE = 'outcome!~"ok|bad_request|content_filtered"'
STORE_ONLY = frozenset(
    {
        "quality_score",
        "quality_score_decrease",
        "toxicity_rate",
        "pii_rate",
        "refusal_rate",
        "prompt_injection_rate",
        "satisfaction",
        "quota_utilization",
        "resource_utilization",
    }
)
SERIES_LABELS = {"environment": "environment", "model_id": "model", "provider": "provider"}


def duration(seconds: float) -> str:
    """Prometheus duration: 90 -> 1m30s, 3600 -> 1h."""
    seconds = round(seconds)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def valid_window(seconds: float, scrape_interval: float) -> float:
    """`seconds`, or SAMPLES_PER_WINDOW scrape intervals when that is longer."""
    return max(seconds, SAMPLES_PER_WINDOW * scrape_interval)


def _by(spec: RuleSpec) -> str | None:
    """The PromQL grouping of a rule, or None when a label has no series in /metrics."""
    if any(name not in SERIES_LABELS for name in spec.group_by):
        return None
    return ", ".join(SERIES_LABELS[name] for name in spec.group_by)


def _sel(metric: str, *matchers: str) -> str:
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def _sum(by: str, inner: str) -> str:
    return f"sum by ({by}) ({inner})"


def _ratio(numerator: str, denominator: str, by: str, window: str) -> str:
    return (
        f"{_sum(by, f'rate({numerator}[{window}])')}\n"
        f"  /\n{_sum(by, f'rate({denominator}[{window}])')}"
    )


def _quantile(q: float, histogram: str, by: str, window: str) -> str:
    inner = _sum(f"{by}, le", f"rate({histogram}_bucket[{window}])")
    return f"histogram_quantile({q}, {inner}) * 1000"


@dataclass(frozen=True)
class Query:
    """One rule in PromQL: its value (in our base units) and the volume its minimum sample
    is checked against (None: no minimum, as for throughput)."""

    value: str
    volume: str | None
    window: float
    notes: list[str] = field(default_factory=list)


def query(spec: RuleSpec, scrape_interval: float = DEFAULT_SCRAPE_INTERVAL) -> Query | None:
    """The rule's PromQL at this scrape interval, or None if /metrics lacks its series."""
    by = _by(spec)
    metric = spec.metric
    if metric in STORE_ONLY or by is None:
        return None
    seconds = valid_window(spec.window, scrape_interval)
    w = duration(seconds)
    requests = _sel(REQUESTS, COUNTED)
    attempts = ATTEMPTS
    volume: str | None = requests
    if metric == "error_rate":
        value = _ratio(_sel(REQUESTS, COUNTED, FAILED), requests, by, w)
    elif metric in ("p50_latency", "p95_latency", "p99_latency"):
        value = _quantile(int(metric[1:3]) / 100, DURATION, by, w)
        volume = f"{DURATION}_count"
    elif metric == "ttft_p95":
        value = _quantile(0.95, TTFT, by, w)
        volume = f"{TTFT}_count"
    elif metric == "throughput":
        value, volume = _sum(by, f"rate({requests}[{w}])"), None
    elif metric == "provider_availability":
        value = f"1 - (\n{_ratio(_sel(ATTEMPTS, UNAVAILABLE), attempts, by, w)}\n)"
        volume = attempts
    elif metric == "rate_limited_rate":
        value = _ratio(_sel(ATTEMPTS, 'outcome="rate_limited"'), attempts, by, w)
        volume = attempts
    elif metric == "server_error_rate":
        value = _ratio(_sel(ATTEMPTS, 'outcome=~"server_error|overloaded"'), attempts, by, w)
        volume = attempts
    elif metric == "cache_hit_rate":
        cacheable = _sel(CACHE, 'result=~"hit|stale|miss"')
        value = _ratio(_sel(CACHE, 'result="hit"'), cacheable, by, w)
        volume = cacheable
    elif metric == "invalid_output_rate":
        value = _ratio(_sel(OUTPUTS, 'verdict!="valid"'), OUTPUTS, by, w)
        volume = OUTPUTS
    elif metric == "cost_per_minute":
        value = f"{_sum(by, f'rate({COST}[{w}])')} * 60"
    elif metric == "cost_increase":
        base = duration(spec.baseline_window)
        value = (
            f"{_sum(by, f'rate({COST}[{w}])')}\n  /\n"
            f"{_sum(by, f'rate({COST}[{base}] offset {w})')} - 1"
        )
    elif metric == "unusual_traffic_pattern":
        # PromQL has no median absolute deviation over time; a z-score against the
        # baseline's mean and standard deviation is the closest it gets.
        # The baseline sampled about 96 times (every 15 minutes of a day): enough for a mean
        # and a spread, where one point a scrape costs a thousand evaluations per evaluation.
        base = duration(spec.baseline_window)
        step = duration(max(scrape_interval, spec.baseline_window / BASELINE_POINTS))
        current = _sum(by, f"rate({requests}[{w}])")
        value = (
            f"abs({current} - avg_over_time(({current})[{base}:{step}] offset {w}))\n  /\n"
            f"stddev_over_time(({current})[{base}:{step}] offset {w})"
        )
        volume = None
    else:
        return None
    notes = []
    if seconds > spec.window:
        notes.append(
            f"{spec.name}: window {duration(spec.window)} widened to {w} "
            f"({SAMPLES_PER_WINDOW}x the {duration(scrape_interval)} scrape interval)"
        )
    if volume is not None and spec.min_requests > 0:
        volume = _sum(by, f"increase({volume}[{w}])")
    return Query(value, volume, seconds, notes)


def expression(spec: RuleSpec, scrape_interval: float = DEFAULT_SCRAPE_INTERVAL) -> str | None:
    """The alert expression of one rule: its value breaking the threshold on at least
    `min_requests` of volume; None if /metrics lacks the rule's series."""
    found = query(spec, scrape_interval)
    if found is None:
        return None
    expr = f"(\n{found.value}\n) {spec.op} {spec.threshold:g}"
    if found.volume is not None and spec.min_requests > 0:
        expr += f"\nand\n{found.volume} >= {spec.min_requests:g}"
    return expr


def priority(spec: RuleSpec, config: QualityGatesConfig) -> str:
    """The incident severity (P0-P3) the watch gives this rule's alert on its own; the
    watch may raise it later (every provider down is P0), which Prometheus cannot see."""
    from quality_gates.alerts._rules import FIRING, AlertState
    from quality_gates.incidents._incident_flow import classify

    alert = AlertState(
        fingerprint="",
        rule=spec.name,
        labels={},
        environment="",
        metric=spec.metric,
        severity=spec.severity,
        type=spec.type,
        state=FIRING,
        value=None,
        threshold=spec.threshold,
        active_since=0.0,
        updated_at=0.0,
        summary="",
    )
    return classify(alert, spec, [], set(), config.incidents.p0_error_rate)


def _slo_rules(
    config: QualityGatesConfig, scrape_interval: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    # rule_specs lists the burn windows in config order, one per (SLO, window)
    burn_specs = iter([s for s in rule_specs(config) if s.metric == "burn_rate"])
    for slo in config.alerts.slos:
        for burn in slo.windows:
            spec = next(burn_specs)
            if slo.sli == "latency":
                continue  # needs a bucket at exactly latency_ms; listed as not exported
            for seconds in (burn.long, burn.short):
                window = duration(valid_window(seconds, scrape_interval))
                name = f"qg:slo_errors_per_request:ratio_rate{window}"
                if (slo.name, window) in seen:
                    continue
                seen.add((slo.name, window))
                records.append(
                    {
                        "record": name,
                        "expr": _ratio(
                            _sel(REQUESTS, COUNTED, FAILED),
                            _sel(REQUESTS, COUNTED),
                            "environment",
                            window,
                        ),
                        "labels": {"slo": slo.name},
                    }
                )
            budget = 1.0 - slo.objective
            long_w = duration(valid_window(burn.long, scrape_interval))
            short_w = duration(valid_window(burn.short, scrape_interval))
            selector = f'{{slo="{slo.name}"}}'
            alerts.append(
                {
                    "alert": spec.name,
                    "expr": (
                        f"qg:slo_errors_per_request:ratio_rate{long_w}{selector} > "
                        f"({burn.factor:g} * {budget:g})\nand\n"
                        f"qg:slo_errors_per_request:ratio_rate{short_w}{selector} > "
                        f"({burn.factor:g} * {budget:g})\nand on (environment)\n"
                        f"{_sum('environment', f'increase({_sel(REQUESTS, COUNTED)}[{short_w}])')}"
                        f" >= {SLO_MIN_REQUESTS:g}"
                    ),
                    "labels": {
                        "severity": burn.severity,
                        "type": slo.type,
                        "metric": "burn_rate",
                        "priority": priority(spec, config),
                        "slo": slo.name,
                    },
                    "annotations": {
                        "summary": f"SLO {slo.name} ({slo.objective * 100:g}%) burning its error "
                        f"budget faster than {burn.factor:g}x over {long_w} and {short_w}"
                    },
                }
            )
    return records, alerts


@dataclass
class RuleExport:
    """The rule file as data, the rules left out (with why) and the windows widened."""

    data: dict[str, Any]
    skipped: list[str]
    widened: list[str]
    scrape_interval: float

    @property
    def count(self) -> int:
        """Rules in the file (alerts and recording rules)."""
        return sum(len(g["rules"]) for g in self.data["groups"])


def prometheus_rules(
    config: QualityGatesConfig, scrape_interval: float = DEFAULT_SCRAPE_INTERVAL
) -> RuleExport:
    """The config's rules for a Prometheus that scrapes the gateways every
    `scrape_interval` seconds."""
    skipped: list[str] = []
    widened: list[str] = []
    rules: list[dict[str, Any]] = []
    for spec in rule_specs(config):
        if spec.metric == "burn_rate":
            continue
        found = query(spec, scrape_interval)
        if found is None:
            why = (
                "grouped by alias, which /metrics does not label"
                if spec.metric not in STORE_ONLY and _by(spec) is None
                else "kept in the store, not in /metrics"
            )
            skipped.append(f"{spec.name} ({spec.metric}: {why})")
            continue
        widened.extend(found.notes)
        rule: dict[str, Any] = {"alert": spec.name, "expr": expression(spec, scrape_interval)}
        if spec.for_ > 0:
            rule["for"] = duration(spec.for_)
        if spec.keep_firing_for > 0:
            rule["keep_firing_for"] = duration(spec.keep_firing_for)
        rule["labels"] = {
            "severity": spec.severity,
            "type": spec.type,
            "metric": spec.metric,
            "priority": priority(spec, config),
            **spec.labels,
        }
        rule["annotations"] = {"summary": summary(spec, found.window)}
        rules.append(rule)
    for slo in config.alerts.slos:
        if slo.sli == "latency":
            skipped.append(f"slo {slo.name} (latency SLI: needs a histogram bucket at its limit)")
        for burn in slo.windows:
            for seconds in (burn.long, burn.short):
                if valid_window(seconds, scrape_interval) > seconds:
                    widened.append(
                        f"slo {slo.name}: window {duration(seconds)} widened to "
                        f"{duration(valid_window(seconds, scrape_interval))}"
                    )
    records, slo_alerts = _slo_rules(config, scrape_interval)
    groups: list[dict[str, Any]] = [
        {
            "name": f"{config.project}-alerts",
            # Evaluating faster than the scrapes arrive only repeats the same answer.
            "interval": duration(max(config.alerts.evaluation_interval, scrape_interval)),
            "rules": rules,
        }
    ]
    if records:
        groups.append({"name": f"{config.project}-slo", "rules": records + slo_alerts})
    return RuleExport({"groups": groups}, skipped, sorted(set(widened)), scrape_interval)


def summary(spec: RuleSpec, window: float) -> str:
    """The alert's summary annotation: the config's, or the rule in words."""
    return spec.summary or f"{spec.expression} over {duration(window)}"


def dump_yaml(data: Any) -> str:
    """YAML as people write it for Prometheus: block scalars for multi-line strings."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, width=100, default_flow_style=False)


def render(export: RuleExport) -> str:
    """The rule file as YAML, with a header naming what it changed and left out."""
    header = [
        "# Prometheus rules generated by `quality-gates rules export --format prometheus`",
        "# from the alert rules and SLOs of the quality-gates config. They read the gateway's",
        f"# /metrics scraped every {duration(export.scrape_interval)}; check with "
        "`promtool check rules FILE`.",
    ]
    if export.widened:
        header.append(
            f"# Windows widened to {SAMPLES_PER_WINDOW}x the scrape interval "
            "(a shorter rate() window has too few samples to ever hold):"
        )
        header.extend(f"#   - {line}" for line in export.widened)
    if export.skipped:
        header.append(
            "# Not exported (no series in /metrics; `quality-gates watch` evaluates them):"
        )
        header.extend(f"#   - {line}" for line in export.skipped)
    return "\n".join(header) + "\n" + dump_yaml(export.data)
