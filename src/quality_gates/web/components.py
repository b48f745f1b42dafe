"""Component statuses from live health: the AI service and each provider of an environment.

The rules (one verdict per component; the worst that holds wins):

Provider P, from the breakers the live gateways report for P's deployments and from P's
upstream attempts over the last `web.status_page.window` (client mistakes such as
bad_request do not count against P; rates need `min_requests` attempts):
- major_outage: every reported breaker of P is open, or availability < `major_outage_below`;
- partial_outage: some breaker of P is open, or availability < `partial_outage_below`;
- degraded_performance: a breaker is half-open, availability < 1 - the environment's
  `error_rate` threshold, or P95 latency > its `p95_latency_ms` threshold;
- operational otherwise; no_data when no gateway reports P and P had no attempts.

The AI service, from client requests over the same window (what callers saw, after
failover) and from its providers:
- major_outage: emergency shutdown, request availability < `major_outage_below`, or every
  provider in a major outage;
- partial_outage: request availability < `partial_outage_below`, or any provider in a
  partial or major outage (capacity is lost even while failover still answers);
- degraded_performance: emergency degraded mode, error rate or P95 over the environment's
  thresholds, or any provider degraded;
- operational otherwise; no_data when no gateway reports and no request was made.

Reasons are kept for the dashboard; the public page shows only the status.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from quality_gates.config import QualityGatesConfig, StatusPageSettings, Thresholds
from quality_gates.gateway.status import gateway_status
from quality_gates.signals._windows import Aggregate, Window, group, read_window
from quality_gates.store.db import Connection
from quality_gates.store.registry import list_aliases

OPERATIONAL = "operational"
DEGRADED = "degraded_performance"
PARTIAL = "partial_outage"
MAJOR = "major_outage"
NO_DATA = "no_data"
STATUSES = (OPERATIONAL, DEGRADED, PARTIAL, MAJOR)
LABELS = {
    OPERATIONAL: "Operational",
    DEGRADED: "Degraded performance",
    PARTIAL: "Partial outage",
    MAJOR: "Major outage",
    NO_DATA: "No data",
}
_RANK = {NO_DATA: -1, OPERATIONAL: 0, DEGRADED: 1, PARTIAL: 2, MAJOR: 3}
SERVICE = "service"


def worst(*statuses: str) -> str:
    """The most severe status (no_data only when nothing else is known)."""
    return max(statuses, key=lambda s: _RANK[s]) if statuses else NO_DATA


@dataclass
class Verdict:
    """A status and the facts that led to it."""

    status: str = OPERATIONAL
    reasons: list[str] = field(default_factory=list)

    def raise_to(self, status: str, reason: str) -> None:
        """Record a finding; the status only ever gets worse."""
        self.reasons.append(reason)
        self.status = worst(self.status, status)


@dataclass
class Component:
    """One row of the status page."""

    id: str
    status: str
    reasons: list[str]
    providers: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """`Partial outage`."""
        return LABELS[self.status]


def environment_providers(conn: Connection, config: QualityGatesConfig, env: str) -> list[str]:
    """Providers that serve `env` (its aliases' and chains' models, and its traffic), in the
    config's order."""
    environment = config.environment(env)
    models = {a.model_id for a in list_aliases(conn, env)}
    traffic: set[str] = set()
    if environment is not None:
        models |= set(environment.aliases.values())
        for chain in environment.failover_chains:
            models |= set(chain.models)
        traffic = set(environment.traffic)
    wanted = {m.provider for m in config.models if m.id in models} | traffic
    return [p.name for p in config.providers if p.name in wanted]


def availability_status(
    availability: float | None, page: StatusPageSettings, limits: Thresholds
) -> str:
    """The status an availability alone earns (also colours the daily uptime bars)."""
    if availability is None:
        return NO_DATA
    if availability < page.major_outage_below:
        return MAJOR
    if availability < page.partial_outage_below:
        return PARTIAL
    if availability < 1.0 - limits.error_rate:
        return DEGRADED
    return OPERATIONAL


def _rates(
    verdict: Verdict,
    agg: Aggregate | None,
    what: str,
    page: StatusPageSettings,
    limits: Thresholds,
    window: str,
) -> None:
    if agg is None or agg.count < page.min_requests:
        return
    availability = 1.0 - agg.availability_errors / agg.count
    status = availability_status(availability, page, limits)
    facts = f"{availability:.1%} available over {window} ({agg.count:.0f} {what})"
    if status == MAJOR:
        verdict.raise_to(MAJOR, f"{facts} < {page.major_outage_below:.0%}")
    elif status == PARTIAL:
        verdict.raise_to(PARTIAL, f"{facts} < {page.partial_outage_below:.0%}")
    elif status == DEGRADED:
        verdict.raise_to(DEGRADED, f"{facts}: errors above {limits.error_rate:.1%}")
    p95 = agg.latency.quantile(0.95)
    if p95 is not None and p95 > limits.p95_latency_ms:
        verdict.raise_to(DEGRADED, f"P95 {p95:.0f} ms over {window} > {limits.p95_latency_ms:g} ms")


def _window_label(seconds: float) -> str:
    from quality_gates.web.filters import span

    return span(seconds)


def judge_provider(
    provider: str,
    breakers: list[dict[str, Any]],
    attempts: Aggregate | None,
    page: StatusPageSettings,
    limits: Thresholds,
) -> Verdict:
    """The provider's verdict from its breakers (as the gateways report them) and attempts."""
    verdict = Verdict()
    mine = [b for b in breakers if str(b["deployment"]).split("/", 1)[0] == provider]
    opened = [b["deployment"] for b in mine if b["state"] == "open"]
    half = [b["deployment"] for b in mine if b["state"] == "half_open"]
    if mine and len(opened) == len(mine):
        verdict.raise_to(MAJOR, f"every breaker open ({', '.join(opened)})")
    elif opened:
        verdict.raise_to(
            PARTIAL, f"{len(opened)} of {len(mine)} breakers open ({', '.join(opened)})"
        )
    if half:
        verdict.raise_to(DEGRADED, f"breaker half-open, recovering ({', '.join(half)})")
    _rates(verdict, attempts, "calls", page, limits, _window_label(page.window))
    if not mine and (attempts is None or attempts.count <= 0):
        verdict.status = NO_DATA
        verdict.reasons.append("no gateway reports it and it had no calls")
    return verdict


def judge_service(
    requests: Aggregate | None,
    providers: dict[str, Verdict],
    emergency: dict[str, Any] | None,
    live_gateways: int,
    page: StatusPageSettings,
    limits: Thresholds,
) -> Verdict:
    """The AI service's verdict from client requests, its providers and emergency mode."""
    verdict = Verdict()
    mode = (emergency or {}).get("mode")
    if mode == "shutdown":
        verdict.raise_to(MAJOR, "emergency shutdown: the gateway refuses requests")
    elif mode == "degraded":
        verdict.raise_to(DEGRADED, "emergency degraded mode (stale cache, queueing)")
    _rates(verdict, requests, "requests", page, limits, _window_label(page.window))
    known = {name: v for name, v in providers.items() if v.status != NO_DATA}
    if known and all(v.status == MAJOR for v in known.values()):
        verdict.raise_to(MAJOR, "every provider is in a major outage")
    for name, provider in known.items():
        if provider.status in (PARTIAL, MAJOR):
            verdict.raise_to(PARTIAL, f"provider {name}: {LABELS[provider.status].lower()}")
        elif provider.status == DEGRADED:
            verdict.raise_to(DEGRADED, f"provider {name}: degraded")
    if not live_gateways and (requests is None or requests.count <= 0) and mode is None:
        verdict.status = NO_DATA
        verdict.reasons.append("no gateway has reported lately and no request was made")
    return verdict


def emergency_setting(value: Any) -> dict[str, Any] | None:
    """The `emergency` runtime setting if it is well formed (mode degraded or shutdown)."""
    if isinstance(value, dict) and value.get("mode") in ("degraded", "shutdown"):
        return value
    return None


def thresholds(config: QualityGatesConfig, environment: str) -> Thresholds:
    """The environment's thresholds (the runbook's defaults for an unknown one)."""
    env = config.environment(environment)
    return env.thresholds if env is not None else Thresholds()


def components(
    conn: Connection,
    config: QualityGatesConfig,
    environment: str,
    *,
    emergency: dict[str, Any] | None = None,
    now: float | None = None,
) -> list[Component]:
    """The AI service first, then each provider of the environment, judged now."""
    now = time.time() if now is None else now
    page = config.web.status_page
    limits = thresholds(config, environment)
    data = read_window(conn, Window.last(page.window, now), environment=environment)
    attempts = {dict(k)["provider"]: agg for k, agg in group(data.attempts, ["provider"]).items()}
    requests = group(data.requests, []).get(())
    gateways = gateway_status(conn, environment).get(environment, {})
    breakers = gateways.get("breakers", [])
    providers = environment_providers(conn, config, environment)
    verdicts = {p: judge_provider(p, breakers, attempts.get(p), page, limits) for p in providers}
    service = judge_service(
        requests, verdicts, emergency, len(gateways.get("gateways", [])), page, limits
    )
    out = [Component(SERVICE, service.status, service.reasons, providers)]
    out.extend(Component(p, v.status, v.reasons) for p, v in verdicts.items())
    return out
