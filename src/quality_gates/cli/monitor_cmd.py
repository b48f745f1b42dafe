"""`monitor`: watch one model live for a while; a summary at the end, exit 1 on a critical."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import environment_option, json_option

if TYPE_CHECKING:
    from quality_gates.watch.monitor import Tick


def register(group: click.Group) -> None:
    """Add `monitor`."""
    group.add_command(monitor)


@click.command()
@click.option(
    "--model-id", required=True, metavar="MODEL", help="Model id or alias (current-model, ...)."
)
@click.option(
    "--duration",
    default="5",
    show_default=True,
    metavar="DURATION",
    help="How long: minutes as in the runbook (5), or 30s, 5m, 2h.",
)
@click.option("--continuous", is_flag=True, help="Until interrupted (Ctrl-C).")
@click.option(
    "--security-mode",
    is_flag=True,
    help="Add PII in prompts and answers, prompt injection, auth failures, unusual keys.",
)
@click.option(
    "--metrics",
    metavar="LIST",
    help="Metrics to show, e.g. error_rate,latency (default: errors, P95, throughput, "
    "availability and quality).",
)
@click.option(
    "--alert-threshold",
    "alert_thresholds",
    multiple=True,
    metavar="EXPR",
    help='A critical threshold of this run, e.g. "error_rate>2%" (repeatable).',
)
@click.option(
    "--previous-model",
    metavar="MODEL",
    help="Shown beside the model; the rollback target (default: previous-stable).",
)
@click.option(
    "--no-auto-rollback",
    is_flag=True,
    help="Never roll back from this run (the running evaluator decides for itself).",
)
@click.option(
    "--interval", metavar="DURATION", help="Refresh (default: alerts.evaluation_interval)."
)
@click.option(
    "--window", default="1m", show_default=True, metavar="DURATION", help="Metric window."
)
@environment_option("production")
@json_option
@click.pass_context
def monitor(
    ctx: click.Context,
    model_id: str,
    duration: str,
    continuous: bool,
    security_mode: bool,
    metrics: str | None,
    alert_thresholds: tuple[str, ...],
    previous_model: str | None,
    no_auto_rollback: bool,
    interval: str | None,
    window: str,
    environment: str,
    json_output: bool,
) -> None:
    """Watch a model: its metrics against thresholds, alert states, open incidents and the
    remediation taken, refreshed each interval; a summary at the end. Exit 1 if a critical
    alert fired (or an --alert-threshold was breached). $QG_MAX_DURATION caps every run."""
    import asyncio

    from quality_gates.errors import EXIT_FAILED, UsageError
    from quality_gates.registry import check_environment, resolve_model
    from quality_gates.units import bounded_duration, parse_duration
    from quality_gates.watch import monitor as service

    state = _context.state(ctx)
    conn = state.conn()
    check_environment(conn, environment, state.snapshot())
    config = state.loaded().config
    try:
        limit = bounded_duration(None if continuous else parse_duration(duration, bare_unit="m"))
        every = parse_duration(interval, bare_unit="s") if interval else None
        span = parse_duration(window, bare_unit="s")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    every = every or config.alerts.evaluation_interval
    if limit is not None:
        every = max(0.2, min(every, limit / 2))
    model = resolve_model(conn, environment, model_id).model_id
    previous = resolve_model(conn, environment, previous_model).model_id if previous_model else None
    wanted = (
        list(dict.fromkeys(service.metric_name(m) for m in metrics.split(",") if m.strip()))
        if metrics
        else [*service.DEFAULT_METRICS, *service.QUALITY_METRICS]
    )
    custom = [service.parse_alert_threshold(t) for t in alert_thresholds]
    for threshold in custom:
        if threshold.metric not in wanted:
            wanted.append(threshold.metric)
    as_json = _context.wants_json(ctx, json_output)
    run = MonitorRun(
        state,
        config,
        environment=environment,
        model=model,
        model_ref=model_id,
        previous=previous,
        metrics=wanted,
        custom=custom,
        security=security_mode,
        auto_rollback=not no_auto_rollback,
        window=span,
    )
    try:
        asyncio.run(run.loop(limit, every, as_json))
    except KeyboardInterrupt:
        pass
    summary = run.summary()
    if as_json:
        from quality_gates.cli._output import emit_json

        emit_json(summary)
    else:
        _render_summary(summary)
    if summary["verdict"] != "healthy":
        ctx.exit(EXIT_FAILED)


class MonitorRun:
    """The loop of one `monitor` run and what it saw."""

    def __init__(self, state: Any, config: Any, **options: Any) -> None:
        from quality_gates.gateway.emergency import current as emergency
        from quality_gates.watch import monitor as service

        self.state, self.config = state, config
        self.o = options
        self.conn = state.conn()
        env = options["environment"]
        self.emergency = emergency(self.conn, env)
        degraded = self.emergency.get("targets") if self.emergency else None
        self.thresholds = service.default_thresholds(config, env, degraded)
        self.thresholds.update({t.metric: t for t in options["custom"]})
        self.ticks: list[Tick] = []
        self.breaches: list[str] = []
        self.actions: list[str] = []
        self.started = 0.0
        self.rolled_back = False

    async def loop(self, limit: float | None, every: float, as_json: bool) -> None:
        """Tick every `every` seconds until `limit` (None: until interrupted)."""
        import asyncio
        import sys
        import time

        from quality_gates.exports import exporters_for
        from quality_gates.watch._service import WatchService

        self.started = time.time()
        watch = WatchService(
            self.state.database(),
            self.config,
            interval=every,
            config_dir=self.state.config_file()[0].parent,
            auto_rollback=self.o["auto_rollback"],
            exporters=exporters_for,
        )
        live = None
        if not as_json and sys.stdout.isatty():
            from rich.live import Live

            from quality_gates.cli._output import console

            live = Live(console=console(), auto_refresh=False)
            live.start()
        try:
            while True:
                report = await watch.run_once()
                tick = self.tick(report.leader, time.time())
                if live is not None:
                    live.update(_table(self, tick), refresh=True)
                elif not as_json:
                    _line(self, tick)
                elapsed = time.time() - self.started
                if limit is not None and elapsed + every > limit:
                    await asyncio.sleep(max(0.0, limit - elapsed))
                    break
                await asyncio.sleep(every)
            self.tick(False, time.time())
        finally:
            if live is not None:
                live.stop()
            await watch.close()

    def tick(self, leader: bool, now: float) -> Tick:
        """Read everything once; act on a breached --alert-threshold."""
        from quality_gates.watch import monitor as service

        env, model = self.o["environment"], self.o["model"]
        readings = service.model_metrics(
            self.conn, env, model, self.o["metrics"], self.thresholds, self.o["window"], now
        )
        tick = service.Tick(
            now,
            readings,
            service.concerning(self.conn, self.config, env, model),
            service.open_incidents(self.conn, env, now),
            service.recent_remediations(self.conn, env, self.started),
            service.security_signals(self.conn, env, self.o["window"], now)
            if self.o["security"]
            else [],
            leader,
        )
        for reading in readings:
            if reading.breached and reading.threshold is not None:
                # Every breach the lines show counts in the verdict; only a breached
                # --alert-threshold (the caller's own) may roll the model back.
                shown = service.format_value(reading.metric, reading.value)
                line = f"{reading.threshold.describe()}: {shown}"
                if line.split(":")[0] not in (b.split(":")[0] for b in self.breaches):
                    self.breaches.append(line)
                    if reading.threshold.custom:
                        self._maybe_roll_back(line, now)
        self.ticks.append(tick)
        return tick

    def _maybe_roll_back(self, reason: str, now: float) -> None:
        from quality_gates.alerts._store import load_states
        from quality_gates.errors import QualityGatesError
        from quality_gates.remediation._remediator import target_failing
        from quality_gates.store.registry import get_alias
        from quality_gates.watch import monitor as service

        env, model = self.o["environment"], self.o["model"]
        if not self.o["auto_rollback"] or self.rolled_back:
            return
        current = get_alias(self.conn, env, "current")
        if current is None or current.model_id != model:
            return
        target_row = get_alias(self.conn, env, "previous-stable")
        target = self.o["previous"] or (target_row.model_id if target_row else None)
        if target is None or target == model:
            self.actions.append("no rollback: no previous model to go back to")
            return
        states = load_states(self.conn, active_only=True)
        why = target_failing(self.conn, self.config, states, env, target, now)
        if why:
            self.actions.append(f"no rollback: {target} is failing itself ({why})")
            return
        try:
            summary = service.monitor_rollback(
                self.conn, environment=env, model_id=model, target=target, reason=reason, now=now
            )
        except QualityGatesError as exc:
            self.actions.append(f"rollback refused: {exc}")
            return
        self.rolled_back = True
        self.actions.append(summary)

    def summary(self) -> dict[str, Any]:
        """What the run saw, and its verdict."""
        import time

        from quality_gates.watch import monitor as service

        env, model = self.o["environment"], self.o["model"]
        criticals = service.fired_critical(self.conn, self.config, env, model, self.started)
        still = [
            f"{a['rule']}: {a['summary']}"
            for a in (self.ticks[-1].alerts if self.ticks else [])
            if a["state"] == "firing" and a["severity"] == "critical" and not a["muted"]
        ]
        for line in still:
            if line.split(":")[0] not in (c.split(":")[0] for c in criticals):
                criticals.append(line)
        metrics: dict[str, Any] = {}
        for name in self.o["metrics"]:
            values = [
                r.value
                for t in self.ticks
                for r in t.metrics
                if r.metric == name and r.value is not None
            ]
            last = next(
                (r for t in reversed(self.ticks) for r in t.metrics if r.metric == name), None
            )
            metrics[name] = {
                "last": last.to_dict() if last else None,
                "min": min(values) if values else None,
                "max": max(values) if values else None,
            }
        unhealthy = bool(criticals or self.breaches)
        return {
            "environment": env,
            "model": model,
            "previous_model": self.o["previous"],
            "seconds": round(time.time() - self.started, 1),
            "intervals": len(self.ticks),
            "evaluated_here": any(t.leader for t in self.ticks),
            "emergency": self.emergency,
            "metrics": metrics,
            "critical_alerts": criticals,
            "threshold_breaches": self.breaches,
            "incidents": self.ticks[-1].incidents if self.ticks else [],
            "remediations": self.ticks[-1].remediations if self.ticks else [],
            "monitor_actions": self.actions,
            "security": self.ticks[-1].security if self.ticks else [],
            "verdict": "unhealthy" if unhealthy else "healthy",
        }


def _table(run: MonitorRun, tick: Tick) -> Any:
    from rich.console import Group
    from rich.text import Text

    from quality_gates.cli._output import table

    o = run.o
    title = f"monitor {_subject(run)} (window {o['window']:g} s)"
    if not any(r.volume for r in tick.metrics):
        title += f": no live traffic to {o['model']} in the window"
    view = table("metric", "value", "threshold", "", "n", title=title)
    for r in tick.metrics:
        mark = (
            "[red]BREACH[/red]"
            if r.breached
            else ("[green]ok[/green]" if r.value is not None else "-")
        )
        view.add_row(
            r.metric,
            r.to_dict()["shown"],
            r.threshold.describe() if r.threshold else "-",
            mark,
            f"{r.volume:.0f}",
        )
    parts: list[Any] = [view]
    for alert in tick.alerts:
        colour = "red" if alert["severity"] == "critical" else "yellow"
        parts.append(
            Text.from_markup(
                f"[{colour}]{alert['state']} {alert['severity']}[/{colour}] {alert['rule']}: "
                f"{alert['summary']}"
            )
        )
    for incident in tick.incidents:
        parts.append(
            Text(
                f"incident #{incident['id']} {incident['severity']} {incident['state']} "
                f"({incident['age_s']:.0f} s): {incident['title']}"
            )
        )
    for action in tick.remediations:
        parts.append(Text(f"remediation: {action['summary']}"))
    for line in run.actions:
        parts.append(Text(f"monitor: {line}"))
    for signal in tick.security:
        colour = "yellow" if signal["warn"] else "green"
        parts.append(
            Text.from_markup(f"[{colour}]security[/{colour}] {signal['signal']}: {signal['value']}")
        )
    return Group(*parts)


def _subject(run: MonitorRun) -> str:
    """`production current-model -> claude-3-5-haiku`: what every line is about."""
    o = run.o
    ref = o.get("model_ref") or o["model"]
    named = f"{ref} -> {o['model']}" if ref != o["model"] else o["model"]
    return f"{o['environment']} {named}"


def _line(run: MonitorRun, tick: Tick) -> None:
    import datetime

    from quality_gates.cli._output import console

    stamp = datetime.datetime.fromtimestamp(tick.at).strftime("%H:%M:%S")
    metrics = " | ".join(
        f"{r.metric} {r.to_dict()['shown']}" + (" BREACH" if r.breached else "")
        for r in tick.metrics
    )
    metrics = f"{_subject(run)} | {metrics}"
    if not any(r.volume for r in tick.metrics):
        metrics += f" | no live traffic to {run.o['model']} in the last {run.o['window']:g} s"
    firing = [a["rule"] for a in tick.alerts if a["state"] == "firing"]
    extra = f" | firing: {', '.join(firing)}" if firing else " | no alert firing"
    if tick.incidents:
        extra += f" | incidents: {', '.join('#' + str(i['id']) for i in tick.incidents)}"
    if tick.security:
        flagged = [s["signal"] for s in tick.security if s["warn"]]
        extra += f" | security: {', '.join(flagged) or 'quiet'}"
    console().print(f"{stamp} {metrics}{extra}", markup=False)


def _render_summary(summary: dict[str, Any]) -> None:
    from quality_gates.cli._output import console
    from quality_gates.watch.monitor import format_value

    out = console()
    colour = "green" if summary["verdict"] == "healthy" else "red"
    out.print(
        f"\n[bold]Summary[/bold]: {summary['model']} in {summary['environment']} over "
        f"{summary['seconds']:g} s ({summary['intervals']} intervals): "
        f"[{colour}]{summary['verdict'].upper()}[/{colour}]"
    )
    for name, stats in summary["metrics"].items():
        last = stats["last"]
        shown = last["shown"] if last else "-"
        out.print(
            f"  {name:<22} last {shown:<12} min {format_value(name, stats['min']):<12} "
            f"max {format_value(name, stats['max'])}",
            markup=False,
        )
    for line in summary["critical_alerts"]:
        out.print(f"  critical alert: {line}", markup=False)
    for line in summary["threshold_breaches"]:
        out.print(f"  threshold breached: {line}", markup=False)
    for action in summary["remediations"]:
        out.print(f"  remediation: {action['summary']}", markup=False)
    for line in summary["monitor_actions"]:
        out.print(f"  monitor: {line}", markup=False)
    for incident in summary["incidents"]:
        out.print(
            f"  open incident #{incident['id']} {incident['severity']}: {incident['title']}",
            markup=False,
        )
    if summary["emergency"]:
        out.print(f"  emergency mode: {summary['emergency']['mode']}", markup=False)
    if not summary["evaluated_here"]:
        out.print("  alert states read from the running evaluator", style="dim")
