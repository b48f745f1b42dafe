"""The operator dashboard's data: everything an on-call engineer needs at once, JSON-ready.

Built from the planes' own status functions (gateway, watch, gates, registry) plus window
metrics per provider and model; `dashboard_view` is what `/` renders and `/dashboard.json`
returns. Unlike the public page it shows everything: model ids, breakers, internal notes,
actors, reasons.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from quality_gates.alerts import silences
from quality_gates.config import ConfigSnapshot, QualityGatesConfig
from quality_gates.gates.runs import gate_status
from quality_gates.gateway.failover import current_weights
from quality_gates.gateway.keys import list_keys
from quality_gates.gateway.route_view import AliasRoute, alias_routes
from quality_gates.gateway.status import gateway_status
from quality_gates.incidents import timeline
from quality_gates.signals._windows import Aggregate, Window, group, read_window
from quality_gates.store import audit
from quality_gates.store import settings as runtime_settings
from quality_gates.store.db import Connection
from quality_gates.store.registry import AliasRow, list_aliases
from quality_gates.watch.status import watch_status
from quality_gates.web.components import LABELS, components, emergency_setting
from quality_gates.web.public import EMERGENCY_KEY, iso

WINDOWS = (("1m", 60.0), ("5m", 300.0), ("1h", 3600.0))
RECENT_AUDIT = 15
TIMELINE_EVENTS = 30


def _rate(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _series(agg: Aggregate, seconds: float) -> dict[str, Any]:
    cacheable = agg.cache_hits + agg.cache_stale + agg.cache_misses
    return {
        "calls": round(agg.count, 1),
        "per_second": agg.count / seconds,
        "availability": (1.0 - agg.availability_errors / agg.count) if agg.count > 0 else None,
        "error_rate": _rate(agg.errors, agg.count),
        "p50_ms": agg.latency.quantile(0.5),
        "p95_ms": agg.latency.quantile(0.95),
        "ttft_p95_ms": agg.ttft.quantile(0.95),
        "cost_per_minute": agg.cost / (seconds / 60.0),
        "cache_hit_rate": _rate(agg.cache_hits, cacheable),
    }


def live_metrics(conn: Connection, environment: str, now: float) -> dict[str, Any]:
    """Upstream calls per provider and model, client requests per alias and model, over
    the last minute, 5 minutes and hour."""
    providers: dict[tuple[str, str], dict[str, Any]] = {}
    aliases: dict[tuple[str, str], dict[str, Any]] = {}
    for label, seconds in WINDOWS:
        data = read_window(conn, Window.last(seconds, now), environment=environment)
        for key, agg in group(data.attempts, ["provider", "model_id"]).items():
            row = dict(key)
            slot = providers.setdefault((row["provider"], row["model_id"]), dict(row))
            slot[label] = _series(agg, seconds)
        for key, agg in group(data.requests, ["alias", "model_id"]).items():
            row = dict(key)
            slot = aliases.setdefault((row["alias"], row["model_id"]), dict(row))
            slot[label] = _series(agg, seconds)
    return {
        "windows": [label for label, _ in WINDOWS],
        "providers": [providers[k] for k in sorted(providers)],
        "aliases": [aliases[k] for k in sorted(aliases)],
    }


def _incidents(conn: Connection, open_incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for incident in open_incidents:
        events = timeline(conn, int(incident["id"]))
        out.append(
            {
                **incident,
                "timeline": [
                    {
                        "at": iso(e["ts"]),
                        "kind": e["kind"],
                        "actor": e["actor"],
                        "message": e["message"],
                        "public": bool(e["public"]),
                    }
                    for e in events[-TIMELINE_EVENTS:]
                ],
                "events_hidden": max(len(events) - TIMELINE_EVENTS, 0),
            }
        )
    return out


ROLLBACK_ORDER = ("previous-stable", "last-known-good", "backup")


def rollback_targets(aliases: list[AliasRow]) -> list[dict[str, str]]:
    """Aliases current can go back to, previous-stable first, none naming current's model."""
    current = next((a.model_id for a in aliases if a.name == "current"), None)
    wanted = [a for a in aliases if a.name != "current" and a.model_id != current]
    rank = {name: i for i, name in enumerate(ROLLBACK_ORDER)}
    wanted.sort(key=lambda a: rank.get(a.name, len(rank)))
    return [{"name": a.name, "model_id": a.model_id} for a in wanted]


def dashboard_view(
    conn: Connection,
    config: QualityGatesConfig,
    environment: str,
    *,
    admin: bool = False,
    now: float | None = None,
) -> dict[str, Any]:
    """Components with their reasons, live metrics, breakers, gateways, alerts, open
    incidents with timelines, aliases, traffic, silences, gate runs and recent audit entries
    (and the keys, for an admin)."""
    now = time.time() if now is None else now
    runtime = runtime_settings.get_all(conn, environment)
    emergency = emergency_setting(runtime.get(EMERGENCY_KEY))
    found = components(conn, config, environment, emergency=emergency, now=now)
    gateways = gateway_status(conn, environment).get(environment, {})
    targets = ConfigSnapshot(Path(), "", {"incidents": config.incidents.model_dump(mode="json")})
    watch = watch_status(conn, targets, environment=environment, now=now)
    weights = current_weights(conn, config, environment)
    aliases = list_aliases(conn, environment)
    routes = alias_routes(conn, config, environment)
    view: dict[str, Any] = {
        "environment": environment,
        "generated_at": iso(now),
        "components": [
            {"id": c.id, "status": c.status, "label": LABELS[c.status], "reasons": c.reasons}
            for c in found
        ],
        "emergency": emergency,
        "metrics": live_metrics(conn, environment, now),
        "breakers": gateways.get("breakers", []),
        "gateways": gateways.get("gateways", []),
        "runtime": gateways.get("runtime", {}),
        "traffic_moves": gateways.get("traffic_moves", []),
        "evaluator": watch["evaluator"],
        "alerts": watch["alerts"],
        "incidents": _incidents(conn, watch["incidents"]),
        "aliases": [
            {
                "name": a.name,
                "model_id": a.model_id,
                "updated_at": iso(a.updated_at),
                "updated_by": a.updated_by,
            }
            for a in aliases
        ],
        "rollback_targets": rollback_targets(aliases),
        "traffic": {name: round(weight, 2) for name, weight in sorted(weights.items())},
        "routes": [r.to_json() for r in routes],
        "providers": [p.name for p in config.providers],
        "failover_from": _first_provider(routes),
        "models": [m.id for m in config.models],
        "silences": silences.listing(conn, now=now),
        "gate_runs": gate_status(conn, environment=environment, limit=10)["recent"],
        "audit": [
            {
                "seq": e.seq,
                "at": iso(e.ts),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
            }
            for e in audit.entries(conn, limit=RECENT_AUDIT)
        ],
    }
    if admin:
        view["keys"] = [
            {
                "name": k.name,
                "role": k.role,
                "prefix": k.prefix,
                "created_at": iso(k.created_at),
                "created_by": k.created_by,
                "revoked_at": iso(k.revoked_at),
            }
            for k in list_keys(conn)
        ]
    return view


def _first_provider(routes: list[AliasRoute]) -> str | None:
    """The provider answering most of `current`'s requests first: the failover form's
    default source."""
    for route in routes:
        if route.alias == "current" and route.shares:
            top = max(route.shares, key=lambda d: route.shares[d])
            return top.split("/", 1)[0]
    return None
