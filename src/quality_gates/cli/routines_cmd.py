"""`routines list|run`: the routine checks of the config (daily health check, weekly pipeline,
monthly report and rollback drill), run on their cron schedule by `watch` and `serve`."""

from __future__ import annotations

from typing import Any

import click

from quality_gates.cli import _context
from quality_gates.cli._context import actor_option, json_option

STATUS_COLOUR = {"passed": "green", "failed": "red", "error": "red", "running": "yellow"}


def register(group: click.Group) -> None:
    """Add the `routines` group."""
    group.add_command(routines)


@click.group()
def routines() -> None:
    """Routine checks on a schedule (the config's `routines:`; run by watch and serve)."""


def _known_commands(ctx: click.Context) -> set[str]:
    root = ctx.find_root().command
    return set(root.commands) if isinstance(root, click.Group) else set()


@routines.command("list")
@json_option
@click.pass_context
def list_routines(ctx: click.Context, json_output: bool) -> None:
    """Each routine: cron, command, next run (local time) and its last run."""
    import time

    from rich.markup import escape

    from quality_gates.cli._output import console, emit_json, local_time, table
    from quality_gates.config._routines import command_name
    from quality_gates.routines._scheduler import overview

    state = _context.state(ctx)
    known = _known_commands(ctx)
    rows = overview(state.conn(), state.loaded().config, time.time())
    for row in rows:
        row["command_known"] = command_name(row["command"]) in known
    if _context.wants_json(ctx, json_output):
        emit_json(rows)
        return
    if not rows:
        console().print("no routines (add them under routines.jobs in the config)")
        return
    view = table("routine", "cron", "command", "next run", "last run", "took", "result")
    for row in rows:
        last = row["last_run"]
        cron = row["cron"] + ("" if row["timezone"] == "UTC" else f" ({row['timezone']})")
        command = escape(row["command"]) + (
            "" if row["command_known"] else " [red](unknown command)[/red]"
        )
        if last is None:
            when, took, result = "never", "-", "-"
        else:
            colour = STATUS_COLOUR.get(last["status"], "white")
            when = f"{local_time(last['started_ts'])} ({last['trigger'] or '?'})"
            took = _took(last["duration"])
            result = f"[{colour}]{last['status']}[/{colour}]"
            if last.get("late"):
                result += " (late)"
        view.add_row(
            row["name"],
            cron,
            command,
            local_time(row["next_run_ts"]) if row["enabled"] else "[dim]disabled[/dim]",
            when,
            took,
            result,
        )
    console().print(view)


def _took(seconds: Any) -> str:
    from quality_gates.units import format_duration

    return "-" if seconds is None else format_duration(float(seconds))


@routines.command("run")
@click.argument("name")
@actor_option
@json_option
@click.pass_context
def run_routine(ctx: click.Context, name: str, actor_name: str | None, json_output: bool) -> None:
    """Run routine NAME now (recorded with trigger manual); the exit code follows the run:
    0 passed, 1 or 3 failed, 2 or 4 (timeout, unknown command) error."""
    from rich.markup import escape

    from quality_gates._suggest import did_you_mean
    from quality_gates.cli._output import console, emit_json, err_console
    from quality_gates.errors import EXIT_INCOMPLETE, UsageError
    from quality_gates.routines._scheduler import run_now, store_url_for_children

    state = _context.state(ctx)
    config = state.loaded().config
    job = config.routines.job(name)
    if job is None:
        names = [j.name for j in config.routines.jobs]
        raise UsageError(
            f"unknown routine {name!r}{did_you_mean(name, names)} "
            f"(known: {', '.join(names) or 'none defined'})"
        )
    claim, outcome = run_now(
        state.conn(),
        config,
        job,
        config_path=state.config_file()[0].resolve(),
        store_url=store_url_for_children(state.store_url()),
        actor=_context.actor(actor_name).name,
    )
    if _context.wants_json(ctx, json_output):
        emit_json(
            {
                "routine": job.name,
                "run": claim.run_id,
                "command": claim.words,
                "status": outcome.status,
                "exit_code": outcome.exit_code,
                "duration": round(outcome.duration, 3),
                "timed_out": outcome.timed_out,
                "summary": outcome.summary,
                "output": outcome.output,
            }
        )
    else:
        if outcome.output.strip():
            err_console().print(outcome.output.rstrip(), markup=False, highlight=False)
        colour = STATUS_COLOUR.get(outcome.status, "white")
        console().print(
            f"routine {job.name} run #{claim.run_id}: [{colour}]{outcome.status}[/{colour}] "
            f"({escape(outcome.summary)})",
            highlight=False,
        )
    code = outcome.exit_code
    ctx.exit(code if code is not None and 0 <= code <= EXIT_INCOMPLETE else EXIT_INCOMPLETE)
