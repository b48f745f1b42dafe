"""`dashboards export --format grafana`: a Grafana dashboard over the gateway's /metrics.

Rows lead with what an on-call engineer asks first (is it failing, for whom, since when),
then the providers, then capacity and the watch plane (alerts, incidents, notifications, the
evaluator's heartbeat). Every query reads a metric the gateway exports (a test checks the
names against a live gateway's exposition); `$environment` and `$provider` filter, and
`$__rate_interval` lets Grafana pick a window valid at the scrape interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39
DASHBOARD_UID = "quality-gates-gateway"
ENV = 'environment=~"$environment"'
PROV = 'provider=~"$provider"'
RATE = "$__rate_interval"
WIDTH = 24
PERCENTILES = (0.5, 0.95, 0.99)


@dataclass
class Panel:
    """One time series (or stat) panel: a title, its queries (PromQL, legend) and a unit."""

    title: str
    queries: list[tuple[str, str]]
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""
    width: int = 8
    thresholds: list[tuple[float, str]] = field(default_factory=list)


def _q(expr: str) -> str:
    return " ".join(expr.split())


def _sel(metric: str, *matchers: str) -> str:
    return f"{metric}{{{', '.join((ENV, *matchers))}}}"


def _rate(by: str, metric: str, *matchers: str) -> str:
    """`sum by (by) (rate(metric{environment, matchers}[$__rate_interval]))`."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({_sel(metric, *matchers)}[{RATE}]))"


def _quantile(q: float, by: str, metric: str, *matchers: str) -> str:
    grouping = f"{by}, le" if by else "le"
    return f"histogram_quantile({q:g}, {_rate(grouping, metric + '_bucket', *matchers)})"


REQUESTS = "qg_gateway_requests_total"
ATTEMPTS = "qg_gateway_upstream_attempts_total"
DURATION = "qg_gateway_request_duration_seconds"
NOT_REFUSED = 'error_class!="auth_failed"'
FAILED = 'code=~"5.."', 'error_class!="shutdown"'
UNAVAILABLE = 'outcome!~"ok|bad_request|content_filtered"'
HIT, CACHEABLE = 'result="hit"', 'result=~"hit|stale|miss"'
FIRING_UNMUTED = 'state="firing"', 'muted="false"'


def _service() -> list[Panel]:
    return [
        Panel(
            "Error rate (5xx answers)",
            [(f"{_rate('', REQUESTS, *FAILED)} / {_rate('', REQUESTS, NOT_REFUSED)}", "errors")],
            unit="percentunit",
            kind="stat",
            thresholds=[(0.0, "green"), (0.02, "orange"), (0.05, "red")],
            description="Share of answers that failed on our side (refused keys and "
            "emergency stops left out); the runbook warns at 2% and pages at 5%.",
        ),
        Panel(
            "P95 latency",
            [(_quantile(0.95, "", DURATION), "p95")],
            unit="s",
            kind="stat",
            thresholds=[(0.0, "green"), (1.5, "orange"), (3.0, "red")],
        ),
        Panel("Throughput", [(_rate("", REQUESTS), "req/s")], unit="reqps", kind="stat"),
        Panel(
            "Answers by HTTP status",
            [(_rate("code", REQUESTS), "{{code}}")],
            unit="reqps",
            width=12,
        ),
        Panel(
            "Errors and refusals by class",
            [
                (_rate("error_class", REQUESTS, 'error_class!=""'), "{{error_class}}"),
                (
                    _rate("route, error_class", "qg_gateway_http_requests_total", 'code!~"2.."'),
                    "{{route}} {{error_class}}",
                ),
            ],
            unit="reqps",
            width=12,
        ),
        Panel(
            "Latency percentiles by model",
            [(_quantile(q, "model", DURATION), f"p{q * 100:g} {{{{model}}}}") for q in PERCENTILES],
            unit="s",
            width=12,
        ),
        Panel(
            "Time to first token (streams), P95",
            [(_quantile(0.95, "model", "qg_gateway_time_to_first_token_seconds"), "{{model}}")],
            unit="s",
            width=12,
        ),
    ]


def _providers() -> list[Panel]:
    return [
        Panel(
            "Provider availability",
            [
                (
                    f"1 - {_rate('provider', ATTEMPTS, PROV, UNAVAILABLE)} / "
                    f"{_rate('provider', ATTEMPTS, PROV)}",
                    "{{provider}}",
                )
            ],
            unit="percentunit",
            thresholds=[(0.0, "red"), (0.95, "orange"), (0.999, "green")],
        ),
        Panel(
            "Upstream attempts by outcome",
            [(_rate("provider, outcome", ATTEMPTS, PROV), "{{provider}} {{outcome}}")],
            unit="reqps",
        ),
        Panel(
            "Circuit breakers (0 closed, 1 half-open, 2 open)",
            [
                (
                    f"max by (deployment) ({_sel('qg_gateway_breaker_state', PROV)})",
                    "{{deployment}}",
                )
            ],
        ),
        Panel(
            "Upstream call time, P95",
            [(_quantile(0.95, "provider", "qg_gateway_upstream_duration_seconds"), "{{provider}}")],
            unit="s",
        ),
        Panel(
            "Failovers and retries",
            [
                (
                    _rate("from_provider, error_class", "qg_gateway_failovers_total"),
                    "failover from {{from_provider}} ({{error_class}})",
                ),
                (_rate("provider", "qg_gateway_retries_total", PROV), "retry {{provider}}"),
            ],
            unit="reqps",
        ),
        Panel(
            "Streams cut after the first byte",
            [(_rate("provider", "qg_gateway_streams_interrupted_total", PROV), "{{provider}}")],
            unit="reqps",
        ),
    ]


def _capacity() -> list[Panel]:
    lookups = "qg_gateway_cache_lookups_total"
    return [
        Panel(
            "Cost per minute",
            [(f"{_rate('provider', 'qg_gateway_cost_usd_total', PROV)} * 60", "{{provider}}")],
            unit="currencyUSD",
        ),
        Panel(
            "Tokens per second",
            [(_rate("direction", "qg_gateway_tokens_total", PROV), "{{direction}}")],
        ),
        Panel(
            "Cache hit rate",
            [
                (
                    _rate("", lookups, HIT) + " / " + _rate("", lookups, CACHEABLE),
                    "hit rate",
                )
            ],
            unit="percentunit",
        ),
        Panel(
            "In flight and queued",
            [
                (f"sum({_sel('qg_gateway_inflight_requests')})", "in flight"),
                (f"sum({_sel('qg_gateway_inflight_limit')})", "limit"),
                (f"sum({_sel('qg_gateway_queue_depth')})", "queued"),
            ],
        ),
        Panel(
            "Refused: rate limits, full queue, bad keys",
            [
                (_rate("scope", "qg_gateway_rate_limited_total"), "rate limit {{scope}}"),
                (_rate("reason", "qg_gateway_queue_rejected_total"), "queue {{reason}}"),
                (_rate("reason", "qg_gateway_auth_failures_total"), "key {{reason}}"),
            ],
            unit="reqps",
        ),
        Panel(
            "Telemetry and store",
            [
                (f"sum({_sel('qg_gateway_telemetry_buffered_rows')})", "rows waiting"),
                (_rate("", "qg_gateway_telemetry_dropped_rows_total"), "rows dropped/s"),
                (f"min({_sel('qg_gateway_store_up')})", "store up"),
            ],
        ),
    ]


def _watch() -> list[Panel]:
    return [
        Panel(
            "Alerts firing (not muted)",
            [
                (
                    f"max by (rule, severity) ({_sel('qg_watch_alerts', *FIRING_UNMUTED)})",
                    "{{severity}} {{rule}}",
                )
            ],
        ),
        Panel(
            "Open incidents",
            [
                (
                    f"max by (severity, state) ({_sel('qg_watch_incidents_open')})",
                    "{{severity}} {{state}}",
                )
            ],
        ),
        Panel(
            "Notifications by status",
            [("max by (channel, status) (qg_watch_notifications)", "{{channel}} {{status}}")],
        ),
        Panel(
            "Seconds since the evaluator last ran",
            [("min(qg_watch_last_evaluation_age_seconds)", "age")],
            unit="s",
            kind="stat",
            thresholds=[(0.0, "green"), (60.0, "orange"), (300.0, "red")],
        ),
    ]


def _rows() -> list[tuple[str, list[Panel]]]:
    return [
        ("Service: are clients being answered?", _service()),
        ("Providers", _providers()),
        ("Cost, cache and capacity", _capacity()),
        ("Watch: alerts, incidents, notifications", _watch()),
    ]


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.thresholds:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [
                {"color": color, "value": None if i == 0 else value}
                for i, (value, color) in enumerate(panel.thresholds)
            ],
        }
    out: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 6 if panel.kind == "stat" else 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": _q(expr),
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for i, (expr, legend) in enumerate(panel.queries)
        ],
    }
    if panel.description:
        out["description"] = panel.description
    return out


def _variable(name: str, label: str, metric: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": f"label_values({metric}, {name})", "refId": f"{name}-values"},
        "definition": f"label_values({metric}, {name})",
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
    }


def dashboard(title: str = "quality-gates: gateway and watch") -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (import it, or provision it from a file)."""
    panels: list[dict[str, Any]] = []
    y, panel_id = 0, 1
    for row_title, row_panels in _rows():
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id, y, x, height = panel_id + 1, y + 1, 0, 0
        for panel in row_panels:
            if x + panel.width > WIDTH:
                x, y, height = 0, y + height, 0
            built = _panel(panel, panel_id, x, y)
            panels.append(built)
            height = max(height, built["gridPos"]["h"])
            panel_id, x = panel_id + 1, x + panel.width
        y += height
    return {
        "uid": DASHBOARD_UID,
        "title": title,
        "description": "Generated by `quality-gates dashboards export --format grafana`.",
        "tags": ["quality-gates", "llm", "gateway"],
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                _variable("environment", "Environment", "qg_gateway_requests_total"),
                _variable("provider", "Provider", "qg_gateway_upstream_attempts_total"),
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def queries(model: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard model (panels and variables)."""
    found = [t["expr"] for p in model["panels"] for t in p.get("targets", [])]
    found += [v["definition"] for v in model["templating"]["list"] if "definition" in v]
    return found
