"""`rules export --format prometheus`: the config's rules as a Prometheus rule file.

The expressions read the gateway's `/metrics` (qg_gateway_requests_total,
qg_gateway_request_duration_seconds, qg_gateway_upstream_attempts_total, ...), so a
Prometheus scraping the gateways alerts as `quality-gates watch` does. Metrics that live
only in the store (sampled quality scores, feedback, quotas, heartbeats) have no series in
`/metrics`; their rules are listed in the file's header as not exported, never faked.
SLOs become recording rules per window plus the SRE workbook's multi-window alerts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quality_gates.watch._evaluate import rule_specs

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig
    from quality_gates.watch._rules import RuleSpec

REQUESTS = "qg_gateway_requests_total"
DURATION = "qg_gateway_request_duration_seconds_bucket"
TTFT = "qg_gateway_time_to_first_token_seconds_bucket"
ATTEMPTS = "qg_gateway_upstream_attempts_total"
CACHE = "qg_gateway_cache_lookups_total"
COST = "qg_gateway_cost_usd_total"
SERVER_ERRORS = '{code=~"5.."}'
UNAVAILABLE = '{outcome!~"ok|bad_request|content_filtered"}'
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


def _by(spec: RuleSpec) -> str:
    labels = [("model" if name == "model_id" else name) for name in spec.group_by]
    return ", ".join(labels)


def _ratio(numerator: str, denominator: str, by: str, window: str) -> str:
    return (
        f"sum by ({by}) (rate({numerator}[{window}]))\n"
        f"  /\nsum by ({by}) (rate({denominator}[{window}]))"
    )


def _quantile(q: float, metric: str, by: str, window: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}[{window}]))) * 1000"


def expression(spec: RuleSpec) -> str | None:
    """PromQL for one rule (its value in our base units), or None if /metrics lacks it."""
    by, w = _by(spec), duration(spec.window)
    metric = spec.metric
    if metric in STORE_ONLY:
        return None
    if metric == "error_rate":
        value = _ratio(REQUESTS + SERVER_ERRORS, REQUESTS, by, w)
    elif metric in ("p50_latency", "p95_latency", "p99_latency"):
        value = _quantile(int(metric[1:3]) / 100, DURATION, by, w)
    elif metric == "ttft_p95":
        value = _quantile(0.95, TTFT, by, w)
    elif metric == "throughput":
        value = f"sum by ({by}) (rate({REQUESTS}[{w}]))"
    elif metric == "provider_availability":
        value = f"1 - (\n{_ratio(ATTEMPTS + UNAVAILABLE, ATTEMPTS, by, w)}\n)"
    elif metric == "rate_limited_rate":
        value = _ratio(ATTEMPTS + '{outcome="rate_limited"}', ATTEMPTS, by, w)
    elif metric == "server_error_rate":
        value = _ratio(ATTEMPTS + '{outcome=~"server_error|overloaded"}', ATTEMPTS, by, w)
    elif metric == "cache_hit_rate":
        value = _ratio(CACHE + '{result="hit"}', CACHE + '{result=~"hit|stale|miss"}', by, w)
    elif metric == "cost_per_minute":
        value = f"sum by ({by}) (rate({COST}[{w}])) * 60"
    elif metric == "cost_increase":
        base = duration(spec.baseline_window)
        value = (
            f"sum by ({by}) (rate({COST}[{w}]))\n  /\n"
            f"sum by ({by}) (rate({COST}[{base}] offset {w})) - 1"
        )
    elif metric == "unusual_traffic_pattern":
        # PromQL has no median absolute deviation over time; a z-score against the
        # baseline's mean and standard deviation is the closest it gets.
        base = duration(spec.baseline_window)
        current = f"sum by ({by}) (rate({REQUESTS}[{w}]))"
        value = (
            f"abs({current} - avg_over_time(({current})[{base}:1m] offset {w}))\n  /\n"
            f"stddev_over_time(({current})[{base}:1m] offset {w})"
        )
    else:
        return None
    return f"(\n{value}\n) {spec.op} {spec.threshold:g}"


def _slo_rules(config: QualityGatesConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for slo in config.alerts.slos:
        if slo.sli == "latency":
            continue  # needs a bucket at exactly latency_ms; listed as not exported
        for burn in slo.windows:
            for seconds in (burn.long, burn.short):
                window = duration(seconds)
                name = f"qg:slo_errors_per_request:ratio_rate{window}"
                if (slo.name, window) in seen:
                    continue
                seen.add((slo.name, window))
                records.append(
                    {
                        "record": name,
                        "expr": _ratio(REQUESTS + SERVER_ERRORS, REQUESTS, "environment", window),
                        "labels": {"slo": slo.name},
                    }
                )
            budget = 1.0 - slo.objective
            long_w, short_w = duration(burn.long), duration(burn.short)
            selector = f'{{slo="{slo.name}"}}'
            alerts.append(
                {
                    "alert": f"slo-{slo.name}-burn-{long_w}-{short_w}",
                    "expr": (
                        f"qg:slo_errors_per_request:ratio_rate{long_w}{selector} > "
                        f"({burn.factor:g} * {budget:g})\nand\n"
                        f"qg:slo_errors_per_request:ratio_rate{short_w}{selector} > "
                        f"({burn.factor:g} * {budget:g})"
                    ),
                    "labels": {"severity": burn.severity, "type": slo.type, "slo": slo.name},
                    "annotations": {
                        "summary": f"SLO {slo.name} ({slo.objective * 100:g}%) burning its error "
                        f"budget faster than {burn.factor:g}x over {long_w} and {short_w}"
                    },
                }
            )
    return records, alerts


def prometheus_rules(config: QualityGatesConfig) -> tuple[dict[str, Any], list[str]]:
    """The rule file as data, and the rules left out (with why)."""
    skipped: list[str] = []
    rules: list[dict[str, Any]] = []
    for spec in rule_specs(config):
        if spec.metric == "burn_rate":
            continue
        expr = expression(spec)
        if expr is None:
            skipped.append(f"{spec.name} ({spec.metric}: kept in the store, not in /metrics)")
            continue
        rule: dict[str, Any] = {"alert": spec.name, "expr": expr}
        if spec.for_ > 0:
            rule["for"] = duration(spec.for_)
        if spec.keep_firing_for > 0:
            rule["keep_firing_for"] = duration(spec.keep_firing_for)
        rule["labels"] = {"severity": spec.severity, "type": spec.type, **spec.labels}
        rule["annotations"] = {
            "summary": spec.summary or f"{spec.expression} over {duration(spec.window)}",
        }
        rules.append(rule)
    for slo in config.alerts.slos:
        if slo.sli == "latency":
            skipped.append(f"slo {slo.name} (latency SLI: needs a histogram bucket at its limit)")
    records, slo_alerts = _slo_rules(config)
    groups: list[dict[str, Any]] = [
        {
            "name": f"{config.project}-alerts",
            "interval": duration(config.alerts.evaluation_interval),
            "rules": rules,
        }
    ]
    if records:
        groups.append({"name": f"{config.project}-slo", "rules": records + slo_alerts})
    return {"groups": groups}, skipped


def render(config: QualityGatesConfig) -> str:
    """The rule file as YAML, with a header naming what it leaves out."""
    import yaml

    data, skipped = prometheus_rules(config)
    header = [
        "# Prometheus rules generated by `quality-gates rules export --format prometheus`",
        "# from the alert rules and SLOs of the quality-gates config. They read the gateway's",
        "# /metrics; check with `promtool check rules FILE`.",
    ]
    if skipped:
        header.append(
            "# Not exported (no series in /metrics; `quality-gates watch` evaluates them):"
        )
        header.extend(f"#   - {line}" for line in skipped)

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    body = yaml.dump(data, Dumper=Dumper, sort_keys=False, width=100, default_flow_style=False)
    return "\n".join(header) + "\n" + body
