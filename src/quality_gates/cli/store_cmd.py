"""`store prune`: delete telemetry past `store.retention` (the audit log is never pruned)."""

from __future__ import annotations

import click

from quality_gates.cli import _context
from quality_gates.cli._context import json_option


def register(group: click.Group) -> None:
    """Add the `store` group."""
    group.add_command(store)


@click.group()
def store() -> None:
    """The store's upkeep: telemetry retention."""


@store.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@json_option
@click.pass_context
def prune_command(ctx: click.Context, dry_run: bool, json_output: bool) -> None:
    """Delete request, attempt, roll-up, sample, feedback, alert-event, notification and
    routine-run rows older than `store.retention` allows. The audit log is append-only and is
    never pruned; incidents and gate runs are kept. The watch leader runs this every
    `store.retention.interval` (1h)."""
    import time

    from quality_gates.cli._output import console, emit_json, local_time, table
    from quality_gates.store.retention import prune

    state = _context.state(ctx)
    conn = state.conn()
    retention = state.loaded().config.store.retention
    pruned = prune(conn, retention, time.time(), dry_run=dry_run)
    audit_entries = int(conn.scalar("SELECT COUNT(*) FROM audit_log"))
    if _context.wants_json(ctx, json_output):
        emit_json(
            {
                "dry_run": dry_run,
                "tables": [
                    {
                        "kind": p.kind,
                        "table": p.table,
                        "keep_seconds": p.keep_seconds,
                        "cutoff_ts": p.cutoff,
                        "rows": p.rows,
                    }
                    for p in pruned
                ],
                "audit_log": {"entries": audit_entries, "pruned": False},
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    view = table("kind", "table", "keeps", "older than", verb)
    for p in pruned:
        view.add_row(
            p.kind, p.table, f"{p.keep_seconds / 86400:g}d", local_time(p.cutoff), str(p.rows)
        )
    console().print(view)
    kept = [k for k in ("requests", "rollups", "quality_samples", "feedback", "alert_events",
                        "notifications", "job_runs") if getattr(retention, k) is None]  # fmt: skip
    if kept:
        console().print(f"kept for good (retention null): {', '.join(kept)}")
    console().print(f"audit log: {audit_entries} entries, never pruned (append-only hash chain)")
