"""Rendering of `status`'s live sections (the data comes from `quality_gates.status`)."""

from __future__ import annotations

import time
from typing import Any

from quality_gates.cli._output import ago, console, table

BREAKER_COLOUR = {"closed": "green", "half_open": "yellow", "open": "red", "unknown": "dim"}


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _age(seconds: float) -> str:
    from quality_gates.units import format_duration

    return format_duration(max(0.0, seconds))


def provider_health(report: dict[str, Any], *, compact: bool = False) -> None:
    """Breakers and 5 m / 1 h availability, P95 and error rate per provider."""
    out = console()
    for env in report["environments"]:
        rows = env.get("providers", [])
        if compact:
            for p in rows:
                w = p["windows"]["5m"]
                colour = BREAKER_COLOUR.get(p["breaker"], "dim")
                out.print(
                    f"{env['name']}/{p['provider']}: [{colour}]{p['breaker']}[/{colour}] "
                    f"avail {_pct(w.get('availability'))} p95 {_ms(w.get('p95_ms'))} "
                    f"err {_pct(w.get('error_rate'))} ({w.get('calls', 0)} calls, 5m)"
                )
            continue
        view = table(
            "provider",
            "breaker",
            "avail 5m",
            "p95 5m",
            "errors 5m",
            "avail 1h",
            "p95 1h",
            "errors 1h",
            title=f"{env['name']}: provider health",
        )
        for p in rows:
            a, b = p["windows"]["5m"], p["windows"]["1h"]
            colour = BREAKER_COLOUR.get(p["breaker"], "dim")
            forced = " (forced)" if "open" in p["forced"].values() else ""
            view.add_row(
                p["provider"],
                f"[{colour}]{p['breaker']}[/{colour}]{forced}",
                _pct(a.get("availability")),
                _ms(a.get("p95_ms")),
                _pct(a.get("error_rate")),
                _pct(b.get("availability")),
                _ms(b.get("p95_ms")),
                _pct(b.get("error_rate")),
            )
        out.print(view)


def quotas(report: dict[str, Any]) -> None:
    """Quota use per provider."""
    out = console()
    for env in report["environments"]:
        view = table("provider", "rpm", "tpm", "rpd", "highest", title=f"{env['name']}: quota use")
        for q in env.get("quotas", []):
            cells = []
            for key in ("rpm", "tpm", "rpd"):
                quota = q["quota"].get(key)
                cells.append(f"{q['used'][key]:,} / {quota:,}" if quota else "-")
            colour = "red" if q["over_target"] else "green"
            view.add_row(q["provider"], *cells, f"[{colour}]{_pct(q['highest'], 1)}[/{colour}]")
        out.print(view)


def failover(report: dict[str, Any]) -> None:
    """Chains, weights in force, forced breakers, automatic failovers and recent moves."""
    out = console()
    for env in report["environments"]:
        state = env.get("failover") or {}
        weights = ", ".join(f"{k}:{v:g}" for k, v in env.get("traffic_in_force", {}).items())
        out.print(f"[bold cyan]{env['name']}[/bold cyan]  weights: {weights or '-'}")
        _route_lines(env, indent="  route: ")
        for chain in state.get("chains", []):
            out.print(f"  chain: {' -> '.join(chain)}", markup=False)
        for deployment, forced in state.get("forced_breakers", {}).items():
            out.print(_forced_line(deployment, forced), markup=False)
        for auto in state.get("automatic", []):
            out.print(
                f"  automatic failover: {auto['provider']} -> {auto['to']} ({auto['state']}, "
                f"{auto['step']}, for {_age(time.time() - auto['since'])}, incident "
                f"#{auto['incident']})",
                markup=False,
            )
        for move in state.get("recent_moves", []):
            out.print(
                f"  move {move['mode']} {move['step'] or ''}: {move['weights']} ({move['actor']}, "
                f"{move['source']})",
                markup=False,
            )
        if not (state.get("automatic") or state.get("forced_breakers")):
            out.print("  no failover in progress")


def _route_lines(env: dict[str, Any], indent: str) -> None:
    """Every alias's route (the gateway's routing function), then why an alias's model does
    not answer all of its requests."""
    out = console()
    for route in env.get("routes", []):
        out.print(f"{indent}{route['route']}", markup=False)
    for route in env.get("routes", []):
        if route["why"]:
            out.print(f"  {route['why']}", style="yellow", markup=False)


def live(report: dict[str, Any]) -> None:
    """The live sections under the aliases of each environment."""
    out = console()
    watch = report.get("watch") or {}
    evaluator = watch.get("evaluator") or {}
    if evaluator:
        last = evaluator.get("seconds_since")
        out.print(
            f"\nevaluator: {evaluator.get('leader') or 'none running'}"
            + (f", last evaluation {last:g} s ago" if last is not None else ""),
            markup=False,
        )
    for env in report["environments"]:
        if "providers" not in env:
            continue
        out.print(f"\n[bold cyan]{env['name']}[/bold cyan] live")
        weights = ", ".join(f"{k}:{v:g}" for k, v in env["traffic_in_force"].items())
        out.print(f"  weights in force: {weights or '-'}", markup=False)
        _route_lines(env, indent="  route: ")
        if env.get("emergency"):
            e = env["emergency"]
            out.print(
                f"  [bold red]EMERGENCY {e['mode']}[/bold red] since "
                f"{_age(time.time() - float(e['since']))} ({e['reason']}, {e['actor']})"
            )
        for p in env["providers"]:
            w = p["windows"]["5m"]
            colour = BREAKER_COLOUR.get(p["breaker"], "dim")
            out.print(
                f"  {p['provider']:<10} [{colour}]{p['breaker']:<9}[/{colour}] avail "
                f"{_pct(w.get('availability'))} p95 {_ms(w.get('p95_ms'))} err "
                f"{_pct(w.get('error_rate'))} (5m, {w.get('calls', 0)} calls)"
            )
        for alert in env["alerts"]:
            colour = "red" if alert["severity"] == "critical" else "yellow"
            muted = " (muted)" if alert["silenced_by"] or alert["inhibited"] else ""
            out.print(
                f"  [{colour}]{alert['state']} {alert['severity']}[/{colour}] {alert['rule']}: "
                f"{alert['summary']}{muted}",
                highlight=False,
            )
        for incident in env["incidents"]:
            breach = " [red]response target breached[/red]" if incident["response_breached"] else ""
            out.print(
                f"  incident #{incident['id']} {incident['severity']} {incident['state']}: "
                f"{incident['title']} (open {_age(incident['age_seconds'])} of "
                f"{_age(incident['response_target_seconds'])}){breach}"
            )
        for q in env["quotas"]:
            if q["over_target"]:
                out.print(f"  [red]quota[/red] {q['provider']} at {_pct(q['highest'], 1)}")
        for auto in env["failover"]["automatic"]:
            out.print(
                f"  failover: {auto['provider']} -> {auto['to']} ({auto['state']}, {auto['step']})",
                markup=False,
            )
        for action in env["remediations"][:3]:
            # The state says whether it still holds: a failover `restored` is over.
            out.print(
                f"  remediation ({action['state']}, {ago(action['at'])}): {action['summary']}",
                markup=False,
            )
        latest = env["gates"]["latest"]
        if latest:
            gates = ", ".join(
                f"{kind} {run.get('verdict') or run.get('status')}" for kind, run in latest.items()
            )
            out.print(f"  last gates: {gates}", markup=False)


def routines(report: dict[str, Any]) -> None:
    """The routine checks and their last runs; failed ones in red."""
    from rich.markup import escape

    from quality_gates.cli._output import local_time

    rows = report.get("routines") or []
    if not rows:
        return
    out = console()
    out.print("\n[bold]routine checks[/bold]")
    for job in rows:
        last = job["last_run"]
        name = f"{job['name']:<26}"
        if not job["enabled"]:
            out.print(f"  [dim]{name} disabled[/dim]", highlight=False)
            continue
        if last is None:
            out.print(
                f"  {name} [dim]never run[/dim] ({escape(str(job['cron']))})", highlight=False
            )
            continue
        colour = {"passed": "green", "running": "yellow"}.get(last["status"], "bold red")
        took = ""
        if last.get("duration") is not None and not job["failing"]:
            took = f", took {_age(float(last['duration']))}"
        late = " late" if last.get("late") else ""
        summary = f": {escape(last['summary'])}" if job["failing"] and last.get("summary") else ""
        out.print(
            f"  {name} [{colour}]{last['status']}[/{colour}] "
            f"{local_time(last['started_ts'])} ({last.get('trigger') or '?'}{late}{took}){summary}",
            highlight=False,
        )


def _forced_line(deployment: str, forced: dict[str, Any]) -> str:
    """Who forced a breaker, why, since and until when, and the command that clears it."""
    import time
    from datetime import datetime

    def at(ts: Any) -> str:
        return datetime.fromtimestamp(float(ts)).strftime("%H:%M:%S") if ts else "?"

    until = forced.get("until")
    if until is not None and float(until) <= time.time():
        ends = f", ended {at(until)} (automatic again)"
    elif until is not None:
        ends = f" until {at(until)}"
    else:
        ends = ", no end set"
    return (
        f"  breaker {deployment} forced {forced.get('state')} by {forced.get('actor')} "
        f"since {at(forced.get('since'))}{ends}: {forced.get('reason') or 'no reason given'}; "
        f"clear: quality-gates breaker --deployment {deployment} --state auto"
    )


HOUR = 3600.0


def summary(report: dict[str, Any]) -> str:
    """The one screen `status` starts with: the overall state, what fires and what is open,
    then what changed in the last hour, then one line per environment. Returns the state."""
    out = console()
    firing = [
        (env["name"], a)
        for env in report["environments"]
        for a in env.get("alerts", [])
        if a["state"] == "firing" and not (a["silenced_by"] or a["inhibited"])
    ]
    incidents = [
        (env["name"], i) for env in report["environments"] for i in env.get("incidents", [])
    ]
    emergencies = [env["name"] for env in report["environments"] if env.get("emergency")]
    failing = [r for r in report.get("routines", []) if r.get("failing")]
    critical = any(a["severity"] == "critical" for _, a in firing) or emergencies
    state = "CRITICAL" if critical else ("ATTENTION" if firing or incidents or failing else "OK")
    watched = _watched(report)
    if state == "OK" and watched is not None:
        state = "UNWATCHED"  # no alert firing means nothing when no evaluator looked
    colour = {
        "CRITICAL": "bold red",
        "ATTENTION": "bold yellow",
        "UNWATCHED": "bold yellow",
        "OK": "bold green",
    }[state]
    detail = [watched] if watched else []
    if emergencies:
        detail.append(f"emergency mode in {', '.join(emergencies)}")
    detail.append(f"{len(firing)} alert{'s' if len(firing) != 1 else ''} firing")
    detail.append(f"{len(incidents)} incident{'s' if len(incidents) != 1 else ''} open")
    if failing:
        detail.append(f"{len(failing)} routine check{'s' if len(failing) != 1 else ''} failing")
    out.print(f"[{colour}]{state}[/{colour}]  {report['project']}: " + ", ".join(detail))
    for env_name, alert in sorted(firing, key=lambda t: t[1]["severity"] != "critical"):
        tone = "red" if alert["severity"] == "critical" else "yellow"
        out.print(
            f"  [{tone}]{alert['severity']}[/{tone}] {env_name} {alert['rule']}: "
            f"{alert['summary']}",
            highlight=False,
        )
    for env_name, incident in incidents:
        breach = " [red]response target breached[/red]" if incident["response_breached"] else ""
        out.print(
            f"  incident #{incident['id']} {incident['severity']} {incident['state']} "
            f"({env_name}, open {_age(incident['age_seconds'])}): {incident['title']}{breach}",
            highlight=False,
        )
    for routine in failing:
        last = routine.get("last_run") or {}
        out.print(
            f"  [red]routine {routine['name']} failing[/red]: {last.get('summary') or '-'}",
            highlight=False,
        )
    changes = _last_hour(report)
    out.print("last hour: " + (f"{len(changes)} change(s)" if changes else "no change"))
    for line in changes[:8]:
        out.print(f"  {line}", markup=False)
    for env in report["environments"]:
        down = [
            p["provider"]
            for p in env.get("providers", [])
            if p["breaker"] in ("open", "half_open") or "open" in (p.get("forced") or {}).values()
        ]
        tail = f"; providers out: {', '.join(down)}" if down else ""
        routes = {r["alias"]: r for r in env.get("routes", [])}
        current = routes.get("current")
        head = current["route"] if current else "no current alias"
        out.print(f"{env['name']}  {head}{tail}", markup=False)
        for route in env.get("routes", []):
            if route["why"]:
                out.print(f"  {route['why']}", style="yellow", markup=False)
    return state


STALE_EVALUATION_S = 60.0  # an evaluator quieter than this is not watching (default cycle 5 s)


def _watched(report: dict[str, Any]) -> str | None:
    """Why the alert count cannot be trusted (no evaluator, or a stale one), or None."""
    evaluator = (report.get("watch") or {}).get("evaluator") or {}
    since = evaluator.get("seconds_since")
    if since is None:
        return "no alert evaluator has run (start `quality-gates serve` or `watch`)"
    if since > STALE_EVALUATION_S:
        return f"the alert evaluator last ran {_age(float(since))} ago"
    return None


def _last_hour(report: dict[str, Any]) -> list[str]:
    """Alias moves, traffic moves and remediations of the last hour, newest first."""
    now = time.time()
    found: list[tuple[float, str]] = []
    for env in report["environments"]:
        for move in env.get("recent_moves", []):
            at = _ts(move.get("time"))
            if at is not None and now - at <= HOUR:
                found.append(
                    (
                        at,
                        f"{ago(at)} {env['name']} {move.get('alias')}: {move.get('from') or '-'} "
                        f"-> {move.get('to')} ({move.get('operation')}, {move.get('actor')})",
                    )
                )
        for action in env.get("remediations", []):
            at = _ts(action.get("at"))
            if at is not None and now - at <= HOUR:
                found.append((at, f"{ago(at)} {env['name']} {action['summary']}"))
    return [text for _, text in sorted(found, key=lambda t: -t[0])]


def _ts(value: Any) -> float | None:
    from datetime import datetime

    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
