"""The configuration a drill's own stack runs with: the workspace's, on the drill timescale.

The workspace's providers, models, environments, rules, remediation policy and channels are
kept; what runs on minutes in production (evaluation interval, rule windows, failback waits,
cool-downs, heartbeats, breaker probes, cache freshness) is shortened so that one drill takes
well under a minute. Every change is listed in `tuning`, so a reader can tell what was
measured under which settings. Providers that are not simulators are replaced by a simulator
of their wire protocol (listed in `substitutions`): a drill never breaks a real provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

EVALUATION_INTERVAL = 0.5
MAX_RULE_WINDOW = 10.0
MAX_RULE_FOR = 1.0
MAX_KEEP_FIRING = 1.0
MAX_MIN_REQUESTS = 10
MAX_BASELINE_WINDOW = 120.0
HEARTBEAT = 0.5
CONTROL_POLL = 0.1
TELEMETRY_FLUSH = 0.2
BREAKER_PROBE = 1.0
MAX_BREAKER_OPEN_FOR = 2.0
CACHE_TTL = 2.0
MAX_HEALTHY_FOR = 1.5
FAILBACK_PROBE = 0.5
MAX_STEP_INTERVAL = 0.5
PROBE_INTERVAL = 0.5
DRILL_MARK = "[drill]"
# The drill's load misses the cache on purpose, is cost-free and starts from nothing: rules
# on these would fire on the load itself.
SYNTHETIC_LOAD_METRICS = ("cache_hit_rate", "unusual_traffic_pattern", "cost_per_minute")


@dataclass
class DrillConfig:
    """The tuned config and what was changed to get it."""

    config: QualityGatesConfig
    tuning: list[str] = field(default_factory=list)
    substitutions: list[str] = field(default_factory=list)


def _capped(tuning: list[str], where: str, value: float, cap: float, unit: str = "s") -> float:
    if value > cap:
        tuning.append(f"{where}: {value:g}{unit} -> {cap:g}{unit}")
        return cap
    return value


def simulated_providers(config: QualityGatesConfig) -> tuple[list[dict[str, Any]], list[str]]:
    """Every provider as a simulator on a free port (`port: 0`); the substitutions made."""
    out, substitutions = [], []
    for provider in config.providers:
        data = provider.model_dump(mode="json", by_alias=True, exclude_unset=True)
        if provider.kind != "simulator":
            substitutions.append(
                f"{provider.name}: {provider.kind} provider replaced by a simulator speaking "
                f"the {provider.wire_protocol} protocol"
            )
            data = {
                "name": provider.name,
                "kind": "simulator",
                "protocol": provider.wire_protocol,
                "profile": "healthy",
                "quotas": data.get("quotas", {}),
            }
        data.update(host="127.0.0.1", port=0)
        data.pop("endpoint", None)
        data.pop("credentials", None)
        out.append(data)
    return out, substitutions


def drill_config(
    config: QualityGatesConfig,
    environment: str,
    *,
    ports: dict[str, int],
    answer_key: Path,
) -> DrillConfig:
    """`config` for a drill in `environment`: simulators on `ports` that answer the golden
    probes' dataset (`answer_key`), the drill timescale, auth off (loopback only), and
    remediation left on for `environment` alone."""
    from quality_gates.config import QualityGatesConfig

    tuning: list[str] = []
    data = config.model_dump(mode="json", by_alias=True, exclude_unset=True)
    providers, substitutions = simulated_providers(config)
    for provider in providers:
        provider["port"] = ports.get(provider["name"], 0)
        faults = dict(provider.get("faults") or {})
        faults["answer_key"] = str(answer_key)
        provider["faults"] = faults
    data["providers"] = providers
    data["alerts"] = _alerts(config, tuning)
    data["incidents"] = {
        **data.get("incidents", {}),
        "auto_resolve_after": 0.0,
    }
    tuning.append("incidents.auto_resolve_after: 0s (an incident resolves with its alerts)")
    data["gateway"] = _gateway(config, tuning)
    data["remediation"] = _remediation(config, environment, tuning)
    # The drill's watch measures; the workspace's scheduled jobs are the real leader's (a
    # slot missed while a drill held the lease runs late there), never run from a drill.
    data["routines"] = {**data.get("routines", {}), "jobs": []}
    tuning.append("routines off (the drill's watch runs no scheduled job)")
    data.pop("observability", None)
    data.pop("web", None)
    tuning.append("observability exporters off (the drill's metrics stay in the store)")
    return DrillConfig(QualityGatesConfig.model_validate(data), tuning, substitutions)


def _alerts(config: QualityGatesConfig, tuning: list[str]) -> dict[str, Any]:
    alerts = config.alerts
    tuning.append(
        f"alerts.evaluation_interval: {alerts.evaluation_interval:g}s -> {EVALUATION_INTERVAL:g}s"
    )
    rules = []
    for rule in alerts.rules:
        if rule.type == "cost" or rule.metric in SYNTHETIC_LOAD_METRICS:
            tuning.append(
                f"alerts.rules[{rule.name}]: left out (it would judge the drill's synthetic "
                "load, not the fault)"
            )
            continue
        data = rule.model_dump(mode="json", by_alias=True, exclude_none=True)
        name = f"alerts.rules[{rule.name}]"
        data["window"] = _capped(tuning, f"{name}.window", rule.window, MAX_RULE_WINDOW)
        data["for"] = _capped(tuning, f"{name}.for", rule.for_, MAX_RULE_FOR)
        data["keep_firing_for"] = _capped(
            tuning, f"{name}.keep_firing_for", rule.keep_firing_for, MAX_KEEP_FIRING
        )
        data["min_requests"] = int(
            _capped(tuning, f"{name}.min_requests", rule.min_requests, MAX_MIN_REQUESTS, "")
        )
        data["baseline_window"] = _capped(
            tuning, f"{name}.baseline_window", rule.baseline_window, MAX_BASELINE_WINDOW
        )
        # The incident takes its title from the summary: mark it as a drill's.
        data["summary"] = f"{DRILL_MARK} {rule.summary or rule.expr or rule.expression}"
        rules.append(data)
    if alerts.slos:
        tuning.append("alerts.slos: left out (burn rates over hours say nothing in a drill)")
    return {
        **alerts.model_dump(mode="json", by_alias=True, exclude_unset=True),
        "evaluation_interval": EVALUATION_INTERVAL,
        "rules": rules,
        "slos": [],
    }


def _gateway(config: QualityGatesConfig, tuning: list[str]) -> dict[str, Any]:
    gw = config.gateway
    data = gw.model_dump(mode="json", by_alias=True, exclude_unset=True)
    breaker = dict(data.get("breaker", {}))
    breaker["probe_interval"] = BREAKER_PROBE
    breaker["open_for"] = _capped(
        tuning, "gateway.breaker.open_for", gw.breaker.open_for, MAX_BREAKER_OPEN_FOR
    )
    cache = dict(data.get("cache", {}))
    cache["ttl"] = _capped(tuning, "gateway.cache.ttl", gw.cache.ttl, CACHE_TTL)
    cache["backend"] = "memory"
    telemetry = dict(data.get("telemetry", {}))
    telemetry["flush_interval"] = TELEMETRY_FLUSH
    tuning += [
        f"gateway.heartbeat: {gw.heartbeat:g}s -> {HEARTBEAT:g}s",
        f"gateway.control_poll: {gw.control_poll:g}s -> {CONTROL_POLL:g}s",
        f"gateway.breaker.probe_interval: {gw.breaker.probe_interval:g}s -> {BREAKER_PROBE:g}s",
        f"gateway.telemetry.flush_interval: {gw.telemetry.flush_interval:g}s -> "
        f"{TELEMETRY_FLUSH:g}s",
        "gateway.cache.backend: memory (the drill's own gateway, not a shared Redis)",
        "gateway.auth: disabled (the drill's gateway listens on loopback for its own load)",
    ]
    return {
        **data,
        "host": "127.0.0.1",
        "port": 0,
        "workers": 1,
        "auth": "disabled",
        "heartbeat": HEARTBEAT,
        "control_poll": CONTROL_POLL,
        "breaker": breaker,
        "cache": cache,
        "telemetry": telemetry,
    }


def _remediation(config: QualityGatesConfig, environment: str, tuning: list[str]) -> dict[str, Any]:
    settings = config.remediation
    policy = settings.policy(environment)
    data = policy.model_dump(mode="json", by_alias=True)
    if policy.cooldown > 0:
        tuning.append(f"remediation.cooldown: {policy.cooldown:g}s -> 0s (drills repeat)")
    data["cooldown"] = 0.0
    failback = data["failback"]
    where = "remediation.failback"
    failback["healthy_for"] = _capped(
        tuning, f"{where}.healthy_for", policy.failback.healthy_for, MAX_HEALTHY_FOR
    )
    failback["probe_interval"] = _capped(
        tuning, f"{where}.probe_interval", policy.failback.probe_interval, FAILBACK_PROBE
    )
    failback["step_interval"] = _capped(
        tuning, f"{where}.step_interval", policy.failback.step_interval, MAX_STEP_INTERVAL
    )
    probes = settings.probes.model_dump(mode="json", by_alias=True)
    probes["interval"] = _capped(
        tuning, "remediation.probes.interval", settings.probes.interval, PROBE_INTERVAL
    )
    others = {name: {"enabled": False} for name in config.environments if name != environment}
    if others:
        tuning.append(f"remediation off in {', '.join(sorted(others))} (only {environment} drills)")
    return {
        **data,
        "environments": others,
        "probes": probes,
        "sampling": settings.sampling.model_dump(mode="json", by_alias=True),
    }
