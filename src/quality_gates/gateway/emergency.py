"""The emergency procedure as runtime settings: degraded service, a controlled stop, and back.

The runtime setting `emergency` (per environment) is what the gateway, `status` and the
status page read:

    {"mode": "degraded" | "shutdown", "reason": str, "since": <epoch s>, "actor": str,
     "incident_id": int | null, "targets": {"p95_latency_ms", "accuracy", "availability"},
     "retry_after": <s>, "previous": {"cache": ..., "queue": ...}}

- **degraded** (`emergency --mode multi-provider-outage --enable-degraded-service`): the
  cache answers stale entries when every deployment failed, requests over the limits wait
  in a bounded queue, answers carry `x-qg-degraded: 1`, and the relaxed targets of
  `emergency.degraded` apply to what `monitor` and `status` judge.
- **shutdown** (`emergency --mode shutdown --reason R`): new requests get 503 with the reason
  and a retry-after; requests already in flight finish and their telemetry is written, so
  nothing is lost.
- **off** (`emergency --off`): the cache mode and queue from before come back.

Each switch is one transaction (settings, control version, audit entry) and goes on the
environment's open incident's timeline; running gateways apply it within a second.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from quality_gates.errors import RegistryError, UsageError
from quality_gates.gateway.runtime import CACHE, QUEUE, _commit
from quality_gates.store import settings
from quality_gates.store.db import Connection

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

EMERGENCY = "emergency"
MODES = ("degraded", "shutdown")
RUNBOOK_MODES = {"multi-provider-outage": "degraded", "shutdown": "shutdown"}


def current(conn: Connection, environment: str) -> dict[str, Any] | None:
    """The emergency setting in force, or None."""
    value = settings.get(conn, environment, EMERGENCY)
    return value if isinstance(value, dict) and value.get("mode") in MODES else None


def switch_on(
    conn: Connection,
    config: QualityGatesConfig,
    *,
    environment: str,
    mode: str,
    reason: str,
    actor: str,
) -> dict[str, Any]:
    """Enter degraded service or a controlled stop; returns the stored value."""
    from quality_gates.incidents import current_incident, record_event

    if mode not in MODES:
        raise UsageError(f"emergency mode {mode!r} is not one of {', '.join(MODES)}")
    if not reason.strip():
        raise UsageError("an emergency switch needs --reason (it goes into the audit log)")
    now = time.time()
    settings_ = config.emergency
    with conn.write():
        runtime = settings.get_all(conn, environment)
        before = current(conn, environment)
        previous = (
            before.get("previous")
            if before is not None
            else {"cache": runtime.get(CACHE), "queue": runtime.get(QUEUE)}
        )
        incident = current_incident(conn, environment)
        value = {
            "mode": mode,
            "reason": reason,
            "since": now if before is None or before.get("mode") != mode else before["since"],
            "actor": actor,
            "incident_id": incident,
            "targets": settings_.degraded.model_dump() if mode == "degraded" else None,
            "retry_after": settings_.retry_after,
            "previous": previous,
        }
        if mode == "degraded":
            _commit(
                conn,
                environment=environment,
                key=CACHE,
                value={"mode": "emergency", "serve_stale": True},
                actor=actor,
                action="cache.mode",
                details={"mode": "emergency", "serve_stale": True, "via": "emergency"},
            )
            _commit(
                conn,
                environment=environment,
                key=QUEUE,
                value={
                    "enabled": True,
                    "size": settings_.queue_size,
                    "timeout": settings_.queue_timeout,
                },
                actor=actor,
                action="queue.set",
                details={"enabled": True, "via": "emergency"},
            )
        _commit(
            conn,
            environment=environment,
            key=EMERGENCY,
            value=value,
            actor=actor,
            action=f"emergency.{mode}",
            details={"mode": mode, "reason": reason, "incident_id": incident},
        )
        what = (
            "degraded service: stale cache answers, queued requests, relaxed targets"
            if mode == "degraded"
            else f"controlled stop: new requests get 503 (retry after {settings_.retry_after:g} s)"
        )
        record_event(
            conn,
            "emergency",
            f"emergency {mode} in {environment} by {actor}: {what} ({reason})",
            incident_id=incident,
            environment=environment,
            actor=actor,
            details={"mode": mode, "reason": reason},
            public=True,
            now=now,
        )
    return value


def switch_off(conn: Connection, *, environment: str, actor: str, reason: str) -> dict[str, Any]:
    """Leave the emergency mode; the cache mode and queue from before come back."""
    from quality_gates.incidents import current_incident, record_event

    with conn.write():
        before = current(conn, environment)
        if before is None:
            raise RegistryError(f"{environment} is not in an emergency mode; nothing to switch off")
        previous = before.get("previous") or {}
        if before["mode"] == "degraded":
            for key, action in ((CACHE, "cache.mode"), (QUEUE, "queue.set")):
                _commit(
                    conn,
                    environment=environment,
                    key=key,
                    value=previous.get(key),
                    actor=actor,
                    action=action,
                    details={"restored": previous.get(key), "via": "emergency --off"},
                )
        _commit(
            conn,
            environment=environment,
            key=EMERGENCY,
            value=None,
            actor=actor,
            action="emergency.off",
            details={"was": before["mode"], "reason": reason},
        )
        lasted = time.time() - float(before.get("since") or time.time())
        record_event(
            conn,
            "emergency",
            f"emergency {before['mode']} in {environment} switched off by {actor} after "
            f"{lasted:.0f} s" + (f" ({reason})" if reason else ""),
            incident_id=before.get("incident_id") or current_incident(conn, environment),
            environment=environment,
            actor=actor,
            details={"mode": "off", "was": before["mode"]},
            public=True,
        )
    return before
