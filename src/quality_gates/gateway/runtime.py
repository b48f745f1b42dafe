"""Live runtime settings the gateway reads from `quality_gates.store.settings`, per environment.

Each change is one transaction: the setting row, a `traffic_history` line for weight changes,
the audit entry and a bump of the control version (which running gateways poll, and on
PostgreSQL also hear through `pg_notify('qg_control', env)`), so it is live within a second.

Value shapes (JSON):

- `traffic`: provider weights that override `environments.E.traffic`, with an optional
  linear transition from the weights in force before:
  `{"weights": {"bedrock": 50, "google": 50}, "from": {"bedrock": 100} | null,
    "start": <epoch s>, "duration": <s>}`
- `cache`: `{"mode": "normal" | "emergency", "serve_stale": bool}`; in emergency mode with
  serve_stale a stale entry answers when every deployment failed.
- `queue`: `{"enabled": bool, "size": int, "timeout": <s>}`; when enabled, requests over the
  concurrency or rate limits wait in a bounded FIFO instead of being refused at once.
- `breaker:<deployment>` (deployment = `provider/model-id`): a forced breaker state,
  `{"state": "open" | "closed", "reason": str, "actor": str, "since": <epoch s>}`.
- `canary` (written by the canary gate, read here): `{"model": <candidate id>,
  "percent": 5.0, "baseline": <model id> | null, "run_id": str}`; that share of requests
  for the `current` alias goes to the candidate's chain and is recorded with canary = 1.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from quality_gates.errors import UsageError
from quality_gates.store import audit, settings
from quality_gates.store.db import Connection
from quality_gates.store.registry import bump_control_version

TRAFFIC = "traffic"
CACHE = "cache"
QUEUE = "queue"
CANARY = "canary"
BREAKER_PREFIX = "breaker:"
AUTO_REMEDIATION_ACTOR = "auto-remediation"  # who the watch acts as
CACHE_MODES = ("normal", "emergency")
BREAKER_STATES = ("open", "closed")


@dataclass(frozen=True)
class TrafficSetting:
    """Weights with an optional linear transition from the weights before."""

    weights: dict[str, float]
    start: float = 0.0
    duration: float = 0.0
    previous: dict[str, float] | None = None

    def at(self, now: float) -> dict[str, float]:
        """The weights in force at `now` (interpolated during a transition)."""
        if not self.previous or self.duration <= 0 or now >= self.start + self.duration:
            return dict(self.weights)
        share = max(0.0, (now - self.start) / self.duration)
        names = set(self.weights) | set(self.previous)
        return {
            n: self.previous.get(n, 0.0)
            + (self.weights.get(n, 0.0) - self.previous.get(n, 0.0)) * share
            for n in names
        }

    def to_json(self) -> dict[str, Any]:
        """The stored shape."""
        return {
            "weights": self.weights,
            "from": self.previous,
            "start": self.start,
            "duration": self.duration,
        }

    @classmethod
    def from_json(cls, value: Any) -> TrafficSetting | None:
        """Read the stored shape; None if absent or malformed."""
        if not isinstance(value, dict) or not isinstance(value.get("weights"), dict):
            return None
        previous = value.get("from")
        return cls(
            {str(k): float(v) for k, v in value["weights"].items()},
            float(value.get("start") or 0.0),
            float(value.get("duration") or 0.0),
            {str(k): float(v) for k, v in previous.items()} if isinstance(previous, dict) else None,
        )


@dataclass(frozen=True)
class CacheMode:
    """Normal, or emergency with stale serving."""

    mode: str = "normal"
    serve_stale: bool = False

    @property
    def stale_allowed(self) -> bool:
        """Stale entries may answer when every deployment failed."""
        return self.mode == "emergency" and self.serve_stale


@dataclass(frozen=True)
class QueueSetting:
    """The bounded admission queue."""

    enabled: bool = False
    size: int = 0
    timeout: float = 0.0


@dataclass(frozen=True)
class CanarySetting:
    """A share of `current` traffic sent to a candidate model."""

    model: str
    percent: float
    baseline: str | None = None
    run_id: str | None = None


def parse_cache(value: Any) -> CacheMode:
    """The stored `cache` value, or the default."""
    if not isinstance(value, dict):
        return CacheMode()
    mode = value.get("mode") if value.get("mode") in CACHE_MODES else "normal"
    return CacheMode(str(mode), bool(value.get("serve_stale")))


def parse_queue(value: Any, *, size: int, timeout: float) -> QueueSetting:
    """The stored `queue` value; size and timeout default to the config's."""
    if not isinstance(value, dict):
        return QueueSetting(False, size, timeout)
    return QueueSetting(
        bool(value.get("enabled")),
        int(value.get("size") or size),
        float(value.get("timeout") or timeout),
    )


def parse_canary(value: Any) -> CanarySetting | None:
    """The stored `canary` value, or None when there is no canary (or it sends nothing)."""
    if not isinstance(value, dict) or not value.get("model"):
        return None
    try:
        percent = float(value.get("percent") or 0.0)
    except (TypeError, ValueError):
        return None
    if percent <= 0:
        return None
    return CanarySetting(
        str(value["model"]),
        min(percent, 100.0),
        value.get("baseline"),
        value.get("run_id"),
    )


def forced_breakers(
    values: dict[str, Any], now: float | None = None
) -> dict[str, tuple[str, float | None]]:
    """deployment -> (forced state, its end or None) from every `breaker:<deployment>`
    setting; with `now`, those whose end has passed are left out."""
    forced = {}
    for key, value in values.items():
        if key.startswith(BREAKER_PREFIX) and isinstance(value, dict):
            state = value.get("state")
            until = value.get("until")
            until = float(until) if isinstance(until, (int, float)) else None
            if state in BREAKER_STATES and (now is None or until is None or now < until):
                forced[key[len(BREAKER_PREFIX) :]] = (str(state), until)
    return forced


def _commit(
    conn: Connection,
    *,
    environment: str,
    key: str,
    value: Any,
    actor: str,
    action: str,
    details: dict[str, Any],
) -> Any:
    with conn.write():
        previous = (
            settings.clear(conn, environment, key)
            if value is None
            else settings.put(conn, environment, key, value, actor=actor)
        )
        version = bump_control_version(conn, environment)
        audit.append(
            conn,
            actor=actor,
            action=action,
            target=f"{environment}/{key}",
            details={**details, "previous": previous, "control_version": version},
        )
    return previous


def record_traffic(
    conn: Connection,
    *,
    environment: str,
    weights: dict[str, float],
    previous: dict[str, float],
    mode: str,
    step: str | None,
    actor: str,
    source: str,
    reason: str,
    operation_id: str,
    incident_id: int | None = None,
) -> None:
    """One line of `traffic_history`; call inside the change's transaction."""
    conn.execute(
        "INSERT INTO traffic_history (ts, environment, weights, previous, mode, step, actor, "
        "reason, source, operation_id, incident_id) VALUES (:ts, :env, :weights, :previous, "
        ":mode, :step, :actor, :reason, :source, :op, :incident)",
        {
            "ts": time.time(),
            "env": environment,
            "weights": json.dumps(weights, sort_keys=True),
            "previous": json.dumps(previous, sort_keys=True),
            "mode": mode,
            "step": step,
            "actor": actor,
            "reason": reason,
            "source": source,
            "op": operation_id,
            "incident": incident_id,
        },
    )


def set_traffic(
    conn: Connection,
    *,
    environment: str,
    weights: dict[str, float],
    current: dict[str, float],
    transition: float = 0.0,
    actor: str,
    source: str = "manual",
    reason: str = "",
    mode: str = "set",
    step: str | None = None,
    operation_id: str | None = None,
    incident_id: int | None = None,
) -> TrafficSetting:
    """Set the environment's provider weights, optionally over `transition` seconds."""
    if not weights or sum(weights.values()) <= 0:
        raise UsageError("traffic weights add up to zero: at least one provider needs weight")
    setting = TrafficSetting(
        {k: float(v) for k, v in weights.items()},
        time.time(),
        float(transition),
        dict(current) if transition > 0 else None,
    )
    operation = operation_id or uuid.uuid4().hex[:12]
    with conn.write():
        _commit(
            conn,
            environment=environment,
            key=TRAFFIC,
            value=setting.to_json(),
            actor=actor,
            action="traffic.set",
            details={
                "weights": setting.weights,
                "from": current,
                "transition_s": transition,
                "mode": mode,
                "step": step,
                "reason": reason,
                "source": source,
                "operation_id": operation,
            },
        )
        record_traffic(
            conn,
            environment=environment,
            weights=setting.weights,
            previous=current,
            mode=mode,
            step=step,
            actor=actor,
            source=source,
            reason=reason or mode,
            operation_id=operation,
            incident_id=incident_id,
        )
    return setting


def reset_traffic(
    conn: Connection, *, environment: str, actor: str, restored: dict[str, float]
) -> Any:
    """Drop the live weights: the environment's config weights (`restored`) are in force
    again."""
    with conn.write():
        previous = _commit(
            conn,
            environment=environment,
            key=TRAFFIC,
            value=None,
            actor=actor,
            action="traffic.reset",
            details={"reason": "back to the config's weights"},
        )
        weights = previous.get("weights", {}) if isinstance(previous, dict) else {}
        record_traffic(
            conn,
            environment=environment,
            weights=restored,
            previous=weights,
            mode="reset",
            step=None,
            actor=actor,
            source="manual",
            reason="config set --traffic-distribution reset",
            operation_id=uuid.uuid4().hex[:12],
        )
    return previous


def set_cache_mode(
    conn: Connection, *, environment: str, mode: str, serve_stale: bool, actor: str
) -> CacheMode:
    """Switch the cache between normal and emergency (stale serving) mode."""
    if mode not in CACHE_MODES:
        raise UsageError(f"cache mode {mode!r} is not one of {', '.join(CACHE_MODES)}")
    value = CacheMode(mode, serve_stale)
    _commit(
        conn,
        environment=environment,
        key=CACHE,
        value={"mode": mode, "serve_stale": serve_stale},
        actor=actor,
        action="cache.mode",
        details={"mode": mode, "serve_stale": serve_stale},
    )
    return value


def set_queue(
    conn: Connection,
    *,
    environment: str,
    enabled: bool,
    size: int,
    timeout: float,
    actor: str,
) -> QueueSetting:
    """Turn request queuing on or off, with its size and timeout."""
    if size <= 0:
        raise UsageError(f"--queue-size {size}: the queue needs at least one slot")
    if timeout <= 0:
        raise UsageError(f"--queue-timeout {timeout:g}: the timeout must be above zero")
    value = QueueSetting(enabled, size, timeout)
    _commit(
        conn,
        environment=environment,
        key=QUEUE,
        value={"enabled": enabled, "size": size, "timeout": timeout},
        actor=actor,
        action="queue.set",
        details={"enabled": enabled, "size": size, "timeout_s": timeout},
    )
    return value


def force_breaker(
    conn: Connection,
    *,
    environment: str,
    deployment: str,
    state: str | None,
    reason: str,
    actor: str,
    until: float | None = None,
) -> Any:
    """Force a deployment's breaker open or closed, until `until` if given (every gateway
    returns it to automatic then); `state=None` returns it to automatic now."""
    if state is not None and state not in BREAKER_STATES:
        raise UsageError(f"breaker state {state!r} is not one of open, closed (or auto)")
    value = (
        None
        if state is None
        else {
            "state": state,
            "reason": reason,
            "actor": actor,
            "since": time.time(),
            **({"until": until} if until is not None else {}),
        }
    )
    return _commit(
        conn,
        environment=environment,
        key=BREAKER_PREFIX + deployment,
        value=value,
        actor=actor,
        action="breaker.force" if state else "breaker.clear",
        details={
            "deployment": deployment,
            "state": state or "auto",
            "reason": reason,
            "until": until,
        },
    )
