"""Checks `validate` runs on request: after a failover, of a running canary, and of the live
performance against the environment's thresholds (all from the store's telemetry)."""

from __future__ import annotations

import time
from typing import Any

from quality_gates.validation._framework import CheckResult, ValidationContext, check

RECENT_S = 900.0
PERFORMANCE_WINDOW_S = 300.0


@check("post-failover", "after a failover: the new route is healthy", order=80)
def post_failover(ctx: ValidationContext) -> list[CheckResult]:
    """With --post-failover: the last traffic move away from a provider, the health of where
    its traffic went (probe, error rate since the move), and what is left to fail back."""
    if not ctx.options.get("post_failover"):
        return []
    from quality_gates.gateway._routing import describe_weights
    from quality_gates.gateway.failover import current_weights, provider_attempts

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
        total, errors = provider_attempts(conn, env, provider, float(row["ts"]))
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
    """With --canary-health: the canary's share, and its own failure rate and P95 (from its
    upstream attempts, so errors the gateway retried or failed over count) against the
    baseline's over the last 15 minutes."""
    if not ctx.options.get("canary_health"):
        return []
    from quality_gates.gates.canary_samples import Side, split
    from quality_gates.store import settings
    from quality_gates.store.gate_runs import alias_requests
    from quality_gates.store.registry import get_alias

    conn = ctx.conn()
    canary = settings.get(conn, ctx.environment, "canary")
    if not isinstance(canary, dict) or not float(canary.get("percent") or 0):
        return [CheckResult("canary-health", "PASS", "no canary is running")]
    current = get_alias(conn, ctx.environment, "current")
    baseline = canary.get("baseline") or (current.model_id if current else "")
    now = time.time()
    rows = alias_requests(conn, ctx.environment, "current", now - RECENT_S, now + 1)
    sides = split(rows, candidate=str(canary.get("model")), baseline=str(baseline))

    def figures(side: Side) -> dict[str, Any]:
        latencies = sorted(side.latency_ms)
        return {
            "model": side.model,
            "requests": side.judged,
            "failure_rate": side.failures / side.judged if side.judged else None,
            "failure_classes": dict(side.failure_classes),
            "client_error_rate": side.client_errors / side.judged if side.judged else None,
            "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] if latencies else None,
        }

    can, base = figures(sides[0]), figures(sides[1])
    evidence = {
        "model": canary.get("model"),
        "percent": canary.get("percent"),
        "canary": can,
        "baseline": base,
    }
    if can["requests"] < 20:
        return [
            CheckResult(
                "canary-health",
                "WARN",
                f"canary {canary.get('model')} at {canary.get('percent')}% has only "
                f"{can['requests']} requests that reached the models in 15 minutes",
                evidence,
            )
        ]
    worse = []
    err_c, err_b = can["failure_rate"], base["failure_rate"]
    if err_c is not None and err_b is not None and err_c > err_b + 0.02:
        worse.append(f"its own failures {err_c:.1%} vs {err_b:.1%}")
    p95_c, p95_b = can["p95_ms"], base["p95_ms"]
    if p95_c and p95_b and p95_c > p95_b * 1.5:
        worse.append(f"P95 {p95_c:.0f} ms vs {p95_b:.0f} ms")
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
            f"canary {canary.get('model')} at {canary.get('percent')}%: {can['requests']} "
            "requests, no worse than the baseline",
            evidence,
        )
    ]


@check("performance", "the last 5 minutes meet the environment's thresholds", order=84)
def performance(ctx: ValidationContext) -> list[CheckResult]:
    """With --performance-check: P95, error rate and throughput from the roll-ups."""
    if not ctx.options.get("performance_check"):
        return []
    from quality_gates.signals._metrics import MetricEngine

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
