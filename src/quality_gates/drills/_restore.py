"""What a drill may change in its environment, and putting it back afterwards.

Before the fault: the aliases and the environment's runtime settings (traffic weights,
forced breakers, cache mode, queue, emergency). After the drill: whatever differs goes back
in one audited transaction (`drill.restore`), failovers the drill left open are closed as
superseded, and the drill's incident, if still open, is resolved. A drill leaves no lasting
change besides its record.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quality_gates.store.db import Connection

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig


@dataclass(frozen=True)
class EnvironmentState:
    """An environment's aliases and own runtime settings at one moment."""

    aliases: dict[str, str]
    settings: dict[str, Any]


def capture(conn: Connection, environment: str) -> EnvironmentState:
    """The environment as it is now."""
    from quality_gates.store.registry import list_aliases

    aliases = {a.name: a.model_id for a in list_aliases(conn, environment)}
    rows = conn.execute(
        "SELECT key, value FROM runtime_settings WHERE environment = :env", {"env": environment}
    )
    return EnvironmentState(aliases, {r["key"]: json.loads(r["value"]) for r in rows})


def restore(
    conn: Connection,
    config: QualityGatesConfig,
    environment: str,
    before: EnvironmentState,
    *,
    actor: str,
    run_id: int,
    since: float,
    incident_id: int | None,
) -> list[str]:
    """Put `environment` back as `before`; returns one line per change made."""
    from quality_gates.gateway.runtime import TRAFFIC, TrafficSetting, record_traffic
    from quality_gates.registry import Actor, move_alias
    from quality_gates.remediation import _remedy_store as remedies
    from quality_gates.store import audit
    from quality_gates.store import settings as runtime_settings
    from quality_gates.store.registry import bump_control_version

    changes: list[str] = []
    reason = f"drill #{run_id} over: back to how it was before the drill"
    with conn.write():
        now = capture(conn, environment)
        for name, model in sorted(before.aliases.items()):
            if now.aliases.get(name) != model:
                move_alias(
                    conn,
                    environment=environment,
                    alias=name,
                    model_ref=model,
                    reason=reason,
                    actor=Actor(actor, "drill"),
                    operation="restore",
                )
                changes.append(f"alias {name}: {now.aliases.get(name)} -> {model}")
        moved: dict[str, Any] = {}
        for key in sorted(set(before.settings) | set(now.settings)):
            old, new = before.settings.get(key), now.settings.get(key)
            if old == new:
                continue
            if old is None:
                runtime_settings.clear(conn, environment, key)
            else:
                runtime_settings.put(conn, environment, key, old, actor=actor)
            moved[key] = {"was": new, "restored": old}
            changes.append(f"runtime setting {key}: restored")
            if key == TRAFFIC:
                stamp = time.time()
                weights = TrafficSetting.from_json(old)
                current = TrafficSetting.from_json(new)
                record_traffic(
                    conn,
                    environment=environment,
                    weights=weights.at(stamp) if weights else {},
                    previous=current.at(stamp) if current else {},
                    mode="drill:restore",
                    step=None,
                    actor=actor,
                    source="drill",
                    reason=reason,
                    operation_id=f"drill-{run_id}",
                    incident_id=incident_id,
                )
        if moved:
            version = bump_control_version(conn, environment)
            audit.append(
                conn,
                actor=actor,
                action="drill.restore",
                target=environment,
                details={"run": run_id, "settings": moved, "control_version": version},
            )
        for remedy in remedies.find(
            conn, environment=environment, action="failover", states=remedies.ACTIVE_FAILOVER
        ):
            if remedy.started_at >= since:
                remedies.update(
                    conn,
                    remedy.id,
                    state="superseded",
                    now=time.time(),
                    step=remedy.step,
                    details={**remedy.details, "superseded_by": f"drill #{run_id} restore"},
                    finished=True,
                )
                changes.append(f"failover of {remedy.target}: closed (superseded by the restore)")
    if incident_id is not None:
        from quality_gates import incidents

        row = incidents.get_incident(conn, incident_id)
        if row["state"] != "resolved":
            incidents.resolve(conn, config, incident_id, actor=actor, reason=reason)
            changes.append(f"incident #{incident_id}: resolved")
    if not changes:
        with conn.write():
            audit.append(
                conn,
                actor=actor,
                action="drill.restore",
                target=environment,
                details={"run": run_id, "settings": {}, "note": "nothing to put back"},
            )
    return changes
