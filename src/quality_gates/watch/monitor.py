"""`monitor`: one model watched live, interval by interval, for a bounded time.

Each interval the monitor takes part in the watch plane's leadership: when no evaluator
holds the lease (no `serve` or `watch` running) it evaluates the rules and remediates itself
(rollbacks only with auto-rollback on); otherwise it reads what the running evaluator
decided. It then computes the model's window metrics against their thresholds (the
`--alert-threshold` ones, else the environment's; the relaxed ones while degraded), lists
the rule states, open incidents and remediations that concern the model, and with
`--security-mode` the security signals: PII in prompts and answers and prompt-injection
attempts (sampled live answers), authentication failures and unusual key usage (requests).
A breached `--alert-threshold` counts as a critical alert, and with auto-rollback on it rolls
the model back to `--previous-model` (else previous-stable) once, with the usual guards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quality_gates.errors import UsageError
from quality_gates.store.db import Connection

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

METRIC_NAMES = {
    "error_rate": "error_rate",
    "errors": "error_rate",
    "latency": "p95_latency",
    "p95": "p95_latency",
    "p95_latency": "p95_latency",
    "p99_latency": "p99_latency",
    "throughput": "throughput",
    "availability": "provider_availability",
    "provider_availability": "provider_availability",
    "quality": "quality_score",
    "quality_score": "quality_score",
    "accuracy": "quality_score",
    "ttft": "ttft_p95",
    "ttft_p95": "ttft_p95",
    "cache_hit_rate": "cache_hit_rate",
    "cost": "cost_per_minute",
    "cost_per_minute": "cost_per_minute",
    "toxicity_rate": "toxicity_rate",
    "pii_rate": "pii_rate",
    "refusal_rate": "refusal_rate",
    "invalid_output_rate": "invalid_output_rate",
}
DEFAULT_METRICS = ("error_rate", "p95_latency", "throughput", "provider_availability")
QUALITY_METRICS = ("quality_score",)
SECURITY_SCORERS = {"prompt_pii": "PII in prompts", "pii": "PII in answers"}
_EXPR = re.compile(r"^\s*([a-z_0-9]+)\s*(>=|<=|>|<)\s*(\S+)\s*$")
UNUSUAL_FACTOR = 3.0
UNUSUAL_MIN_REQUESTS = 20
AUTH_FAILURES_WARN_PER_MIN = 10.0


@dataclass(frozen=True)
class Threshold:
    """`metric op value` in the metric's base unit."""

    metric: str
    op: str
    value: float
    custom: bool = False

    def breached(self, observed: float | None) -> bool:
        """True when `observed` breaks the threshold (no value never does)."""
        if observed is None:
            return False
        return {
            ">": observed > self.value,
            ">=": observed >= self.value,
            "<": observed < self.value,
            "<=": observed <= self.value,
        }[self.op]

    def describe(self) -> str:
        """`error_rate > 2.00%`."""
        return f"{self.metric} {self.op} {format_value(self.metric, self.value)}"


def format_value(metric: str, value: float | None) -> str:
    """A metric value in its unit."""
    if value is None:
        return "-"
    if metric.endswith("_latency") or metric == "ttft_p95":
        return f"{value:.0f} ms"
    if metric == "throughput":
        return f"{value:.2f} req/s"
    if metric == "cost_per_minute":
        return f"${value:.4f}/min"
    return f"{value * 100:.2f}%"


def metric_name(text: str) -> str:
    """The metric a `--metrics` word or `--alert-threshold` names; UsageError lists them."""
    name = METRIC_NAMES.get(text.strip().lower())
    if name is None:
        from quality_gates._suggest import did_you_mean

        raise UsageError(
            f"unknown metric {text!r}{did_you_mean(text, list(METRIC_NAMES))}",
            hint=f"use {', '.join(sorted(set(METRIC_NAMES)))}",
        )
    return name


def parse_alert_threshold(text: str) -> Threshold:
    """`error_rate>2%`, `latency > 1500ms`, `quality<90%`."""
    from quality_gates.config._alerts import parse_threshold

    match = _EXPR.match(text)
    if not match:
        raise UsageError(
            f"--alert-threshold {text!r} is not 'metric>value'",
            hint="e.g. error_rate>2%, latency>1500ms, quality<90%",
        )
    metric = metric_name(match.group(1))
    try:
        value = parse_threshold(metric, match.group(3))
    except ValueError as exc:
        raise UsageError(f"--alert-threshold {text!r}: {exc}") from None
    return Threshold(metric, match.group(2), value, custom=True)


def default_thresholds(
    config: QualityGatesConfig, environment: str, degraded: dict[str, Any] | None
) -> dict[str, Threshold]:
    """The environment's targets as breach conditions (the relaxed ones while degraded)."""
    env = config.environment(environment)
    if env is None:
        return {}
    t = env.thresholds
    p95 = float(degraded["p95_latency_ms"]) if degraded else t.p95_latency_ms
    accuracy = float(degraded["accuracy"]) if degraded else t.accuracy
    availability = float(degraded["availability"]) if degraded else t.availability
    return {
        "error_rate": Threshold("error_rate", ">", t.error_rate),
        "p95_latency": Threshold("p95_latency", ">", p95),
        "provider_availability": Threshold("provider_availability", "<", availability),
        "quality_score": Threshold("quality_score", "<", accuracy),
        "toxicity_rate": Threshold("toxicity_rate", ">", t.toxicity_rate),
    }


@dataclass
class MetricReading:
    """One metric of the model at one interval."""

    metric: str
    value: float | None
    volume: float
    threshold: Threshold | None

    @property
    def breached(self) -> bool:
        """The value breaks its threshold."""
        return self.threshold is not None and self.threshold.breached(self.value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "metric": self.metric,
            "value": self.value,
            "shown": format_value(self.metric, self.value),
            "volume": self.volume,
            "threshold": self.threshold.describe() if self.threshold else None,
            "breached": self.breached,
        }


@dataclass
class Tick:
    """What one interval showed."""

    at: float
    metrics: list[MetricReading]
    alerts: list[dict[str, Any]]
    incidents: list[dict[str, Any]]
    remediations: list[dict[str, Any]]
    security: list[dict[str, Any]] = field(default_factory=list)
    leader: bool = False


def model_metrics(
    conn: Connection,
    environment: str,
    model_id: str,
    metrics: list[str],
    thresholds: dict[str, Threshold],
    window: float,
    now: float,
) -> list[MetricReading]:
    """The model's window metrics with their thresholds."""
    from quality_gates.signals._metrics import MetricEngine

    engine = MetricEngine(conn, now, environment=environment)
    readings = []
    for metric in metrics:
        samples = engine.samples(metric, window, ["environment", "model_id"])
        mine = [s for s in samples if dict(s.labels).get("model_id") == model_id]
        value = mine[0].value if mine else None
        volume = mine[0].volume if mine else 0.0
        readings.append(MetricReading(metric, value, volume, thresholds.get(metric)))
    return readings


def concerning(
    conn: Connection, config: QualityGatesConfig, environment: str, model_id: str
) -> list[dict[str, Any]]:
    """Pending and firing alerts of the environment that concern the model: its own, its
    provider's and the environment-wide ones."""
    import json

    model = config.model(model_id)
    provider = model.provider if model else None
    out = []
    for row in conn.execute(
        "SELECT * FROM alert_states WHERE environment = :env AND state IN ('pending', 'firing')",
        {"env": environment},
    ):
        labels = json.loads(row["labels"])
        if labels.get("model_id") not in (None, model_id):
            continue
        if labels.get("provider") not in (None, provider):
            continue
        out.append(
            {
                "rule": row["rule"],
                "state": row["state"],
                "severity": row["severity"],
                "summary": row["summary"],
                "incident": row["incident_id"],
                "muted": row["silenced_by"] is not None or row["inhibited_by"] is not None,
            }
        )
    return out


def fired_critical(
    conn: Connection, config: QualityGatesConfig, environment: str, model_id: str, since: float
) -> list[str]:
    """Critical alerts concerning the model that fired since `since` (rule: summary)."""
    import json

    model = config.model(model_id)
    provider = model.provider if model else None
    out: dict[str, str] = {}
    for row in conn.execute(
        "SELECT e.rule, e.labels, s.summary FROM alert_events e LEFT JOIN alert_states s ON "
        "s.fingerprint = e.fingerprint WHERE e.environment = :env AND e.ts >= :since AND "
        "e.to_state = 'firing' AND e.severity = 'critical' ORDER BY e.ts",
        {"env": environment, "since": since},
    ):
        labels = json.loads(row["labels"])
        if labels.get("model_id") not in (None, model_id):
            continue
        if labels.get("provider") not in (None, provider):
            continue
        out.setdefault(str(row["rule"]), str(row["summary"] or row["rule"]))
    return [f"{rule}: {summary}" for rule, summary in out.items()]


def security_signals(
    conn: Connection, environment: str, window: float, now: float
) -> list[dict[str, Any]]:
    """PII and injection rates of sampled traffic, authentication failures, unusual keys."""
    since = now - window
    out: list[dict[str, Any]] = []
    for scorer, label in (*SECURITY_SCORERS.items(), ("injection", "prompt-injection attempts")):
        row = conn.one(
            "SELECT COUNT(*) AS n, SUM(1 - passed) AS flagged FROM quality_samples WHERE "
            "environment = :env AND scorer = :scorer AND ts >= :since",
            {"env": environment, "scorer": scorer, "since": since},
        )
        n = int(row["n"] or 0) if row else 0
        flagged = int(row["flagged"] or 0) if row else 0
        out.append(
            {
                "signal": label,
                "value": f"{flagged} of {n} sampled" if n else "no samples",
                "warn": flagged > 0,
            }
        )
    row = conn.one(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT key_name) AS keys FROM requests WHERE "
        "environment = :env AND error_class = 'auth_failed' AND ts >= :since",
        {"env": environment, "since": since},
    )
    failures = int(row["n"] or 0) if row else 0
    per_minute = failures / (window / 60.0)
    out.append(
        {
            "signal": "authentication failures",
            "value": f"{failures} ({per_minute:.1f}/min, {int(row['keys'] or 0) if row else 0} "
            "distinct bad keys)",
            "warn": per_minute >= AUTH_FAILURES_WARN_PER_MIN,
        }
    )
    out.append(unusual_keys(conn, environment, window, now))
    return out


def unusual_keys(conn: Connection, environment: str, window: float, now: float) -> dict[str, Any]:
    """Keys whose requests in the window exceed UNUSUAL_FACTOR times their hourly rate, or
    that were not used in the day before."""
    rows = conn.execute(
        "SELECT key_name, SUM(CASE WHEN ts >= :recent THEN 1 ELSE 0 END) AS recent, "
        "SUM(CASE WHEN ts < :recent AND ts >= :hour THEN 1 ELSE 0 END) AS hour, "
        "SUM(CASE WHEN ts < :recent THEN 1 ELSE 0 END) AS before FROM requests WHERE "
        "environment = :env AND ts >= :day AND key_name IS NOT NULL AND "
        "(error_class IS NULL OR error_class <> 'auth_failed') GROUP BY key_name",
        {
            "env": environment,
            "recent": now - window,
            "hour": now - window - 3600.0,
            "day": now - 86400.0,
        },
    )
    flagged = []
    for row in rows:
        recent, hour, before = int(row["recent"] or 0), int(row["hour"] or 0), int(row["before"])
        expected = hour * window / 3600.0
        if recent >= UNUSUAL_MIN_REQUESTS and (
            before == 0 or recent > UNUSUAL_FACTOR * max(expected, 1.0)
        ):
            why = "new key" if before == 0 else f"{recent} vs ~{expected:.0f} expected"
            flagged.append(f"{row['key_name']} ({why})")
    return {
        "signal": "unusual key usage",
        "value": ", ".join(flagged) if flagged else "none",
        "warn": bool(flagged),
    }


def monitor_rollback(
    conn: Connection,
    *,
    environment: str,
    model_id: str,
    target: str,
    reason: str,
    now: float,
) -> str:
    """Roll the model back for a breached `--alert-threshold`; recorded like an automatic
    remediation (row, audit entry, the open incident's timeline). Returns the summary."""
    from quality_gates import incidents
    from quality_gates.registry import Actor, rollback
    from quality_gates.remediation import _remedy_store as store
    from quality_gates.store import audit

    with conn.write():
        incident = incidents.current_incident(conn, environment)
        result = rollback(
            conn,
            environment=environment,
            model_ref=model_id,
            previous_ref=target,
            reason=f"monitor: {reason}",
            actor=Actor("monitor", "auto"),
            incident_id=incident,
        )
        summary = f"rolled back {environment} from {model_id} to {result.to_model} ({reason})"
        remedy_id = store.insert(
            conn,
            environment=environment,
            action="rollback",
            target=model_id,
            state="done",
            summary=summary,
            now=now,
            incident_id=incident,
            rule="monitor --alert-threshold",
            details={"from": model_id, "to": result.to_model, "reason": reason},
            operation_id=result.operation_id,
            finished=True,
        )
        incidents.record_event(
            conn,
            "rollback",
            summary,
            incident_id=incident,
            environment=environment,
            actor="monitor",
            details={"remediation": remedy_id},
            public=True,
            now=now,
        )
        audit.append(
            conn,
            actor="monitor",
            action="remediation.rollback",
            target=f"{environment}/current",
            details={"from": model_id, "to": result.to_model, "reason": reason},
        )
    return summary


def recent_remediations(conn: Connection, environment: str, since: float) -> list[dict[str, Any]]:
    """Remediations of the environment since `since`, oldest first."""
    from quality_gates.remediation import _remedy_store as store

    found = store.find(conn, environment=environment, since=since, limit=50)
    return [
        {
            "action": r.action,
            "target": r.target,
            "state": r.state,
            "summary": r.summary,
            "at": r.updated_at,
        }
        for r in reversed(found)
    ]


def open_incidents(conn: Connection, environment: str, now: float) -> list[dict[str, Any]]:
    """Open incidents of the environment with their age."""
    from quality_gates.incidents import list_incidents

    return [
        {
            "id": r["id"],
            "severity": r["severity"],
            "state": r["state"],
            "title": r["title"],
            "age_s": round(now - float(r["opened_at"]), 1),
        }
        for r in list_incidents(conn, environment=environment)
    ]
