"""Silences: an operator mutes alerts that match some labels, with a comment and an expiry."""

from __future__ import annotations

import json
import time
from typing import Any

from quality_gates.alerts import _store
from quality_gates.alerts._rules import parse_matcher
from quality_gates.errors import NotFound, RegistryError, UsageError
from quality_gates.store import audit
from quality_gates.store.db import Connection

MAX_SILENCE_SECONDS = 30 * 86400.0


def add(
    conn: Connection,
    matchers: list[str],
    *,
    comment: str,
    duration: float,
    actor: str,
    starts_at: float | None = None,
    now: float | None = None,
) -> int:
    """Create a silence; returns its id. Needs a matcher, a comment and a duration."""
    now = time.time() if now is None else now
    if not matchers:
        raise UsageError(
            "a silence needs at least one matcher", hint="e.g. provider=bedrock alertname=~p95.*"
        )
    if not comment.strip():
        raise UsageError("a silence needs --comment: say why, for whoever is on call next")
    if duration <= 0 or duration > MAX_SILENCE_SECONDS:
        raise UsageError("--duration must be above 0 and at most 30d")
    try:
        parsed = [parse_matcher(m) for m in matchers]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    start = now if starts_at is None else starts_at
    with conn.write():
        silence_id = _store.insert_silence(
            conn,
            matchers=parsed,
            comment=comment,
            created_by=actor,
            starts_at=start,
            ends_at=start + duration,
            now=now,
        )
        audit.append(
            conn,
            actor=actor,
            action="silence.add",
            target=f"silence/{silence_id}",
            details={
                "matchers": [str(m) for m in parsed],
                "comment": comment,
                "ends_at": start + duration,
            },
            ts=now,
        )
    return silence_id


def listing(
    conn: Connection, *, include_expired: bool = False, now: float | None = None
) -> list[dict[str, Any]]:
    """Silences with their state (active, scheduled, expired) and the alerts they mute now."""
    now = time.time() if now is None else now
    muted: dict[int, list[str]] = {}
    for row in conn.execute(
        "SELECT rule, labels, silenced_by FROM alert_states WHERE silenced_by IS NOT NULL "
        "AND state IN ('pending', 'firing')"
    ):
        labels = json.loads(row["labels"])
        where = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        muted.setdefault(int(row["silenced_by"]), []).append(f"{row['rule']}{{{where}}}")
    out = []
    for row in _store.silence_rows(conn, include_expired=include_expired, now=now):
        if row["expired_at"] is not None or row["ends_at"] <= now:
            state = "expired"
        elif row["starts_at"] > now:
            state = "scheduled"
        else:
            state = "active"
        out.append(
            {
                "id": row["id"],
                "state": state,
                "matchers": json.loads(row["matchers"]),
                "comment": row["comment"],
                "created_by": row["created_by"],
                "created_at": row["created_at"],
                "starts_at": row["starts_at"],
                "ends_at": row["expired_at"] or row["ends_at"],
                "expired_by": row["expired_by"],
                "muting": muted.get(int(row["id"]), []),
            }
        )
    return out


def expire(conn: Connection, silence_id: int, *, actor: str, now: float | None = None) -> None:
    """End a silence now; the alerts it muted notify again at the next evaluation."""
    now = time.time() if now is None else now
    with conn.write():
        row = _store.get_silence(conn, silence_id, lock=True)
        if row is None:
            raise NotFound(
                f"there is no silence #{silence_id}", hint="see `quality-gates silence list`"
            )
        if row["expired_at"] is not None or row["ends_at"] <= now:
            raise RegistryError(f"silence #{silence_id} has already expired")
        _store.expire_silence(conn, silence_id, actor=actor, now=now)
        audit.append(
            conn,
            actor=actor,
            action="silence.expire",
            target=f"silence/{silence_id}",
            details={"matchers": json.loads(row["matchers"])},
            ts=now,
        )
