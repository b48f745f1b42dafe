"""The live runtime settings behind `config set` flags: traffic distribution, cache mode,
request queuing. They go to the store (not the file), are audited, and reach running
gateways within a second."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from quality_gates.cli import _context

F = TypeVar("F", bound=Callable[..., Any])
RUNTIME_FLAGS = (
    "traffic_distribution",
    "transition_duration",
    "cache_mode",
    "serve_stale",
    "request_queuing",
    "queue_size",
    "queue_timeout",
)


def runtime_options(func: F) -> F:
    """The runtime flags of `config set`."""
    options = [
        click.option(
            "--traffic-distribution",
            metavar="P:W,...|reset",
            help='Live provider weights adding up to 100, e.g. "bedrock:50,google:30,meta:20"; '
            "reset: back to the config's weights.",
        ),
        click.option(
            "--force",
            "force_traffic",
            is_flag=True,
            help="With --traffic-distribution: move even onto a provider that fails its "
            "health check (recorded as forced).",
        ),
        click.option(
            "--transition-duration",
            metavar="DURATION",
            help="Shift weights linearly over this long (bare number: seconds).",
        ),
        click.option(
            "--cache-mode",
            type=click.Choice(["normal", "emergency"]),
            help="emergency: stale answers may be served when every provider fails.",
        ),
        click.option(
            "--serve-stale",
            type=click.BOOL,
            metavar="true|false",
            help="With --cache-mode emergency: serve stale entries (default true).",
        ),
        click.option(
            "--request-queuing",
            type=click.Choice(["enabled", "disabled"]),
            help="Queue requests over the limits instead of refusing them.",
        ),
        click.option(
            "--queue-size",
            type=click.IntRange(1, 1_000_000),
            metavar="N",
            help="Queue length [default: gateway.limits.queue_size].",
        ),
        click.option(
            "--queue-timeout",
            metavar="DURATION",
            help="Longest wait in the queue (bare number: seconds).",
        ),
        click.option(
            "--environment",
            "-e",
            "runtime_environment",
            default="production",
            show_default=True,
            metavar="ENV",
            help="Environment of the runtime flags.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def wanted(values: dict[str, Any]) -> bool:
    """True when any runtime flag was given."""
    return any(values.get(name) is not None for name in RUNTIME_FLAGS)


def _seconds(value: str | None, flag: str) -> float | None:
    from quality_gates.units import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value, bare_unit="s")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def apply(ctx: click.Context, values: dict[str, Any], actor_name: str | None) -> dict[str, Any]:
    """Apply the runtime flags; returns what changed (for output)."""
    from quality_gates.config import parse_traffic
    from quality_gates.errors import UsageError
    from quality_gates.gateway import runtime
    from quality_gates.gateway.failover import current_weights
    from quality_gates.gateway.target_checks import refuse_unhealthy
    from quality_gates.registry import check_environment

    state = _context.state(ctx)
    config = state.loaded().config
    conn = state.conn()
    env = values["runtime_environment"]
    check_environment(conn, env, state.snapshot())
    actor = _context.actor(actor_name).name
    changed: dict[str, Any] = {"environment": env}
    transition = _seconds(values.get("transition_duration"), "--transition-duration")
    if values.get("traffic_distribution") == "reset":
        if transition is not None:
            raise UsageError("--transition-duration does not go with --traffic-distribution reset")
        before = current_weights(conn, config, env)
        after = current_weights(conn, config, env, config_only=True)
        runtime.reset_traffic(conn, environment=env, actor=actor, restored=after)
        changed["traffic"] = {"from": before, "to": after, "transition_s": 0, "reset": True}
        _route_into(changed["traffic"], conn, config, env)
    elif values.get("traffic_distribution") is not None:
        try:
            weights = parse_traffic(values["traffic_distribution"])
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--traffic-distribution") from None
        known = [p.name for p in config.providers]
        for name in weights:
            if name not in known:
                raise UsageError(
                    f"--traffic-distribution names unknown provider {name!r}",
                    hint=f"known: {', '.join(known)}",
                )
        total = sum(weights.values())
        if abs(total - 100.0) > 1e-6:
            raise click.BadParameter(
                f"the weights add up to {total:g}, not 100 (nothing is rescaled silently)",
                param_hint="--traffic-distribution",
            )
        reason = "config set --traffic-distribution"
        checks = _check_targets(conn, config, env, [p for p, w in weights.items() if w > 0])
        forced = refuse_unhealthy(
            "this traffic change", checks, force=bool(values.get("force_traffic"))
        )
        if forced:
            reason += f" [{forced}]"
        before = current_weights(conn, config, env)
        runtime.set_traffic(
            conn,
            environment=env,
            weights=weights,
            current=before,
            transition=transition or 0.0,
            actor=actor,
            mode="set",
            reason=reason,
        )
        changed["traffic"] = {
            "from": before,
            "to": weights,
            "transition_s": transition or 0,
            "checks": [c.to_json() for c in checks],
            "forced": bool(forced),
        }
        _route_into(changed["traffic"], conn, config, env)
    elif transition is not None:
        raise UsageError("--transition-duration goes with --traffic-distribution")
    if values.get("cache_mode") is not None:
        serve_stale = values.get("serve_stale")
        mode = values["cache_mode"]
        stale = (mode == "emergency") if serve_stale is None else bool(serve_stale)
        runtime.set_cache_mode(conn, environment=env, mode=mode, serve_stale=stale, actor=actor)
        changed["cache"] = {"mode": mode, "serve_stale": stale}
    elif values.get("serve_stale") is not None:
        raise UsageError("--serve-stale goes with --cache-mode")
    queue_flags = [values.get(n) for n in ("request_queuing", "queue_size", "queue_timeout")]
    if any(v is not None for v in queue_flags):
        limits = config.gateway.limits
        now = runtime.parse_queue(
            runtime_settings_value(conn, env, runtime.QUEUE),
            size=limits.queue_size,
            timeout=limits.queue_timeout,
        )
        enabled = (
            now.enabled
            if values.get("request_queuing") is None
            else (values["request_queuing"] == "enabled")
        )
        size = values.get("queue_size") or now.size
        timeout = _seconds(values.get("queue_timeout"), "--queue-timeout") or now.timeout
        runtime.set_queue(
            conn, environment=env, enabled=enabled, size=size, timeout=timeout, actor=actor
        )
        changed["queue"] = {"enabled": enabled, "size": size, "timeout_s": timeout}
    return changed


def _route_into(traffic: dict[str, Any], conn: Any, config: Any, environment: str) -> None:
    """Where every alias's requests go with the new weights (the gateway's own routing), why
    when an alias's model does not answer them, and a note when the weights move none."""
    from quality_gates.gateway.route_view import alias_routes

    routes = alias_routes(conn, config, environment)
    traffic["routes"] = [r.describe() for r in routes]
    traffic["warnings"] = [w for w in (r.warning() for r in routes) if w]
    if routes and not traffic["warnings"] and not traffic.get("reset"):
        traffic["note"] = (
            "these weights move no alias's requests: every alias's model keeps answering on "
            "its own provider. Weights drain a provider lowered below its reference "
            "(failover) and choose among a model's own deployments; they never pick another "
            "model than the alias names"
        )


def _check_targets(conn: Any, config: Any, environment: str, providers: list[str]) -> list[Any]:
    from quality_gates.gateway.failover import live_probe
    from quality_gates.gateway.target_checks import check_provider

    probe = live_probe(config)
    return [check_provider(conn, config, environment, p, probe=probe) for p in providers]


def runtime_settings_value(conn: Any, environment: str, key: str) -> Any:
    """One stored runtime setting."""
    from quality_gates.store import settings

    return settings.get(conn, environment, key)


def render(changed: dict[str, Any]) -> list[str]:
    """One line per change."""
    from quality_gates.gateway._routing import describe_weights

    env = changed["environment"]
    lines = []
    if "traffic" in changed:
        t = changed["traffic"]
        over = f" over {t['transition_s']:g} s" if t["transition_s"] else ""
        lines.append(
            f"{env} traffic: {describe_weights(t['from'])} -> "
            f"{describe_weights(t['to'])}{over} (live within 1 s)"
            + (" : back to the config's weights" if t.get("reset") else "")
        )
        for check in t.get("checks", []):
            lines.append(
                f"  target check {check['provider']}: {check['probes_ok']}/{check['probes']} "
                f"probes passed, {check['errors']}/{check['attempts']} recent calls failed"
                + (" (FORCED past: " + "; ".join(check["problems"]) + ")" if t.get("forced")
                   and check["problems"] else "")
            )  # fmt: skip
        for route in t.get("routes", []):
            lines.append(f"  route: {route}")
        for warning in t.get("warnings", []):
            lines.append(f"  warning: {warning}")
        if t.get("note"):
            lines.append(f"  note: {t['note']}")
    if "cache" in changed:
        c = changed["cache"]
        lines.append(f"{env} cache: {c['mode']}, serve stale {'on' if c['serve_stale'] else 'off'}")
    if "queue" in changed:
        q = changed["queue"]
        lines.append(
            f"{env} request queuing {'enabled' if q['enabled'] else 'disabled'}: "
            f"size {q['size']}, timeout {q['timeout_s']:g} s"
        )
    return lines
