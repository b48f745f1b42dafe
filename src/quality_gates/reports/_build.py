"""Assemble a report document (plain data, the JSON form) from the store.

A document is `{schema_version, type, title, generated_at, period, filters, sections}`; each
section is `{id, title, empty, note, data}`. The Markdown, HTML and JSON renderings all come
from this one document, so they never disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quality_gates.errors import UsageError
from quality_gates.notify._channels import iso
from quality_gates.reports import _events, _failover, _telemetry
from quality_gates.reports._request import ReportRequest
from quality_gates.reports._telemetry import Scope
from quality_gates.signals._windows import Aggregate, not_2xx
from quality_gates.store.db import Connection
from quality_gates.store.registry import history, list_aliases

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig, Thresholds

SCHEMA_VERSION = 1
TITLES = {
    "summary": "Summary report",
    "detailed": "Detailed report",
    "comparison": "Model comparison",
    "incident": "Incident report",
    "quota-usage": "Quota usage report",
    "performance-impact": "Performance impact report",
    "failover-effectiveness": "Failover effectiveness report",
}
SECTIONS = {
    "summary": ("overview", "compliance", "incidents", "remediations"),
    "detailed": (
        "overview",
        "compliance",
        "providers",
        "latency",
        "error_budget",
        "incidents",
        "alerts",
        "remediations",
        "alias_changes",
        "gates",
        "cost",
        "quota",
        "recovery",
        "routine_checks",
    ),
    "comparison": ("comparison",),
    "incident": ("incident",),
    "quota-usage": ("quota", "cost"),
    "performance-impact": ("impact",),
    "failover-effectiveness": ("recovery",),
}
SECTION_TITLES = {
    "overview": "Overview",
    "compliance": "Compliance with the runbook's key metrics",
    "providers": "Availability per provider",
    "latency": "Latency percentiles over time",
    "error_budget": "Error budget (availability SLO)",
    "incidents": "Incidents",
    "alerts": "Alerts",
    "remediations": "Rollbacks, failovers and failbacks",
    "alias_changes": "Alias changes",
    "gates": "Gate runs",
    "cost": "Cost and tokens",
    "quota": "Quota use",
    "recovery": "Drills and recovery against the runbook's targets",
    "routine_checks": "Routine checks",
    "comparison": "Models side by side",
    "impact": "Before and after the change",
    "incident": "Incident",
}
COMPARED = (
    ("requests", "Requests", "count"),
    ("error_rate", "Error rate", "ratio"),
    ("p50_ms", "P50 latency", "ms"),
    ("p95_ms", "P95 latency", "ms"),
    ("p99_ms", "P99 latency", "ms"),
    ("availability", "Provider availability", "ratio"),
    ("cache_hit_rate", "Cache hit rate", "ratio"),
    ("cost_per_request", "Cost per request", "usd"),
    ("tokens_per_request", "Tokens per request", "count"),
    ("accuracy", "Accuracy (probe and sampled scores)", "ratio"),
    ("satisfaction", "User satisfaction (1-5)", "score"),
)


class _Context:
    """What the section builders share: the store, config, request and lazily read totals."""

    def __init__(
        self, conn: Connection, config: QualityGatesConfig, request: ReportRequest, now: float
    ) -> None:
        self.conn, self.config, self.request, self.now = conn, config, request, now
        self.environment = _environment(config, request.environment)
        env = config.environment(self.environment) if self.environment else None
        from quality_gates.config import Thresholds

        self.thresholds: Thresholds = env.thresholds if env is not None else Thresholds()
        self.scope = Scope(request.start, request.end, now, self.environment, request.model_id)
        self._collected: _telemetry.Collected | None = None
        self._compliance: list[dict[str, Any]] | None = None
        self._incidents: list[dict[str, Any]] | None = None

    def collected(self) -> _telemetry.Collected:
        """The period's telemetry, read once."""
        if self._collected is None:
            self._collected = _telemetry.collect(self.conn, self.scope)
        return self._collected

    def totals(self) -> tuple[Aggregate, Aggregate]:
        """Client requests and upstream attempts over the period."""
        return self.collected().requests, self.collected().attempts

    def series(self) -> dict[str, Any]:
        """Points per bucket for the charts."""
        collected = self.collected()
        return {"bucket_seconds": collected.bucket_seconds, "points": collected.points}

    def compliance(self) -> list[dict[str, Any]]:
        """The key metrics against the environment's thresholds."""
        if self._compliance is None:
            requests, attempts = self.totals()
            self._compliance = _telemetry.compliance(
                self.conn, self.thresholds, self.scope, requests, attempts
            )
        return self._compliance

    def incidents(self) -> list[dict[str, Any]]:
        """Incidents opened in the period or still open."""
        if self._incidents is None:
            r = self.request
            self._incidents = _events.incident_rows(
                self.conn, self.config, r.start, r.end, self.environment
            )
        return self._incidents


def _environment(config: QualityGatesConfig, name: str | None) -> str | None:
    if name is not None:
        if config.environments and name not in config.environments:
            from quality_gates._suggest import did_you_mean

            known = list(config.environments)
            raise UsageError(
                f"unknown environment {name!r}{did_you_mean(name, known)}",
                hint=f"configured: {', '.join(known)}",
            )
        return name
    if "production" in config.environments:
        return "production"
    return next(iter(config.environments), None)


def _section(sid: str, data: Any, empty: bool, note: str | None = None) -> dict[str, Any]:
    return {"id": sid, "title": SECTION_TITLES[sid], "empty": empty, "note": note, "data": data}


def _overview(ctx: _Context) -> dict[str, Any]:
    requests, attempts = ctx.totals()
    counts = dict.fromkeys((_telemetry.PASS, _telemetry.FAIL, _telemetry.NO_DATA), 0)
    for row in ctx.compliance():
        counts[row["status"]] += 1
    data = {
        "requests": round(requests.count),
        "failed_requests": round(requests.errors),
        "error_rate": requests.errors / requests.count if requests.count else None,
        "not_2xx": not_2xx(requests)[0],
        "not_2xx_classes": not_2xx(requests)[1],
        "upstream_attempts": round(attempts.count),
        "failovers": round(requests.failovers),
        "cost": round(requests.cost, 6),
        "input_tokens": round(requests.input_tokens),
        "output_tokens": round(requests.output_tokens),
        "incidents": len(ctx.incidents()),
        "compliance": counts,
    }
    return _section("overview", data, requests.count == 0 and attempts.count == 0)


def _compliance(ctx: _Context) -> dict[str, Any]:
    rows = ctx.compliance()
    empty = all(r["status"] == _telemetry.NO_DATA for r in rows)
    note = f"Thresholds of the {ctx.environment or 'default'} environment's config."
    return _section("compliance", {"environment": ctx.environment, "metrics": rows}, empty, note)


def _providers(ctx: _Context) -> dict[str, Any]:
    rows = _telemetry.providers(ctx.collected().providers, ctx.thresholds.availability)
    return _section("providers", {"providers": rows}, not rows)


def _latency(ctx: _Context) -> dict[str, Any]:
    series = ctx.series()
    data = {**series, "target_ms": ctx.thresholds.p95_latency_ms}
    return _section("latency", data, not series["points"])


def _error_budget(ctx: _Context) -> dict[str, Any]:
    requests, _ = ctx.totals()
    data = _telemetry.error_budget(ctx.config, ctx.thresholds, requests)
    data["points"] = [
        {"t": p["t"], "requests": p["requests"], "failed": p["availability_errors"]}
        for p in ctx.series()["points"]
    ]
    return _section("error_budget", data, requests.count == 0)


def _incidents(ctx: _Context) -> dict[str, Any]:
    items = ctx.incidents()
    data = {"by_severity": _events.by_severity(items), "items": items}
    return _section("incidents", data, not items)


def _alerts(ctx: _Context) -> dict[str, Any]:
    r = ctx.request
    data = _events.alerts(ctx.conn, r.start, r.end, ctx.environment)
    return _section("alerts", data, data["transitions"] == 0)


def _remediations(ctx: _Context) -> dict[str, Any]:
    r = ctx.request
    items = _events.remediations(ctx.conn, r.start, r.end, ctx.environment)
    return _section("remediations", {"items": items}, not items)


def _alias_changes(ctx: _Context) -> dict[str, Any]:
    r = ctx.request
    items = _events.alias_changes(ctx.conn, r.start, r.end, ctx.environment)
    return _section("alias_changes", {"items": items}, not items)


def _gates(ctx: _Context) -> dict[str, Any]:
    r = ctx.request
    data = _events.gates(ctx.conn, r.start, r.end, ctx.environment, r.model_id)
    return _section("gates", data, not data["runs"])


def _cost(ctx: _Context) -> dict[str, Any]:
    requests, _ = ctx.totals()
    points = [
        {k: p[k] for k in ("t", "seconds", "requests", "cost", "input_tokens", "output_tokens")}
        for p in ctx.series()["points"]
    ]
    data = {
        "bucket_seconds": ctx.series()["bucket_seconds"],
        "cost": round(requests.cost, 6),
        "input_tokens": round(requests.input_tokens),
        "output_tokens": round(requests.output_tokens),
        "cost_per_request": requests.cost / requests.count if requests.count else None,
        "points": points,
    }
    return _section("cost", data, requests.count == 0)


def _quota(ctx: _Context) -> dict[str, Any]:
    rows = _telemetry.quota_usage(ctx.conn, ctx.config, ctx.scope)
    empty = all(r["status"] == _telemetry.NO_DATA for r in rows)
    note = "Peaks are the busiest minute: upstream attempts against rpm, tokens against tpm."
    return _section("quota", {"providers": rows}, empty, note)


def _recovery(ctx: _Context) -> dict[str, Any]:
    r = ctx.request
    data = {
        "targets": [{"name": n, "target": t, "unit": u} for n, (t, u) in _failover.TARGETS.items()],
        "drills": _failover.drills(ctx.conn, r.start, r.end, ctx.environment),
        "failovers": _failover.real_failovers(ctx.conn, r.start, r.end, ctx.environment, ctx.now),
        "rollbacks": _failover.real_rollbacks(ctx.conn, r.start, r.end, ctx.environment),
    }
    empty = not (data["drills"] or data["failovers"] or data["rollbacks"])
    note = (
        "Detection of a real failover is estimated from the provider's first failed upstream "
        "attempt in the 5 minutes before the alert."
    )
    return _section("recovery", data, empty, note)


def _routine_checks(ctx: _Context) -> dict[str, Any]:
    data = _events.routine_checks(ctx.conn, ctx.request.start, ctx.request.end)
    return _section("routine_checks", data, not data["jobs"])


def _alias_model(ctx: _Context, alias: str) -> str | None:
    for row in list_aliases(ctx.conn, ctx.environment):
        if row.name == alias:
            return row.model_id
    return None


def _change(a: float | None, b: float | None) -> float | None:
    """Relative change from b to a."""
    if a is None or b is None or b == 0:
        return None
    return (a - b) / abs(b)


def _rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "metric": k,
            "name": name,
            "unit": unit,
            "a": a.get(k),
            "b": b.get(k),
            "change": _change(a.get(k), b.get(k)),
        }
        for k, name, unit in COMPARED
    ]


def _comparison(ctx: _Context) -> dict[str, Any]:
    r = ctx.request
    a = r.model_id or _alias_model(ctx, "current")
    b = r.baseline_model or _alias_model(ctx, "previous-stable")
    if not a or not b:
        raise UsageError(
            "a comparison needs two models",
            hint="give --model-id A --baseline-model B, or set the environment's current and "
            "previous-stable aliases",
        )
    scope_a = Scope(r.start, r.end, ctx.now, ctx.environment, a)
    scope_b = Scope(r.start, r.end, ctx.now, ctx.environment, b)
    fig_a = _telemetry.model_figures(ctx.conn, scope_a)
    fig_b = _telemetry.model_figures(ctx.conn, scope_b)
    gates_a = _events.gates(ctx.conn, r.start, r.end, ctx.environment, a)["runs"]
    gates_b = _events.gates(ctx.conn, r.start, r.end, ctx.environment, b)["runs"]
    data = {
        "model_a": {
            "id": a,
            "source": "--model-id" if r.model_id else "alias current",
            "last_gate": gates_a[0] if gates_a else None,
        },
        "model_b": {
            "id": b,
            "source": "--baseline-model" if r.baseline_model else "alias previous-stable",
            "last_gate": gates_b[0] if gates_b else None,
        },
        "rows": _rows(fig_a, fig_b),
    }
    empty = fig_a["requests"] == 0 and fig_b["requests"] == 0
    return _section("comparison", data, empty)


def _impact(ctx: _Context) -> dict[str, Any]:
    r = ctx.request
    at, change = r.at, None
    if at is None:
        moves = [
            m
            for m in history(ctx.conn, environment=ctx.environment, alias="current", limit=50)
            if m.ts <= r.end
        ]
        if moves:
            at = moves[0].ts
            change = {
                "time": iso(at),
                "from_model": moves[0].from_model,
                "to_model": moves[0].to_model,
                "operation": moves[0].operation,
                "actor": moves[0].actor,
                "reason": moves[0].reason,
            }
    if at is None:
        note = "No change of the current alias is recorded; give --at TIME to compare around it."
        return _section("impact", {"at": None, "change": None, "rows": []}, True, note)
    width = max(min(r.end - at, r.seconds), 0.0)
    before = Scope(at - width, at, ctx.now, ctx.environment, r.model_id)
    after = Scope(at, at + width, ctx.now, ctx.environment, r.model_id)
    fig_after = _telemetry.model_figures(ctx.conn, after)
    fig_before = _telemetry.model_figures(ctx.conn, before)
    data = {
        "at": iso(at),
        "change": change,
        "window_seconds": width,
        "before": [iso(before.start), iso(before.end)],
        "after": [iso(after.start), iso(after.end)],
        "rows": _rows(fig_after, fig_before),
    }
    return _section("impact", data, fig_after["requests"] == 0 and fig_before["requests"] == 0)


def _incident(ctx: _Context) -> dict[str, Any]:
    from quality_gates.incidents.postmortem import review

    incident_id = ctx.request.incident_id
    if incident_id is None:
        raise UsageError("--type incident needs --incident N")
    row = ctx.conn.one("SELECT id FROM incidents WHERE id = :id", {"id": incident_id})
    if row is None:
        known = [
            str(r["id"])
            for r in ctx.conn.execute("SELECT id FROM incidents ORDER BY id DESC LIMIT 20")
        ]
        raise UsageError(
            f"there is no incident #{incident_id}",
            hint=f"incidents: {', '.join(known)}" if known else "the store has no incidents",
        )
    data = review(ctx.conn, incident_id, now=ctx.now)
    facts = next(
        (
            i
            for i in _events.incident_rows(ctx.conn, ctx.config, 0.0, ctx.now, None)
            if i["id"] == incident_id
        ),
        None,
    )
    data["response"] = facts
    data["alerts"] = _events.incident_alerts(ctx.conn, incident_id)
    data["remediations"] = _events.remediations(
        ctx.conn, 0.0, ctx.now, None, incident_id=incident_id
    )
    data["postmortem_path"] = _events.postmortem_path(ctx.conn, incident_id)
    return _section("incident", data, False)


BUILDERS = {
    "overview": _overview,
    "compliance": _compliance,
    "providers": _providers,
    "latency": _latency,
    "error_budget": _error_budget,
    "incidents": _incidents,
    "alerts": _alerts,
    "remediations": _remediations,
    "alias_changes": _alias_changes,
    "gates": _gates,
    "cost": _cost,
    "quota": _quota,
    "recovery": _recovery,
    "routine_checks": _routine_checks,
    "comparison": _comparison,
    "impact": _impact,
    "incident": _incident,
}


def build_report(
    conn: Connection, config: QualityGatesConfig, request: ReportRequest, *, now: float
) -> dict[str, Any]:
    """The report as data: every section of its type, each saying when it has no data."""
    ctx = _Context(conn, config, request, now)
    sections = [BUILDERS[sid](ctx) for sid in SECTIONS[request.type]]
    return {
        "schema_version": SCHEMA_VERSION,
        "type": request.type,
        "title": TITLES[request.type],
        "project": config.project,
        "generated_at": iso(now),
        "period": {
            "name": request.period,
            "start": iso(request.start),
            "end": iso(request.end),
            "seconds": request.seconds,
        },
        "filters": {
            "environment": ctx.environment,
            "model_id": request.model_id,
            "baseline_model": request.baseline_model,
            "incident_id": request.incident_id,
            "at": iso(request.at),
        },
        "sections": sections,
    }
