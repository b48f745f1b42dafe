"""The live sections of `status`: traffic in force, provider health, quota use, failover state,
emergency mode, alerts, incidents and the last gate runs, per environment.

Everything is read from the store (roll-ups, heartbeats, runtime settings, remediations) and
the config snapshot as plain data: no pydantic, SQLAlchemy or HTTP, so `status` stays fast.
"""

from __future__ import annotations

from typing import Any

from quality_gates.config import ConfigSnapshot
from quality_gates.store import settings
from quality_gates.store.db import Connection

WINDOWS = {"5m": 300.0, "1h": 3600.0}
QUOTA_ALERT = 0.8  # the runbook's utilisation target
RECENT_MOVES = 5


def live_weights(value: Any, now: float) -> dict[str, float] | None:
    """The `traffic` runtime setting's weights at `now` (linear during a transition), or None.

    The same reading as `gateway.runtime.TrafficSetting.at` (a test holds them equal),
    without importing the gateway's runtime module on `status`'s fast path.
    """
    if not isinstance(value, dict) or not isinstance(value.get("weights"), dict):
        return None
    target = {str(k): float(v) for k, v in value["weights"].items()}
    before = value.get("from")
    start, duration = float(value.get("start") or 0.0), float(value.get("duration") or 0.0)
    if not isinstance(before, dict) or duration <= 0 or now >= start + duration:
        return target
    share = max(0.0, (now - start) / duration)
    previous = {str(k): float(v) for k, v in before.items()}
    return {
        n: previous.get(n, 0.0) + (target.get(n, 0.0) - previous.get(n, 0.0)) * share
        for n in set(target) | set(previous)
    }


def traffic_in_force(
    runtime: dict[str, Any], env_config: dict[str, Any], providers: list[str], now: float
) -> dict[str, float]:
    """Provider weights now, as `gateway._routing.effective_weights` reads them: the live
    setting (mid-transition if one runs), the config's, or every provider at 100 (each keeps
    all of its own models' requests). Providers at 0 are left out."""
    live = live_weights(runtime.get("traffic"), now)
    if live is not None:
        weights = live
    else:
        weights = {str(k): float(v) for k, v in (env_config.get("traffic") or {}).items()}
        if not weights:
            weights = dict.fromkeys(providers, 100.0)
    return {k: round(v, 2) for k, v in weights.items() if v > 0}


def _provider_windows(conn: Connection, environment: str, now: float) -> dict[str, dict[str, Any]]:
    from quality_gates.signals._windows import Window, group, read_window

    out: dict[str, dict[str, Any]] = {}
    for label, seconds in WINDOWS.items():
        data = read_window(conn, Window.last(seconds, now), environment=environment)
        for key, agg in group(data.attempts, ["provider"]).items():
            provider = dict(key)["provider"]
            entry = out.setdefault(provider, {})
            entry[label] = {
                "calls": round(agg.count),
                "availability": 1.0 - agg.availability_errors / agg.count if agg.count else None,
                "error_rate": agg.errors / agg.count if agg.count else None,
                "p95_ms": agg.latency.quantile(0.95),
            }
    return out


def provider_health(
    conn: Connection, config: ConfigSnapshot, environment: str, gateway: dict[str, Any], now: float
) -> list[dict[str, Any]]:
    """Per provider the environment uses: breakers (worst a live gateway reports, forced
    states), availability, P95 and error rate over 5 minutes and an hour."""
    windows = _provider_windows(conn, environment, now)
    breakers = gateway.get("breakers", [])
    forced = gateway.get("runtime", {}).get("forced_breakers", {})
    out = []
    for name in sorted(set(_env_providers(config, environment)) | set(windows)):
        mine = [b for b in breakers if str(b["deployment"]).startswith(f"{name}/")]
        states = {b["state"] for b in mine}
        state = "open" if "open" in states else ("half_open" if "half_open" in states else None)
        state = state or ("closed" if mine else "unknown")
        forced_here = {d: v.get("state") for d, v in forced.items() if d.startswith(f"{name}/")}
        if "open" in forced_here.values():
            state = "open"
        out.append(
            {
                "provider": name,
                "breaker": state,
                "forced": forced_here,
                "windows": {
                    label: windows.get(name, {}).get(label) or {"calls": 0} for label in WINDOWS
                },
            }
        )
    return out


def _env_providers(config: ConfigSnapshot, environment: str) -> list[str]:
    env = config.environment(environment) or {}
    models = {m.get("id"): m.get("provider") for m in config.data.get("models", [])}
    used = set(env.get("aliases", {}).values())
    for chain in env.get("failover_chains", []):
        used.update(v for k, v in chain.items() if k in ("primary", "secondary", "tertiary") and v)
    names = {models[m] for m in used if models.get(m)}
    return sorted(names | set(env.get("traffic", {}) or {}))


def quota_use(
    conn: Connection, config: ConfigSnapshot, environment: str, now: float
) -> list[dict[str, Any]]:
    """Per provider with a quota: requests and tokens in the last minute and requests in the
    last day against rpm, tpm and rpd (the highest share decides)."""
    from quality_gates.signals._windows import Window, group, read_window

    minute = read_window(conn, Window.last(60.0, now), environment=environment, histograms=False)
    day = read_window(conn, Window.last(86400.0, now), environment=environment, histograms=False)
    calls = {dict(k)["provider"]: a.count for k, a in group(minute.attempts, ["provider"]).items()}
    tokens = {
        dict(k)["provider"]: a.input_tokens + a.output_tokens
        for k, a in group(minute.requests, ["provider"]).items()
    }
    daily = {dict(k)["provider"]: a.count for k, a in group(day.attempts, ["provider"]).items()}
    out = []
    used_here = set(_env_providers(config, environment))
    for provider in config.data.get("providers", []):
        quotas = provider.get("quotas") or {}
        name = provider.get("name")
        if name not in used_here or not any(quotas.get(k) for k in ("rpm", "tpm", "rpd")):
            continue
        used = {
            "rpm": calls.get(name, 0.0),
            "tpm": tokens.get(name, 0.0),
            "rpd": daily.get(name, 0.0),
        }
        shares = {k: used[k] / quotas[k] for k in used if quotas.get(k)}
        worst = max(shares.values()) if shares else 0.0
        out.append(
            {
                "provider": name,
                "used": {k: round(v) for k, v in used.items()},
                "quota": {k: quotas.get(k) for k in ("rpm", "tpm", "rpd")},
                "share": {k: round(v, 4) for k, v in shares.items()},
                "highest": round(worst, 4),
                "over_target": worst >= QUOTA_ALERT,
            }
        )
    return out


def failover_state(
    conn: Connection, environment: str, gateway: dict[str, Any], chains: list[list[str]]
) -> dict[str, Any]:
    """Chains, forced breakers, automatic failovers in progress and the last traffic moves."""
    from quality_gates.remediation import _remedy_store as remedies

    active = remedies.find(
        conn, environment=environment, action="failover", states=remedies.ACTIVE_FAILOVER
    )
    return {
        "chains": chains,
        "forced_breakers": gateway.get("runtime", {}).get("forced_breakers", {}),
        "automatic": [
            {
                "provider": r.target,
                "state": r.state,
                "to": r.details.get("to"),
                "step": r.step,
                "since": r.started_at,
                "incident": r.incident_id,
                "healthy_since": r.details.get("healthy_since"),
            }
            for r in active
        ],
        "recent_moves": gateway.get("traffic_moves", [])[:RECENT_MOVES],
    }


def recent_remediations(conn: Connection, environment: str, limit: int = 5) -> list[dict[str, Any]]:
    """The environment's last remediations (what the watch plane did or weighed)."""
    from quality_gates.remediation import _remedy_store as remedies

    return [
        {
            "action": r.action,
            "target": r.target,
            "state": r.state,
            "summary": r.summary,
            "at": r.updated_at,
            "incident": r.incident_id,
        }
        for r in remedies.find(conn, environment=environment, limit=limit)
    ]


def environment_live(
    conn: Connection,
    config: ConfigSnapshot,
    environment: str,
    *,
    aliases: dict[str, str],
    chains: list[list[str]],
    model_id: str | None,
    now: float,
    watch: dict[str, Any],
) -> dict[str, Any]:
    """Every live section of one environment, JSON-ready (`watch`: `watch_status` of all
    environments, read once)."""
    from quality_gates.gates.runs import gate_status
    from quality_gates.gateway.status import gateway_status

    gateway = gateway_status(conn, environment).get(environment, {})
    runtime = settings.get_all(conn, environment)
    providers = [str(p.get("name")) for p in config.data.get("providers", [])]
    emergency = runtime.get("emergency") if isinstance(runtime.get("emergency"), dict) else None
    return {
        "traffic_in_force": traffic_in_force(
            runtime, config.environment(environment) or {}, providers, now
        ),
        "providers": provider_health(conn, config, environment, gateway, now),
        "quotas": quota_use(conn, config, environment, now),
        "failover": failover_state(conn, environment, gateway, chains),
        "remediations": recent_remediations(conn, environment),
        "emergency": emergency,
        "canary": runtime.get("canary"),
        "alerts": [a for a in watch["alerts"] if a["labels"].get("environment") == environment],
        "incidents": [i for i in watch["incidents"] if i["environment"] == environment],
        "gateways": gateway.get("gateways", []),
        "gates": gate_status(conn, environment=environment, model_id=model_id, limit=5),
    }


def watch_summary(conn: Connection, config: ConfigSnapshot, now: float) -> dict[str, Any]:
    """The watch plane's view of all environments (alerts, incidents, evaluator, outbox)."""
    from quality_gates.watch.status import watch_status

    return watch_status(conn, config, now=now)


def routine_checks(conn: Connection, config: ConfigSnapshot) -> list[dict[str, Any]]:
    """Each routine of the config with its last run (`failing` when that run failed)."""
    from quality_gates.routines.jobs import latest_by_job, run_view

    routines = config.data.get("routines")
    if isinstance(routines, dict):
        written = routines.get("jobs") or []
        specs = [j for j in written if isinstance(j, dict) and j.get("name")]
    else:  # a snapshot synced before routines existed: the jobs that ran
        names = conn.execute("SELECT DISTINCT job FROM job_runs ORDER BY job")
        specs = [{"name": r["job"]} for r in names]
    latest = latest_by_job(conn, [str(j["name"]) for j in specs])
    out = []
    for job in specs:
        row = latest.get(str(job["name"]))
        last = run_view(row) if row is not None else None
        out.append(
            {
                "name": job["name"],
                "cron": job.get("cron"),
                "timezone": job.get("timezone", "UTC"),
                "command": job.get("command"),
                "enabled": bool(job.get("enabled", True)),
                "last_run": last,
                "failing": last is not None and last["status"] in ("failed", "error"),
            }
        )
    return out
