"""The canary gate's report: its verdict, the share it measured beside the share it set, each
metric with where its values come from, and what the clients saw beside."""

from __future__ import annotations

from typing import Any

from quality_gates.gates.canary_analysis import FROM_ATTEMPTS, Look, MetricResult
from quality_gates.gates.canary_traffic import SamplePlan, ShareCheck
from quality_gates.gates.verdict import GateVerdict

SOURCES = (
    "error_rate, latency_ms and ttft_ms come from the models' own upstream attempts (errors "
    "before any retry or failover; a request answered by another model is a failure); tokens, "
    "cost and refusals from the answers each model gave"
)


def reasons(final: Look, share: ShareCheck, min_requests: int) -> list[str]:
    """What the verdict rests on, when it is not a plain APPROVE."""
    out = [
        f"{m.metric}: canary {m.canary:.4g} vs baseline {m.baseline:.4g} "
        f"(effect {m.effect:+.2%}, p {m.p_value:.2g}, minimum {m.min_effect:.0%})"
        for m in final.failures
        if m.canary is not None and m.baseline is not None and m.effect is not None
    ]
    if not final.enough_data:
        out.append(
            f"too little traffic: {final.sides['canary']['judged']} canary and "
            f"{final.sides['baseline']['judged']} baseline requests reached the models, "
            f"{min_requests} needed per side"
        )
    if share.off:
        out.append(f"traffic share {share.describe()}")
    return out


def summary(
    verdict: GateVerdict,
    why: list[str],
    action: str,
    *,
    environment: str,
    candidate: str,
    baseline: str,
    sample: SamplePlan,
    share: ShareCheck,
    looks: list[Look],
    planned_looks: int,
    run_id: str,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The stored and printed summary of a canary run."""
    final = looks[-1]
    measured = "none measured" if share.measured is None else f"measured {share.measured:.1f}%"
    return {
        "kind": "canary",
        "verdict": verdict.value,
        "headline": f"{verdict.value}: {candidate} vs {baseline} at {sample.percent:g}% "
        f"({measured}) over {len(looks)} look(s); {action}",
        "reasons": why,
        "action": action,
        "model": candidate,
        "baseline": baseline,
        "environment": environment,
        "percent": sample.percent,
        "share": share.to_json(),
        "sample_plan": sample.to_json(),
        "sides": final.sides,
        "looks": [look.to_json() for look in looks],
        "early_stop": len(looks) < planned_looks,
        "checks": [
            {
                "name": "traffic_share",
                "verdict": "APPROVE"
                if share.measured is not None and not share.off
                else "CONDITIONAL",
                "critical": False,
                "informational": share.measured is None,
                "detail": share.describe(),
            },
            *(check(m) for m in final.metrics),
        ],
        "notes": [SOURCES, f"client outcomes: {client_note(final.sides)}", *(notes or [])],
        "run_id": run_id,
    }


def check(m: MetricResult) -> dict[str, Any]:
    """One metric of the last look as a report check, saying where its values come from."""
    source = "upstream attempts" if m.metric in FROM_ATTEMPTS else "answers"
    if m.outcome == "nodata":
        return {
            "name": m.metric,
            "verdict": "CONDITIONAL",
            "critical": m.critical,
            "informational": True,
            "detail": f"no data ({m.n_canary} canary, {m.n_baseline} baseline values "
            f"from {source})",
        }
    verdict = "APPROVE" if m.outcome == "pass" else ("REJECT" if m.critical else "CONDITIONAL")
    return {
        "name": m.metric,
        "verdict": verdict,
        "critical": m.critical,
        "detail": f"{m.test}: canary {m.canary:.4g} vs baseline {m.baseline:.4g}, effect "
        f"{m.effect:+.1%} (matters from {m.min_effect:.0%} {m.bad}), p {m.p_value:.2g}, "
        f"n {m.n_canary}/{m.n_baseline} from {source}" + ("" if m.critical else " (not critical)"),
    }


def client_note(sides: dict[str, Any]) -> str:
    """What the clients saw on each side (reported beside the models' own outcome)."""
    parts = []
    for name in ("canary", "baseline"):
        side = sides[name]
        client = side["client"]
        rate = client["error_rate"]
        p50 = client["latency_p50_ms"]
        parts.append(
            f"{name} {side['model']}: {side['requests']} routed, {side['cached']} from the cache, "
            f"{side['judged']} reached the models; the model failed {side['failures']} "
            f"({_classes(side['failure_classes'])}); clients saw "
            f"{'-' if rate is None else f'{rate:.1%}'} errors, "
            f"{client['answered_by_other']} answered by another model, median "
            f"{'-' if p50 is None else f'{p50:.0f}'} ms"
        )
    return "; ".join(parts)


def _classes(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
