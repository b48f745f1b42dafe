"""The durable notification outbox: messages are written with the change that causes them,
then claimed, sent and marked. A receiver outage loses nothing and sends nothing twice.

- Each message has an idempotency key; enqueueing the same key again does nothing, so a
  repeated evaluation never doubles a message. The key travels as the `Idempotency-Key`
  header (and in the generic webhook's body) for receivers that deduplicate.
- A sender claims due rows in one transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the
  write lock on SQLite) and holds the claim for `CLAIM_SECONDS`; a crashed sender's claim
  lapses and another picks the row up.
- Per channel and incident, messages go out in order: a resolve never overtakes the trigger
  it resolves, even when the trigger is waiting for a retry.
- Failures are retried with exponential backoff and jitter up to `max_attempts`; a 4xx other
  than 408/429 is a permanent refusal and stops at once.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from quality_gates.errors import CredentialMissing
from quality_gates.store.db import Connection, Row, in_clause

if TYPE_CHECKING:
    import aiohttp

    from quality_gates.config import Channel, Notifications

PENDING, SENDING, SENT, FAILED, SKIPPED = "pending", "sending", "sent", "failed", "skipped"
CLAIM_SECONDS = 60.0
BATCH = 50
RETRYABLE_STATUS = frozenset({408, 425, 429})
USER_AGENT = "quality-gates-watch"


@dataclass(frozen=True)
class Message:
    """One message for one channel."""

    key: str
    channel: str
    channel_type: str
    event: str
    payload: dict[str, Any]
    incident_id: int | None = None
    dedup_key: str | None = None


def missing_variable(channel: Channel) -> str | None:
    """The first environment variable the channel needs that is unset, or None."""
    from quality_gates.config import resolve_env

    refs = [channel.url or "", channel.routing_key or "", *channel.headers.values()]
    try:
        for ref in refs:
            resolve_env(ref, needed_by=f"notification channel {channel.name!r}")
    except CredentialMissing as exc:
        return exc.variable
    return None


def enqueue(conn: Connection, message: Message, channel: Channel | None, now: float) -> bool:
    """Put a message in the outbox (call inside the transaction of its cause); False if a
    message with the same key is already there. A channel that cannot be sent to (unknown,
    or a variable unset) gets a `skipped` row saying why, so the gap is visible."""
    status, error = PENDING, None
    if channel is None:
        status, error = SKIPPED, f"channel {message.channel!r} is not configured"
    else:
        variable = missing_variable(channel)
        if variable is not None:
            status, error = SKIPPED, f"{variable} is not set"
    row = conn.one(
        "INSERT INTO notifications (idempotency_key, channel, channel_type, event, incident_id, "
        "dedup_key, payload, status, attempts, next_attempt_at, created_at, last_error) VALUES "
        "(:key, :channel, :type, :event, :incident, :dedup, :payload, :status, 0, :now, :now, "
        ":error) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        {
            "key": message.key,
            "channel": message.channel,
            "type": message.channel_type,
            "event": message.event,
            "incident": message.incident_id,
            "dedup": message.dedup_key,
            "payload": json.dumps(message.payload, sort_keys=True, default=str),
            "status": status,
            "now": now,
            "error": error,
        },
    )
    return row is not None


def claim(conn: Connection, holder: str, now: float, limit: int = BATCH) -> list[Row]:
    """Take up to `limit` due messages for `holder`, oldest first, one transaction."""
    skip_locked = "" if conn.is_sqlite else " SKIP LOCKED"
    with conn.write():
        rows = conn.execute(
            "SELECT n.id FROM notifications n WHERE n.status IN ('pending', 'sending') "
            "AND n.next_attempt_at <= :now AND (n.claimed_until IS NULL OR n.claimed_until < :now) "
            "AND NOT EXISTS (SELECT 1 FROM notifications o WHERE o.channel = n.channel "
            "AND o.incident_id = n.incident_id AND o.id < n.id "
            "AND o.status IN ('pending', 'sending')) "
            f"ORDER BY n.id LIMIT :limit{conn.for_update}{skip_locked}",
            {"now": now, "limit": limit},
        )
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        clause, params = in_clause("i", ids)
        conn.execute(
            f"UPDATE notifications SET status = 'sending', claimed_by = :holder, "
            f"claimed_until = :until WHERE id IN {clause}",
            {**params, "holder": holder, "until": now + CLAIM_SECONDS},
        )
        return conn.execute(f"SELECT * FROM notifications WHERE id IN {clause} ORDER BY id", params)


def backoff(attempts: int, initial: float, maximum: float) -> float:
    """Seconds before retry number `attempts` (1-based): doubling, capped, with +-20% jitter."""
    delay = min(maximum, initial * (2 ** max(attempts - 1, 0)))
    return float(delay) * random.uniform(0.8, 1.2)


def mark(
    conn: Connection,
    row: Row,
    holder: str,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    permanent: bool,
    retry_after: float | None,
    settings: Notifications,
    now: float,
) -> str:
    """Record a send's outcome on a row this holder claimed; returns the new status."""
    attempts = int(row["attempts"]) + 1
    if ok:
        status, next_at = SENT, row["next_attempt_at"]
    elif permanent or attempts >= settings.outbox.max_attempts:
        status, next_at = FAILED, row["next_attempt_at"]
    else:
        delay = backoff(attempts, settings.outbox.initial_backoff, settings.outbox.max_backoff)
        if retry_after is not None:
            delay = max(delay, min(retry_after, settings.outbox.max_backoff))
        status, next_at = PENDING, now + delay
    with conn.write():
        conn.execute(
            "UPDATE notifications SET status = :status, attempts = :attempts, "
            "next_attempt_at = :next_at, claimed_by = NULL, claimed_until = NULL, "
            "sent_at = :sent_at, response_status = :code, last_error = :error "
            "WHERE id = :id AND claimed_by = :holder",
            {
                "status": status,
                "attempts": attempts,
                "next_at": next_at,
                "sent_at": now if ok else None,
                "code": status_code,
                "error": None if ok else error,
                "id": row["id"],
                "holder": holder,
            },
        )
    return status


@dataclass(frozen=True)
class SendResult:
    """What one HTTP attempt gave."""

    ok: bool
    status: int | None
    error: str | None
    permanent: bool = False
    retry_after: float | None = None


def request_for(row: Row, channel: Channel) -> tuple[str, dict[str, Any], dict[str, str]]:
    """URL, body and headers for a stored message; secrets are resolved here, at send time."""
    from quality_gates.config import resolve_env

    needed_by = f"notification channel {channel.name!r}"
    body = json.loads(row["payload"])
    if channel.type == "pagerduty":
        body["routing_key"] = resolve_env(channel.routing_key or "", needed_by=needed_by)
    if channel.type == "webhook":
        body["idempotency_key"] = row["idempotency_key"]
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": row["idempotency_key"],
        **{k: resolve_env(v, needed_by=needed_by) for k, v in channel.headers.items()},
    }
    return channel.target_url, body, headers


async def send(session: aiohttp.ClientSession, row: Row, channel: Channel) -> SendResult:
    """POST one message; every failure becomes a SendResult (translated here, nowhere else)."""
    import aiohttp

    try:
        url, body, headers = request_for(row, channel)
    except CredentialMissing as exc:
        return SendResult(False, None, str(exc))
    try:
        async with session.post(
            url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=channel.timeout)
        ) as response:
            text = (await response.text())[:300]
            if 200 <= response.status < 300:
                return SendResult(True, response.status, None)
            retry_after = _retry_after(response.headers.get("Retry-After"))
            permanent = 400 <= response.status < 500 and response.status not in RETRYABLE_STATUS
            return SendResult(
                False, response.status, f"HTTP {response.status}: {text}", permanent, retry_after
            )
    except TimeoutError:
        return SendResult(False, None, f"no answer within {channel.timeout:g} s")
    except aiohttp.ClientError as exc:
        return SendResult(False, None, f"{type(exc).__name__}: {exc}")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


@dataclass
class DeliveryReport:
    """What one pass over the outbox did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0


async def deliver(
    run_db: Any,
    session: aiohttp.ClientSession,
    settings: Notifications,
    holder: str,
    *,
    clock: Any = time.time,
    only: Iterable[str] | None = None,
) -> DeliveryReport:
    """Claim due messages, send them concurrently, record each outcome.

    `run_db(fn, *args)` runs a store call where the store's connection lives (a dedicated
    thread in the service); `only` limits the pass to some idempotency keys.
    """
    import asyncio

    report = DeliveryReport()
    rows: list[Row] = await run_db(claim_for, holder, clock(), only)
    if not rows:
        return report

    async def one(row: Row) -> None:
        channel = settings.channel(row["channel"])
        if channel is None:
            result = SendResult(
                False, None, f"channel {row['channel']!r} is no longer configured", True
            )
        else:
            result = await send(session, row, channel)
        status = await run_db(
            mark_row,
            row,
            holder,
            result,
            settings,
            clock(),
        )
        if status == SENT:
            report.sent += 1
        elif status == FAILED:
            report.failed += 1
        else:
            report.retrying += 1

    await asyncio.gather(*(one(r) for r in rows))
    return report


def claim_for(conn: Connection, holder: str, now: float, only: Iterable[str] | None) -> list[Row]:
    """`claim`, optionally restricted to some idempotency keys (the CLI's immediate send)."""
    rows = claim(conn, holder, now)
    if only is None:
        return rows
    wanted = set(only)
    keep = [r for r in rows if r["idempotency_key"] in wanted]
    release = [r["id"] for r in rows if r["idempotency_key"] not in wanted]
    if release:
        clause, params = in_clause("r", release)
        with conn.write():
            conn.execute(
                f"UPDATE notifications SET status = 'pending', claimed_by = NULL, "
                f"claimed_until = NULL WHERE id IN {clause}",
                params,
            )
    return keep


def mark_row(
    conn: Connection, row: Row, holder: str, result: SendResult, settings: Notifications, now: float
) -> str:
    """`mark` with a SendResult."""
    return mark(
        conn,
        row,
        holder,
        ok=result.ok,
        status_code=result.status,
        error=result.error,
        permanent=result.permanent,
        retry_after=result.retry_after,
        settings=settings,
        now=now,
    )


def recent(conn: Connection, *, limit: int = 20, incident_id: int | None = None) -> list[Row]:
    """The latest messages, newest first."""
    sql = "SELECT * FROM notifications"
    params: dict[str, Any] = {"limit": limit}
    if incident_id is not None:
        sql += " WHERE incident_id = :incident"
        params["incident"] = incident_id
    return conn.execute(sql + " ORDER BY id DESC LIMIT :limit", params)
