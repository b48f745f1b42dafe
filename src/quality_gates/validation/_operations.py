"""Checks `validate` runs on request: after a failover, of a running canary, and of the live
performance against the environment's thresholds (all from the store's telemetry)."""

from __future__ import annotations

import time
from typing import Any

from quality_gates.validation._framework import CheckResult, ValidationContext, check

RECENT_S = 900.0
PERFORMANCE_WINDOW_S = 300.0


def _attempt_rate(conn: Any, environment: str, provider: str, since: float) -> tuple[int, int]:
    row = conn.one(
        "SELECT COUNT(*) AS n, SUM(CASE WHEN status = 'error' AND (error_class IS NULL OR "
        "error_class NOT IN ('bad_request', 'content_filtered')) THEN 1 ELSE 0 END) AS e "
        "FROM attempts WHERE environment = :env AND provider = :p AND ts >= :since",
        {"env": environment, "p": provider, "since": since},
    )
    return (int(row["n"] or 0), int(row["e"] or 0)) if row else (0, 0)


@check("post-failover", "after a failover: the new route is healthy", order=80)
def post_failover(ctx: ValidationContext) -> list[CheckResult]:
    """With --post-failover: the last traffic move away from a provider, the health of where
    its traffic went (probe, error rate since the move), and what is left to fail back."""
    if not ctx.options.get("post_failover"):
        return []
    from quality_gates.gateway.failover import current_weights, describe_weights

    conn = ctx.conn()
    env = ctx.environment
    row = conn.one(
        "SELECT * FROM traffic_history WHERE environment = :env AND (mode LIKE 'failover:%') "
        "ORDER BY id DESC LIMIT 1",
        {"env": env},
    )
    if row is None:
        return [CheckResult("post-failover", "WARN", f"no failover is recorded in {env}")]
    import json

    weights = current_weights(conn, ctx.config, env)
    moved_to = [p for p, w in weights.items() if w > 0]
    results = []
    for provider in moved_to:
        total, errors = _attempt_rate(conn, env, provider, float(row["ts"]))
        probe = ctx.probes.get(provider)
        limit = ctx.config.environment(env).thresholds.error_rate  # type: ignore[union-attr]
        rate = errors / total if total else 0.0
        healthy = (probe is None or probe.healthy) and rate <= limit
        results.append(
            CheckResult(
                f"post-failover:{provider}",
                "PASS" if healthy else "FAIL",
                f"{provider}: {total} calls since the failover, {rate:.1%} errors"
                + ("" if probe is None else f", probe {'ok' if probe.healthy else 'failed'}"),
                {"calls": total, "errors": errors, "limit": limit},
            )
        )
    before = json.loads(row["previous"])
    away = sorted(p for p, w in before.items() if w > weights.get(p, 0.0))
    results.append(
        CheckResult(
            "post-failover",
            "PASS" if results and all(r.status == "PASS" for r in results) else "WARN",
            f"weights now {describe_weights(weights)}"
            + (f"; to fail back: {', '.join(away)}" if away else "; nothing left to fail back"),
            {"weights": weights, "before": before, "failed_over": away},
        )
    )
    return results


@check("canary-health", "a running canary is no worse than its baseline", order=82)
def canary_health(ctx: ValidationContext) -> list[CheckResult]:
    """With --canary-health: the canary's share, and its error rate and P95 against the
    baseline's over the last 15 minutes."""
    if not ctx.options.get("canary_health"):
        return []
    from quality_gates.store import settings

    conn = ctx.conn()
    canary = settings.get(conn, ctx.environment, "canary")
    if not isinstance(canary, dict) or not float(canary.get("percent") or 0):
        return [CheckResult("canary-health", "PASS", "no canary is running")]
    since = time.time() - RECENT_S
    stats = {}
    for flag in (0, 1):
        rows = conn.execute(
            "SELECT latency_ms, status FROM requests WHERE environment = :env AND canary = :c "
            "AND ts >= :since AND cache = 'miss'",
            {"env": ctx.environment, "c": flag, "since": since},
        )
        latencies = sorted(float(r["latency_ms"]) for r in rows)
        errors = sum(r["status"] == "error" for r in rows)
        p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else None
        stats[flag] = (len(rows), errors / len(rows) if rows else None, p95)
    (n_base, err_base, p95_base), (n_canary, err_canary, p95_canary) = stats[0], stats[1]
    evidence = {
        "model": canary.get("model"),
        "percent": canary.get("percent"),
        "canary": {"requests": n_canary, "error_rate": err_canary, "p95_ms": p95_canary},
        "baseline": {"requests": n_base, "error_rate": err_base, "p95_ms": p95_base},
    }
    if n_canary < 20:
        return [
            CheckResult(
                "canary-health",
                "WARN",
                f"canary {canary.get('model')} at {canary.get('percent')}% has only {n_canary} "
                "requests in 15 minutes",
                evidence,
            )
        ]
    worse = []
    if err_canary is not None and err_base is not None and err_canary > err_base + 0.02:
        worse.append(f"errors {err_canary:.1%} vs {err_base:.1%}")
    if p95_canary and p95_base and p95_canary > p95_base * 1.5:
        worse.append(f"P95 {p95_canary:.0f} ms vs {p95_base:.0f} ms")
    if worse:
        return [
            CheckResult(
                "canary-health",
                "FAIL",
                f"canary {canary.get('model')} is worse: {'; '.join(worse)} "
                "(`quality-gates canary --rollback`)",
                evidence,
            )
        ]
    return [
        CheckResult(
            "canary-health",
            "PASS",
            f"canary {canary.get('model')} at {canary.get('percent')}%: {n_canary} requests, "
            "no worse than the baseline",
            evidence,
        )
    ]


@check("performance", "the last 5 minutes meet the environment's thresholds", order=84)
def performance(ctx: ValidationContext) -> list[CheckResult]:
    """With --performance-check: P95, error rate and throughput from the roll-ups."""
    if not ctx.options.get("performance_check"):
        return []
    from quality_gates.watch._metrics import MetricEngine

    env = ctx.config.environment(ctx.environment)
    if env is None:
        return []
    engine = MetricEngine(ctx.conn(), time.time(), environment=ctx.environment)
    values = {}
    for metric in ("p95_latency", "error_rate", "throughput"):
        samples = engine.samples(metric, PERFORMANCE_WINDOW_S, ["environment"])
        values[metric] = samples[0].value if samples else None
    if values["throughput"] in (None, 0.0):
        return [CheckResult("performance", "WARN", "no traffic in the last 5 minutes", values)]
    t = env.thresholds
    results = []
    for metric, value, limit, ok, shown in (
        (
            "p95_latency",
            values["p95_latency"],
            t.p95_latency_ms,
            (values["p95_latency"] or 0) < t.p95_latency_ms,
            f"P95 {values['p95_latency'] or 0:.0f} ms (< {t.p95_latency_ms:.0f} ms)",
        ),
        (
            "error_rate",
            values["error_rate"],
            t.error_rate,
            (values["error_rate"] or 0) < t.error_rate,
            f"errors {(values['error_rate'] or 0):.2%} (< {t.error_rate:.0%})",
        ),
        (
            "throughput",
            values["throughput"],
            t.throughput_rps,
            (values["throughput"] or 0) > t.throughput_rps,
            f"{values['throughput'] or 0:.1f} req/s (> {t.throughput_rps:g})",
        ),
    ):
        status = "PASS" if ok else ("WARN" if metric == "throughput" else "FAIL")
        results.append(
            CheckResult(
                f"performance:{metric}",
                status,  # type: ignore[arg-type]
                shown,
                {"value": value, "limit": limit},
            )
        )
    return results
