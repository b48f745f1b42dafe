"""Telemetry retention: rows older than `store.retention` allows are deleted in batches, by
`quality-gates store prune` and by the watch leader every `store.retention.interval`.

The audit log is append-only (a hash chain) and is never pruned; incidents, their timelines,
gate runs and the registry's history are records, kept too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quality_gates.store.registry import get_meta, set_meta

if TYPE_CHECKING:
    from quality_gates.config import StoreRetention
    from quality_gates.store.db import Connection

logger = logging.getLogger(__name__)

BATCH = 5_000  # rows per delete transaction: a SQLite writer is never held for long
MAX_PER_RUN = 200_000  # rows per periodic run; the rest waits for the next one
LAST_RUN_KEY = "retention.last_prune"


@dataclass(frozen=True)
class Target:
    """One table a retention kind prunes: its key, its time column and what else must hold."""

    kind: str
    table: str
    key: str
    time_column: str
    scale: float = 1.0  # seconds per unit of time_column (rollups count minutes)
    only: str = ""


TARGETS = (
    Target("requests", "attempts", "id", "ts"),
    Target("requests", "requests", "id", "ts"),
    Target("rollups", "rollups", "", "minute", scale=60.0),
    Target("quality_samples", "quality_samples", "id", "ts"),
    Target("feedback", "feedback", "id", "ts"),
    Target("alert_events", "alert_events", "id", "ts"),
    # Pending and in-flight notifications are never pruned: they are still owed.
    Target(
        "notifications", "notifications", "id", "created_at",
        only="status IN ('sent', 'failed', 'skipped')",
    ),
    Target("job_runs", "job_runs", "id", "started_at", only="finished_at IS NOT NULL"),
)  # fmt: skip


@dataclass
class Pruned:
    """What one table lost (or would lose, in a dry run)."""

    kind: str
    table: str
    keep_seconds: float
    cutoff: float
    rows: int
    complete: bool = True  # False when MAX_PER_RUN stopped it short


def _where(target: Target, cutoff: float) -> tuple[str, dict[str, float]]:
    clause = f"{target.time_column} < :cutoff"
    if target.only:
        clause += f" AND {target.only}"
    return clause, {"cutoff": cutoff / target.scale}


def prune(
    conn: Connection,
    retention: StoreRetention,
    now: float,
    *,
    dry_run: bool = False,
    limit: int | None = None,
) -> list[Pruned]:
    """Delete (or with `dry_run`, count) rows past their retention; at most `limit` rows per
    table when given."""
    out = []
    for target in TARGETS:
        keep = getattr(retention, target.kind)
        if keep is None:
            continue
        cutoff = now - keep
        where, params = _where(target, cutoff)
        if dry_run:
            rows = int(conn.scalar(f"SELECT COUNT(*) FROM {target.table} WHERE {where}", params))
            out.append(Pruned(target.kind, target.table, keep, cutoff, rows))
            continue
        deleted, complete = _delete(conn, target, where, params, limit)
        out.append(Pruned(target.kind, target.table, keep, cutoff, deleted, complete))
    return out


def _delete(
    conn: Connection, target: Target, where: str, params: dict[str, float], limit: int | None
) -> tuple[int, bool]:
    if not target.key:  # roll-ups: one row per minute and group, few enough for one delete
        with conn.write():
            before = int(conn.scalar(f"SELECT COUNT(*) FROM {target.table} WHERE {where}", params))
            conn.execute(f"DELETE FROM {target.table} WHERE {where}", params)
        return before, True
    deleted = 0
    while limit is None or deleted < limit:
        batch = BATCH if limit is None else min(BATCH, limit - deleted)
        with conn.write():
            keys = conn.execute(
                f"SELECT {target.key} FROM {target.table} WHERE {where} "
                f"ORDER BY {target.time_column} LIMIT {batch}",
                params,
            )
            if keys:
                marks = ", ".join(f":k{n}" for n in range(len(keys)))
                conn.execute(
                    f"DELETE FROM {target.table} WHERE {target.key} IN ({marks})",
                    {f"k{n}": row[target.key] for n, row in enumerate(keys)},
                )
        deleted += len(keys)
        if len(keys) < batch:
            return deleted, True
    return deleted, False


def prune_if_due(conn: Connection, retention: StoreRetention, now: float) -> list[Pruned] | None:
    """The watch leader's periodic prune: runs when `retention.interval` has passed since the
    last complete run (noted in the store, so a new leader does not repeat it at once)."""
    last = get_meta(conn, LAST_RUN_KEY)
    if last is not None and now - float(last) < retention.interval:
        return None
    started = time.monotonic()
    pruned = prune(conn, retention, now, limit=MAX_PER_RUN)
    if all(p.complete for p in pruned):
        with conn.write():
            set_meta(conn, LAST_RUN_KEY, repr(now))
    total = sum(p.rows for p in pruned)
    if total:
        counts = ", ".join(f"{p.rows} {p.table}" for p in pruned if p.rows)
        logger.info(
            "retention: pruned %s in %.1f s (audit log kept: append-only)",
            counts,
            time.monotonic() - started,
            extra={"category": "SYSTEM"},
        )
    return pruned
