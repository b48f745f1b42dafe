"""`audit list` and `audit verify`: the append-only log of every change."""

from __future__ import annotations

import click

from quality_gates.cli import _context
from quality_gates.cli._context import json_option


def register(group: click.Group) -> None:
    """Add the `audit` group."""
    group.add_command(audit)


@click.group()
def audit() -> None:
    """The append-only audit log of every change, and its hash chain."""


@audit.command("list")
@click.option("--limit", "-n", type=click.IntRange(1, 1000000), default=30, show_default=True)
@click.option("--action", help="Only actions starting with this, e.g. alias. or config.set")
@click.option("--target", help="Only this target, e.g. production/current")
@json_option
@click.pass_context
def list_entries(
    ctx: click.Context, limit: int, action: str | None, target: str | None, json_output: bool
) -> None:
    """Audit entries, newest first."""
    from quality_gates.cli._output import compact, console, emit_json, iso_utc, local_time, table
    from quality_gates.store import audit as log

    conn = _context.state(ctx).conn()
    rows = log.entries(conn, limit=limit, action=action, target=target)
    if _context.wants_json(ctx, json_output):
        emit_json(
            [
                {
                    "seq": e.seq,
                    "time": iso_utc(e.ts),
                    "actor": e.actor,
                    "action": e.action,
                    "target": e.target,
                    "details": e.details,
                    "hash": e.hash,
                }
                for e in rows
            ]
        )
        return
    if not rows:
        console().print("The audit log is empty.")
        return
    view = table(
        "#", "time", "actor", "action", "target", "details", title="Audit log (newest first)"
    )
    for e in rows:
        view.add_row(str(e.seq), local_time(e.ts), e.actor, e.action, e.target, compact(e.details))
    console().print(view)


@audit.command("verify")
@json_option
@click.pass_context
def verify(ctx: click.Context, json_output: bool) -> None:
    """Check the hash chain; exit 1 naming the first edited, inserted or deleted entry."""
    from quality_gates.cli._output import console, emit_json
    from quality_gates.store import audit as log

    conn = _context.state(ctx).conn()
    result = log.verify(conn)
    if _context.wants_json(ctx, json_output):
        emit_json(
            {
                "ok": result.ok,
                "checked": result.checked,
                "head_seq": result.head_seq,
                "head_hash": result.head_hash,
                "problem": result.problem,
                "first_bad_seq": result.first_bad_seq,
            }
        )
    elif result.ok:
        console().print(
            f"[green]OK[/green]: {result.checked} entries, chain intact, "
            f"head #{result.head_seq} {result.head_hash[:16]}"
        )
    else:
        console().print(
            f"[bold red]TAMPERED[/bold red]: {result.problem} "
            f"(checked {result.checked} entries before it)"
        )
    if not result.ok:
        raise click.exceptions.Exit(1)
