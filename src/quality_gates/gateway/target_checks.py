"""Manual moves check their target: before `rollback`, `promote`, `failover` or a traffic
change sends traffic somewhere, that somewhere is probed and its recent record read.

A target is refused when its live probes mostly fail, when a breaker of its deployments is
forced open by a person (traffic could not flow there), or when a probe failed and the
gateways saw it fail more often than the environment's error-rate threshold over the last
15 s while its breaker is open. A breaker that opened on failures that are over (every probe
passes now) is reported, not refused: it half-opens on its own. `--force` moves anyway; the
move's reason then records what it was forced past, so the audit says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from quality_gates.config import QualityGatesConfig
from quality_gates.errors import RegistryError
from quality_gates.gateway.failover import Probe, provider_attempts
from quality_gates.gateway.runtime import (
    AUTO_REMEDIATION_ACTOR,
    BREAKER_PREFIX,
    forced_breakers,
)
from quality_gates.gateway.status import open_breakers_of
from quality_gates.store import settings as runtime_settings
from quality_gates.store.db import Connection

PROBES = 3
RECENT_S = 15.0  # the recent record: attempts over the last 15 s (older ones are history)
MIN_ATTEMPTS = 10


@dataclass
class TargetCheck:
    """What was checked of one provider (and the deployments named), and the verdict."""

    provider: str
    deployments: list[str]
    probes_ok: int
    probes: int
    attempts: int
    errors: int
    forced_open: list[str] = field(default_factory=list)
    open_breakers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """No problem found."""
        return not self.problems

    def evidence(self) -> str:
        """One line: probes, recent calls, breakers."""
        calls = (
            f"{self.errors}/{self.attempts} recent calls failed"
            if self.attempts
            else "no recent calls"
        )
        parts = [f"{self.probes_ok}/{self.probes} probes passed", calls]
        if self.forced_open:
            parts.append(f"breaker forced open on {', '.join(self.forced_open)}")
        elif self.open_breakers:
            parts.append(f"breaker open on {', '.join(self.open_breakers)}")
        return f"{self.provider}: " + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**self.__dict__, "healthy": self.healthy}


def check_provider(
    conn: Connection,
    config: QualityGatesConfig,
    environment: str,
    provider: str,
    *,
    probe: Probe,
    deployments: list[str] | None = None,
    now: float | None = None,
) -> TargetCheck:
    """Probe `provider` and read the gateways' recent record of it (or of `deployments`)."""
    now = time.time() if now is None else now
    env = config.environment(environment)
    limit = env.thresholds.error_rate if env else 0.02
    named = deployments or [f"{m.provider}/{m.id}" for m in config.models if m.provider == provider]
    results = [probe(provider) for _ in range(PROBES)]
    ok = sum(r.healthy for r in results)
    attempts, errors = provider_attempts(conn, environment, provider, now - RECENT_S)
    forced, by_watch = _forced_open(conn, environment, named)
    live_open = [d for d in open_breakers_of(conn, environment, provider) if d in named]
    check = TargetCheck(provider, named, ok, PROBES, attempts, errors, forced, live_open)
    if ok * 2 < PROBES:
        failed = next(r for r in results if not r.healthy)
        detail = failed.detail.removeprefix(f"{provider}: ")
        check.problems.append(
            f"{PROBES - ok} of {PROBES} live probes failed ({failed.error_class or 'error'}: "
            f"{detail[:160]})"
        )
    if forced:
        check.problems.append(
            f"breaker forced open on {', '.join(forced)} by a person (no traffic can reach "
            "it; `quality-gates breaker --deployment D --state auto` clears it)"
        )
    if by_watch:
        line = (
            f"breaker forced open on {', '.join(by_watch)} by auto-remediation; the watch "
            "clears it when its failback completes (`quality-gates breaker --deployment D "
            "--state auto` clears it now)"
        )
        (check.problems if ok * 2 < PROBES else check.notes).append(line)
    recent_bad = attempts >= MIN_ATTEMPTS and errors / attempts > limit
    # Every probe passing now outweighs an open breaker: it opened on failures that are over
    # (a provider just back from an outage), and it half-opens by itself.
    if recent_bad and live_open and ok < PROBES:
        check.problems.append(
            f"{errors}/{attempts} calls failed in the last {RECENT_S:.0f} s "
            f"({errors / attempts:.1%}, over {limit:.1%}) and its breaker is open"
        )
    elif live_open:
        check.notes.append(
            f"breaker open on {', '.join(live_open)} from earlier failures; probes pass, so it "
            "will half-open on its own"
        )
    return check


def check_model(
    conn: Connection,
    config: QualityGatesConfig,
    environment: str,
    model_id: str,
    *,
    probe: Probe,
) -> TargetCheck:
    """The provider that serves `model_id`, and that model's deployment."""
    from quality_gates.gateway._routing import RouteTable, describe_weights
    from quality_gates.store.registry import list_aliases

    model = config.model(model_id)
    if model is None:
        raise RegistryError(f"model {model_id!r} is not in the config")
    check = check_provider(
        conn,
        config,
        environment,
        model.provider,
        probe=probe,
        deployments=[f"{model.provider}/{model.id}"],
    )
    # The weights in force may drain the model's provider (a failover in force): then the
    # alias moved onto it is answered by its chain until the provider fails back. That is
    # not a sick target, so the move goes ahead, and says so.
    aliases = {a.name: a.model_id for a in list_aliases(conn, environment)}
    table = RouteTable(config, environment, aliases, runtime_settings.get_all(conn, environment))
    now = time.time()
    kept = table.admission(now).get(model.provider)
    if kept is not None:
        line = (
            f"the weights in force ({describe_weights(table.weights(now))}) leave "
            f"{model.provider} {kept:.0%} of its models' requests, so {model_id} would answer "
            f"{kept:.0%} of them and its failover chain the rest until the provider fails back "
            f"(`quality-gates failback --provider {model.provider}` or `config set "
            "--traffic-distribution reset` returns them)"
        )
        check.notes.append(line)
    return check


def refuse_unhealthy(action: str, checks: list[TargetCheck], *, force: bool) -> str | None:
    """Raise (exit 1, with the evidence) when a target is unhealthy and not `force`; with
    `force`, return the note the move's reason carries into the audit log."""
    bad = [c for c in checks if not c.healthy]
    if not bad:
        return None
    evidence = "; ".join(f"{c.provider}: {'; '.join(c.problems)}" for c in bad)
    if not force:
        raise RegistryError(
            f"{action} refused: the target is not healthy: {evidence}",
            hint="wait for it to recover, choose another target, or pass --force "
            "(recorded as forced in the audit log)",
        )
    return f"forced past a failed target check: {evidence}"


def _forced_open(
    conn: Connection, environment: str, deployments: list[str]
) -> tuple[list[str], list[str]]:
    """(forced open by a person, forced open by auto-remediation) among `deployments`."""
    values = runtime_settings.get_all(conn, environment)
    in_force = forced_breakers(values, time.time())
    by_person: list[str] = []
    by_watch: list[str] = []
    for deployment in deployments:
        value = values.get(BREAKER_PREFIX + deployment)
        if in_force.get(deployment, ("", None))[0] == "open" and isinstance(value, dict):
            (by_watch if value.get("actor") == AUTO_REMEDIATION_ACTOR else by_person).append(
                deployment
            )
    return by_person, by_watch
