"""`status`: what the system knows now, at a glance or as JSON."""

from __future__ import annotations

from typing import Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import environment_option, json_option


def register(group: click.Group) -> None:
    """Add `status`."""
    group.add_command(status)


@click.command()
@environment_option(help_text="Only this environment.")
@click.option(
    "--model-id",
    metavar="MODEL",
    help="Only what concerns this model (id or alias, e.g. current-model).",
)
@click.option(
    "--provider",
    metavar="NAME",
    help="Probe this provider live (a one-token call) and show its health.",
)
@click.option(
    "--health-only",
    is_flag=True,
    help="With --provider: print only HEALTHY or UNHEALTHY (exit 0 or 1).",
)
@click.option(
    "--provider-health",
    is_flag=True,
    help="Only provider health: breakers, availability, P95 and errors over 5 m and 1 h.",
)
@click.option("--compact", is_flag=True, help="With --provider-health: one line per provider.")
@click.option(
    "--quota-check",
    is_flag=True,
    help="Only quota use against rpm/tpm/rpd (exit 1 when one is at 80% or more).",
)
@click.option(
    "--failover-status",
    is_flag=True,
    help="Only failover state: chains, weights, forced breakers, automatic failovers, moves.",
)
@click.option(
    "--full",
    is_flag=True,
    help="After the summary: aliases, chains, thresholds, providers, routines (everything).",
)
@json_option
@click.pass_context
def status(
    ctx: click.Context,
    environment: str | None,
    model_id: str | None,
    provider: str | None,
    health_only: bool,
    provider_health: bool,
    compact: bool,
    quota_check: bool,
    failover_status: bool,
    full: bool,
    json_output: bool,
) -> None:
    """The system at a glance: per environment the aliases and traffic weights, provider
    health, active alerts, open incidents against their response target, quota use,
    failover state, emergency mode, the last gate runs and the routine checks' last runs
    (failed ones in red)."""
    from quality_gates.cli._output import emit_json
    from quality_gates.registry import check_environment, resolve_model
    from quality_gates.status import collect

    state = _context.state(ctx)
    if health_only:
        _health_only(ctx, provider, _context.wants_json(ctx, json_output))
        return
    conn = state.conn()
    snapshot = state.snapshot()
    if environment:
        check_environment(conn, environment, snapshot)
    resolved = None
    if model_id:
        resolved = resolve_model(conn, environment or "production", model_id)
    report = collect(
        conn,
        snapshot,
        environment=environment,
        model_id=resolved.model_id if resolved else None,
        store_display=state.store_url().display,
    )
    _add_routes(conn, snapshot, report)
    if resolved and resolved.alias:
        report["model_ref"] = {
            "given": model_id,
            "alias": resolved.alias,
            "model": resolved.model_id,
        }
    if provider:
        report["provider_health"] = _probe(ctx, provider)
    quota_breach = any(
        q["over_target"] for env in report["environments"] for q in env.get("quotas", [])
    )
    if _context.wants_json(ctx, json_output):
        if provider_health or quota_check or failover_status:
            wanted = {
                "providers": provider_health,
                "quotas": quota_check,
                "failover": failover_status,
                "traffic_in_force": failover_status,
                "routes": failover_status,
            }
            report["environments"] = [
                {"name": e["name"], **{k: e.get(k) for k, on in wanted.items() if on}}
                for e in report["environments"]
            ]
        emit_json(report)
    else:
        from quality_gates.cli import _status_render as render

        if provider_health:
            render.provider_health(report, compact=compact)
        if quota_check:
            render.quotas(report)
        if failover_status:
            render.failover(report)
        if not (provider_health or quota_check or failover_status):
            render.summary(report)
            if full or environment or model_id:
                from quality_gates.cli._output import console

                console().print()
                _render(report)
                render.live(report)
                render.routines(report)
            else:
                from quality_gates.cli._output import info

                info("details: `quality-gates status --full` (aliases, chains, providers, ...)")
        if provider:
            _render_health(report["provider_health"])
    if quota_check and quota_breach:
        from quality_gates.errors import EXIT_FAILED

        ctx.exit(EXIT_FAILED)


def _add_routes(conn: Any, snapshot: Any, report: dict[str, Any]) -> None:
    """Each environment's alias routes as the gateway computes them (`route_view`, from the
    config snapshot: no pydantic on `status`'s path), and why an alias is answered by its
    chain, if it is."""
    from quality_gates.gateway.route_view import alias_routes

    for env in report["environments"]:
        if snapshot.environment(env["name"]) is not None:
            env["routes"] = [r.to_json() for r in alias_routes(conn, snapshot, env["name"])]


def _probe(ctx: click.Context, name: str) -> dict[str, Any]:
    """A live probe of provider `name` as JSON-ready data (CredentialMissing: exit 2)."""
    import asyncio

    from quality_gates._suggest import did_you_mean
    from quality_gates.errors import UsageError
    from quality_gates.providers import probe_provider, probe_to_dict

    config = _context.state(ctx).loaded().config
    target = config.provider(name)
    if target is None:
        names = [p.name for p in config.providers]
        raise UsageError(
            f"unknown provider {name!r}{did_you_mean(name, names)} (known: {', '.join(names)})"
        )
    return probe_to_dict(asyncio.run(probe_provider(target, config.models)), config)


def _health_only(ctx: click.Context, provider: str | None, as_json: bool) -> None:
    from quality_gates.cli._output import console, emit_json, info
    from quality_gates.errors import EXIT_FAILED, UsageError

    if not provider:
        raise UsageError("--health-only needs --provider NAME")
    health = _probe(ctx, provider)
    if as_json:
        emit_json(health)
    else:
        console().print(health["status"], markup=False)
        info(_health_line(health))
    if not health["healthy"]:
        ctx.exit(EXIT_FAILED)


def _health_line(health: dict[str, Any]) -> str:
    line = f"{health['provider']} ({health['protocol']}): {health['latency_ms']:.0f} ms"
    if health["error_class"]:
        line += f", {health['error_class']}: {health['detail']}"
    return line


def _render_health(health: dict[str, Any]) -> None:
    from rich.markup import escape

    from quality_gates.cli._output import console

    colour = "green" if health["healthy"] else "red"
    line = escape(_health_line(health))
    console().print(f"\n[{colour}]{health['status']}[/{colour}] {line}")


def _thresholds_line(t: dict[str, Any]) -> str:
    return (
        f"P95 < {t['p95_latency_ms']:.0f} ms · > {t['throughput_rps']:g} req/s · "
        f"errors < {t['error_rate'] * 100:g}% · accuracy > {t['accuracy'] * 100:g}% · "
        f"satisfaction > {t['satisfaction']:g} · toxicity < {t['toxicity_rate'] * 100:g}% · "
        f"availability > {t['availability'] * 100:g}% · cache hit > "
        f"{t['cache_hit_rate'] * 100:g}%"
    )


def _when(iso: str | None) -> str:
    from datetime import datetime

    if not iso:
        return "-"
    return (
        datetime.fromisoformat(iso.replace("Z", "+00:00"))
        .astimezone()
        .strftime("%Y-%m-%d %H:%M:%S")
    )


def _render(snapshot: dict[str, Any]) -> None:
    from quality_gates.cli._output import console, table

    out = console()
    out.print(
        f"[bold]{snapshot['project']}[/bold]  config {snapshot['config']['path']}  "
        f"store {snapshot['store']['url']} (schema {snapshot['store']['schema']})"
    )
    if snapshot.get("model_ref"):
        ref = snapshot["model_ref"]
        out.print(f"model {ref['given']} -> alias {ref['alias']} -> {ref['model']}")
    for line in snapshot["drift"]:
        out.print(f"[yellow]drift: {line} (the store wins)[/yellow]")
    for env in snapshot["environments"]:
        out.print()
        out.print(
            f"[bold cyan]{env['name']}[/bold cyan]  routing {env['routing'] or '-'}  "
            f"control v{env['control_version']}"
        )
        if env["aliases"]:
            view = table("alias", "model", "provider", "since", "by")
            for a in env["aliases"]:
                view.add_row(
                    a["alias"],
                    a["model"],
                    a["provider"] or "?",
                    _when(a["updated_at"]),
                    a["updated_by"],
                )
            out.print(view)
        else:
            out.print("  no aliases")
        for chain in env["failover_chains"]:
            out.print(f"  failover: {' -> '.join(chain)}")
        if env["traffic"]:
            weights = ", ".join(f"{k} {v:g}" for k, v in env["traffic"].items())
            out.print(f"  traffic: {weights}")
        if env["thresholds"]:
            out.print(f"  thresholds: {_thresholds_line(env['thresholds'])}")
        for move in env["recent_moves"]:
            out.print(
                f"  {_when(move['time'])} {move['operation']:<8} {move['alias']}: "
                f"{move['from'] or '-'} -> {move['to']} ({move['actor']}, {move['source']}: "
                f"{move['reason']})",
                markup=False,
            )
