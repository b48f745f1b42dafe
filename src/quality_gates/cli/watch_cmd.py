"""`watch`: evaluate alert rules, run incidents and send notifications until stopped."""

from __future__ import annotations

from typing import Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import json_option


def register(group: click.Group) -> None:
    """Add `watch`."""
    group.add_command(watch)


@click.command()
@click.option("--once", is_flag=True, help="Evaluate once, send what is due, and exit.")
@click.option(
    "--duration",
    metavar="DURATION",
    help="Stop after this long (30s, 5m; a bare number is minutes).",
)
@click.option(
    "--interval",
    metavar="DURATION",
    help="Seconds between evaluations (default: alerts.evaluation_interval).",
)
@json_option
@click.pass_context
def watch(
    ctx: click.Context,
    once: bool,
    duration: str | None,
    interval: str | None,
    json_output: bool,
) -> int:
    """Run the evaluator: window metrics -> alert rules -> incidents -> notifications.

    Runs until SIGTERM or Ctrl-C (or --duration); several processes may run it, one leads.
    Logs are JSON lines on stderr (observability.logging). With --once, exit 1 if a
    critical alert is firing.
    """
    import asyncio
    import signal

    from quality_gates._jsonlog import configure_logging
    from quality_gates.cli._output import emit_json
    from quality_gates.errors import UsageError
    from quality_gates.exports import exporters_for
    from quality_gates.units import bounded_duration, parse_duration
    from quality_gates.watch._service import CycleReport, WatchService

    state = _context.state(ctx)
    config = state.loaded().config
    try:
        every = parse_duration(interval, bare_unit="s") if interval else None
        limit = bounded_duration(parse_duration(duration, bare_unit="m") if duration else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if every is not None and every <= 0:
        raise UsageError("--interval must be above 0")
    configure_logging(config.observability.logging)
    database = state.database()
    reports: list[CycleReport] = []
    service = WatchService(
        database,
        config,
        interval=every,
        on_cycle=reports.append,
        config_dir=state.config_file()[0].parent,
        config_path=state.config_file()[0].resolve(),
        exporters=exporters_for,
    )

    async def main() -> None:
        if once:
            try:
                await service.run_once()
                if service.routines is not None:
                    await service.routines.wait()  # one whole cycle: its routine runs too
            finally:
                await service.close()
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if limit is not None:
            loop.call_later(limit, stop.set)
        await _run_following_the_file(service, stop)

    async def _run_following_the_file(current: WatchService, stop: asyncio.Event) -> None:
        """Run the evaluator; when the config file changes (and validates), finish the cycle
        and go on with a new evaluator on the new config (an invalid file is refused in the
        log and the running config kept)."""
        import logging

        from quality_gates.gateway._reload import ConfigReloader

        path = state.config_file()[0].resolve()
        pending: list[Any] = []
        while True:
            cycle_stop = asyncio.Event()

            async def forward(event: asyncio.Event = cycle_stop) -> None:
                await stop.wait()
                event.set()

            relay = asyncio.create_task(forward())

            def take(loaded: Any, event: asyncio.Event = cycle_stop) -> None:
                pending.append(loaded)
                event.set()

            reloader = ConfigReloader(path, state.loaded().digest if not pending else None, take)
            await reloader.start()
            try:
                await current.run(cycle_stop)
            finally:
                await reloader.close()
                relay.cancel()
            if stop.is_set() or not pending:
                return
            loaded = pending.pop()
            pending.clear()
            logging.getLogger("quality_gates.watch").warning(
                "config reloaded: the evaluator restarts on the new file"
            )
            configure_logging(loaded.config.observability.logging)
            current = WatchService(
                database,
                loaded.config,
                interval=every,
                on_cycle=reports.append,
                config_dir=path.parent,
                config_path=path,
                exporters=exporters_for,
            )

    asyncio.run(main())
    from quality_gates.watch.status import watch_status

    summary = watch_status(state.conn())
    critical = [
        a for a in summary["alerts"] if a["state"] == "firing" and a["severity"] == "critical"
    ]
    if _context.wants_json(ctx, json_output):
        emit_json(
            {
                "cycles": len(reports),
                "leader": any(r.leader for r in reports),
                "errors": [r.error for r in reports if r.error],
                "sent": sum(r.delivery.sent for r in reports),
                **summary,
            }
        )
    else:
        _render(summary, reports)
    return 1 if once and critical else 0


def _render(summary: dict, reports: list) -> None:  # type: ignore[type-arg]
    from quality_gates.cli._output import console, table

    out = console()
    led = sum(1 for r in reports if r.leader)
    out.print(f"{len(reports)} evaluation cycle(s), {led} as leader")
    if not any(r.leader for r in reports):
        holder = summary["evaluator"]["leader"]
        out.print(f"[yellow]another evaluator holds the lease: {holder}[/yellow]")
    if summary["alerts"]:
        view = table("alert", "state", "severity", "summary", "muted", "incident")
        for a in summary["alerts"]:
            muted = "silenced" if a["silenced_by"] else ("inhibited" if a["inhibited"] else "")
            view.add_row(
                a["rule"], a["state"], a["severity"], a["summary"], muted, str(a["incident"] or "-")
            )
        out.print(view)
    else:
        out.print("No alert is pending or firing.")
    for inc in summary["incidents"]:
        out.print(
            f"incident #{inc['id']} {inc['severity']} {inc['state']}: {inc['title']}", markup=False
        )
