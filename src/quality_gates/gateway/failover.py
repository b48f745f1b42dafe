"""`failover` and `failback`: move provider weights step by step, checking health between
steps, every step audited and recorded in `traffic_history`.

- failover --from P --to Q: P's weight moves to Q. `immediate` in one step; `gradual` leaves P
  50%, 25%, 0% of its weight (a failed check holds where it is); `canary` gives Q 5, 10, 25,
  50, 75, 100% of P's weight with a check after each step (a failed check restores the
  weights from before the failover).
- failback --provider P: finds the last failover away from P, checks P's health
  against the threshold (live probes plus P's recent attempts), then takes back what that
  failover changed, on the weights in force (canary steps by default; a failed check returns
  to the weights before the failback). Moves add up, so failovers of several providers fail
  back in any order.

A health check of a provider: a live probe, its attempts in the gateway's telemetry since the
step began (error rate against the environment's threshold, client faults excluded), and the
breakers the running gateways report for it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quality_gates.config import QualityGatesConfig
from quality_gates.errors import RegistryError, UsageError
from quality_gates.gateway._routing import RouteTable, describe_weights, effective_weights
from quality_gates.gateway.runtime import set_traffic
from quality_gates.gateway.status import open_breakers_of
from quality_gates.providers import ProbeResult
from quality_gates.store import settings as runtime_settings
from quality_gates.store.db import Connection
from quality_gates.store.registry import list_aliases

MODES = ("immediate", "gradual", "canary")
GRADUAL_MOVED = (0.5, 0.75, 1.0)  # P keeps 50%, 25%, 0% of its weight
CANARY_MOVED = (0.05, 0.10, 0.25, 0.50, 0.75, 1.0)
MIN_ATTEMPTS_FOR_RATE = 10
CLIENT_FAULTS = ("bad_request", "content_filtered")

Probe = Callable[[str], ProbeResult]
Sleep = Callable[[float], None]


@dataclass
class HealthCheck:
    """Whether a provider looks healthy now, and why."""

    provider: str
    healthy: bool
    probe_ok: bool
    probe_latency_ms: float
    probe_error: str | None
    attempts: int
    errors: int
    open_breakers: list[str]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dict(self.__dict__)


@dataclass
class Step:
    """One applied weight change."""

    label: str
    weights: dict[str, float]
    at: float
    check: HealthCheck | None = None


@dataclass
class TrafficMove:
    """What a failover or failback did."""

    operation_id: str
    action: str
    mode: str
    environment: str
    source: str
    target: str
    before: dict[str, float]
    steps: list[Step] = field(default_factory=list)
    completed: bool = False
    outcome: str = ""
    final: dict[str, float] = field(default_factory=dict)


def moved(weights: dict[str, float], source: str, target: str, share: float) -> dict[str, float]:
    """`weights` with `share` of the source's weight moved to the target."""
    result = dict(weights)
    amount = weights.get(source, 0.0) * share
    result[source] = weights.get(source, 0.0) - amount
    result[target] = weights.get(target, 0.0) + amount
    return {k: round(v, 6) for k, v in result.items()}


def check_health(
    conn: Connection,
    config: QualityGatesConfig,
    environment: str,
    provider: str,
    *,
    since: float,
    probe: Probe,
) -> HealthCheck:
    """Probe `provider` and read what the gateways saw of it since `since`."""
    env = config.environment(environment)
    limit = env.thresholds.error_rate if env else 0.02
    result = probe(provider)
    attempts, errors = provider_attempts(conn, environment, provider, since)
    open_breakers = open_breakers_of(conn, environment, provider)
    reasons = []
    if not result.healthy:
        reasons.append(f"probe failed ({result.error_class or 'error'}: {result.detail})")
    if attempts >= MIN_ATTEMPTS_FOR_RATE and errors / attempts > limit:
        reasons.append(f"error rate {errors / attempts:.1%} over {limit:.1%} in {attempts} calls")
    if open_breakers:
        reasons.append(f"breaker open on {', '.join(open_breakers)}")
    return HealthCheck(
        provider,
        not reasons,
        result.healthy,
        result.latency_ms,
        result.error_class,
        attempts,
        errors,
        open_breakers,
        "; ".join(reasons) or "healthy",
    )


def provider_attempts(
    conn: Connection, environment: str, provider: str, since: float
) -> tuple[int, int]:
    """(upstream attempts, the provider's failures among them) since `since`. Only attempts
    recorded `error` count: a client's own faults (bad request, content filter) and clients
    that left (499) are not the provider's."""
    row = conn.one(
        "SELECT COUNT(*) AS n, SUM(CASE WHEN status = 'error' AND (error_class IS NULL OR "
        "error_class NOT IN ('bad_request', 'content_filtered')) THEN 1 ELSE 0 END) AS e "
        "FROM attempts WHERE environment = :env AND provider = :p AND ts >= :since",
        {"env": environment, "p": provider, "since": since},
    )
    return (int(row["n"] or 0), int(row["e"] or 0)) if row else (0, 0)


def current_weights(
    conn: Connection, config: QualityGatesConfig, environment: str, *, config_only: bool = False
) -> dict[str, float]:
    """The weights in force (live setting, config, or every provider at 100);
    `config_only`: what they would be without the live setting."""
    from quality_gates.gateway.runtime import TRAFFIC

    runtime = runtime_settings.get_all(conn, environment)
    if config_only:
        runtime.pop(TRAFFIC, None)
    return effective_weights(config, environment, runtime, time.time())


def raw_weights(conn: Connection, config: QualityGatesConfig, environment: str) -> dict[str, float]:
    """The weights in force as stored, zero and below included (automatic failovers and
    failbacks add and take back their own changes, which may take a provider below 0 while
    another failover holds it there; routing reads anything at or below 0 as 0)."""
    from quality_gates.gateway.runtime import TRAFFIC, TrafficSetting

    live = TrafficSetting.from_json(runtime_settings.get(conn, environment, TRAFFIC))
    if live is not None:
        return live.at(time.time())
    return current_weights(conn, config, environment)


def change_of(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What a move changed: provider -> after - before (non-zero only)."""
    names = set(before) | set(after)
    delta = {n: round(after.get(n, 0.0) - before.get(n, 0.0), 6) for n in names}
    return {n: v for n, v in delta.items() if v}


def undo(weights: dict[str, float], change: dict[str, float], share: float) -> dict[str, float]:
    """`weights` with `share` of a move's `change` taken back. Changes add up, so moves
    taken back in any order leave the weights as they would be had they never happened."""
    names = set(weights) | set(change)
    return {n: round(weights.get(n, 0.0) - change.get(n, 0.0) * share, 6) for n in names}


def _check_names(
    config: QualityGatesConfig, conn: Connection, environment: str, *names: str
) -> None:
    known = [p.name for p in config.providers]
    for name in names:
        if name not in known:
            raise UsageError(f"unknown provider {name!r}", hint=f"known: {', '.join(known)}")
    aliases = {a.name: a.model_id for a in list_aliases(conn, environment)}
    current = aliases.get("current")
    if current is None:
        raise RegistryError(f"{environment} has no current alias to route")
    table = RouteTable(config, environment, aliases, {})
    reachable = {d.provider for d in table.chain(current)}
    for name in names:
        if name not in reachable:
            raise UsageError(
                f"{name!r} serves no model of the failover chain of {current} in {environment}, "
                "so weight given to it would carry no traffic",
                hint=f"providers in that chain: {', '.join(sorted(reachable))}",
            )


def _run_steps(
    conn: Connection,
    config: QualityGatesConfig,
    move: TrafficMove,
    plan: list[tuple[str, dict[str, float]]],
    *,
    watched: str,
    check_after_last: bool,
    on_failure: dict[str, float] | None,
    pause: float,
    probe: Probe,
    actor: str,
    reason: str,
    sleep: Sleep,
    progress: Callable[[Step], None] | None,
) -> TrafficMove:
    weights = dict(move.before)
    for index, (label, target) in enumerate(plan):
        started = time.time()
        set_traffic(
            conn,
            environment=move.environment,
            weights=target,
            current=weights,
            actor=actor,
            source="manual",
            reason=reason,
            mode=f"{move.action}:{move.mode}",
            step=label,
            operation_id=move.operation_id,
        )
        weights = target
        step = Step(label, target, started)
        move.steps.append(step)
        last = index == len(plan) - 1
        if (not last or check_after_last) and move.mode != "immediate":
            sleep(pause)
            step.check = check_health(
                conn, config, move.environment, watched, since=started, probe=probe
            )
        if progress is not None:
            progress(step)
        if step.check is not None and not step.check.healthy:
            if on_failure is not None:
                set_traffic(
                    conn,
                    environment=move.environment,
                    weights=on_failure,
                    current=weights,
                    actor=actor,
                    source="auto",
                    reason=f"{move.action} stopped: {step.check.reason}",
                    mode=f"{move.action}:{move.mode}",
                    step="reverted",
                    operation_id=move.operation_id,
                )
                weights = on_failure
                move.outcome = f"stopped at {label} ({step.check.reason}); weights restored"
            else:
                move.outcome = f"held at {label} ({step.check.reason})"
            move.final = weights
            return move
    move.completed = True
    move.final = weights
    move.outcome = "completed"
    return move


def check_move(
    conn: Connection, config: QualityGatesConfig, environment: str, source: str, target: str
) -> dict[str, float]:
    """Refuse a failover that names the same or unknown providers, or a source that keeps
    nothing already; returns the weights in force."""
    if source == target:
        raise UsageError("the source and the target are the same provider")
    _check_names(config, conn, environment, source, target)
    before = current_weights(conn, config, environment)
    if before.get(source, 0.0) <= 0:
        raise RegistryError(
            f"{source} carries no traffic in {environment} (weights now: "
            f"{describe_weights(before)}); nothing to fail over",
        )
    return before


def failover(
    conn: Connection,
    config: QualityGatesConfig,
    *,
    environment: str,
    source: str,
    target: str,
    mode: str,
    reason: str,
    actor: str,
    probe: Probe,
    pause: float,
    sleep: Sleep = time.sleep,
    progress: Callable[[Step], None] | None = None,
) -> TrafficMove:
    """Move the source provider's traffic to the target, as `mode` says."""
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
    if not reason.strip():
        raise UsageError("a failover needs --reason (it goes into the audit log)")
    before = check_move(conn, config, environment, source, target)
    shares = {"immediate": (1.0,), "gradual": GRADUAL_MOVED, "canary": CANARY_MOVED}[mode]
    plan = []
    for share in shares:
        after = moved(before, source, target, share)
        label = (
            f"{target} {share:.0%} of {source}'s share"
            if mode == "canary"
            else f"{source} at {1 - share:.0%}"
        )
        plan.append((label, after))
    move = TrafficMove(uuid.uuid4().hex[:12], "failover", mode, environment, source, target, before)
    return _run_steps(
        conn,
        config,
        move,
        plan,
        watched=target,
        check_after_last=mode == "canary",
        on_failure=before if mode == "canary" else None,
        pause=pause,
        probe=probe,
        actor=actor,
        reason=reason,
        sleep=sleep,
        progress=progress,
    )


def last_failover_from(conn: Connection, environment: str, provider: str) -> dict[str, Any]:
    """The weights before and after the latest failover away from `provider`, and that
    failover's id."""
    rows = conn.execute(
        "SELECT operation_id, previous, weights, ts FROM traffic_history WHERE environment = "
        ":env AND mode LIKE 'failover:%' ORDER BY id DESC LIMIT 200",
        {"env": environment},
    )
    for row in rows:
        previous = json.loads(row["previous"])
        if previous.get(provider, 0.0) > json.loads(row["weights"]).get(provider, 0.0):
            first = conn.one(
                "SELECT previous, ts FROM traffic_history WHERE operation_id = :op ORDER BY id "
                "LIMIT 1",
                {"op": row["operation_id"]},
            )
            last = conn.one(
                "SELECT weights FROM traffic_history WHERE operation_id = :op ORDER BY id DESC "
                "LIMIT 1",
                {"op": row["operation_id"]},
            )
            if first is not None and last is not None:
                return {
                    "operation_id": row["operation_id"],
                    "before": json.loads(first["previous"]),
                    "after": json.loads(last["weights"]),
                    "at": first["ts"],
                }
    raise RegistryError(
        f"no failover away from {provider} is recorded in {environment}",
        hint="set weights directly with `quality-gates config set --traffic-distribution`",
    )


def live_probe(config: QualityGatesConfig) -> Probe:
    """A probe that calls the provider's real adapter (one short event loop per probe)."""
    import asyncio

    from quality_gates.gateway._app import default_provider_factory

    def run(name: str) -> ProbeResult:
        provider = config.provider(name)
        if provider is None:
            raise UsageError(f"unknown provider {name!r}")
        adapter = default_provider_factory(provider, config.models)

        async def once() -> ProbeResult:
            try:
                return await adapter.probe()
            finally:
                await adapter.close()

        return asyncio.run(once())

    return run


def probe_success(
    probe: Probe, provider: str, count: int, interval: float, sleep: Sleep
) -> tuple[int, int, list[ProbeResult]]:
    """(successes, probes, results) of `count` live probes `interval` apart."""
    results = []
    for i in range(count):
        if i:
            sleep(interval)
        results.append(probe(provider))
    return sum(r.healthy for r in results), count, results


def failback(
    conn: Connection,
    config: QualityGatesConfig,
    *,
    environment: str,
    provider: str,
    threshold: float,
    mode: str,
    reason: str,
    actor: str,
    probe: Probe,
    pause: float,
    probes: int = 20,
    probe_interval: float = 0.25,
    sleep: Sleep = time.sleep,
    progress: Callable[[Step], None] | None = None,
) -> tuple[TrafficMove, dict[str, Any]]:
    """Return traffic to `provider` once its health reaches `threshold`: take back, in
    steps, what the latest failover away from it changed."""
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r} is not one of {', '.join(MODES)}")
    _check_names(config, conn, environment, provider)
    origin = last_failover_from(conn, environment, provider)
    now_weights = current_weights(conn, config, environment)
    ok, total, results = probe_success(probe, provider, probes, probe_interval, sleep)
    row = conn.one(
        "SELECT COUNT(*) AS n, SUM(CASE WHEN status = 'ok' OR error_class IN ('bad_request', "
        "'content_filtered') THEN 1 ELSE 0 END) AS good FROM attempts WHERE environment = :env "
        "AND provider = :p AND ts >= :since",
        {"env": environment, "p": provider, "since": time.time() - 300.0},
    )
    live_n = int(row["n"] or 0) if row else 0
    live_ok = int(row["good"] or 0) if row else 0
    success = (ok + live_ok) / (total + live_n)
    health = {
        "probes": total,
        "probe_successes": ok,
        "recent_attempts": live_n,
        "recent_successes": live_ok,
        "success_rate": success,
        "threshold": threshold,
        "probe_errors": sorted({r.error_class for r in results if r.error_class}),
    }
    move = TrafficMove(
        uuid.uuid4().hex[:12], "failback", mode, environment, provider, provider, now_weights
    )
    if success < threshold:
        move.outcome = (
            f"{provider} is at {success:.1%} ({ok}/{total} probes, {live_ok}/"
            f"{live_n} recent calls), below the {threshold:.1%} threshold; "
            "traffic unchanged"
        )
        move.final = now_weights
        return move, health
    # take back what that failover changed, on the weights in force: other moves made since
    # (another provider's failover) keep theirs
    change = change_of(origin["before"], origin["after"])
    raw = raw_weights(conn, config, environment)
    shares = {"immediate": (1.0,), "gradual": GRADUAL_MOVED, "canary": CANARY_MOVED}[mode]
    plan = [
        (f"{provider} back to {share:.0%} of its share", undo(raw, change, share))
        for share in shares
    ]
    move = _run_steps(
        conn,
        config,
        move,
        plan,
        watched=provider,
        check_after_last=mode != "immediate",
        on_failure=now_weights,
        pause=pause,
        probe=probe,
        actor=actor,
        reason=reason or f"failback to {provider} (undoes {origin['operation_id']})",
        sleep=sleep,
        progress=progress,
    )
    return move, health
