"""When a routine is due, free of I/O: cron slots in the job's timezone, one run per slot.

A slot is a moment the cron expression names. A job is due when its latest slot at `now` is
after the last slot it ran (or, for a job never run, after the moment the watch first saw
it: a new job does not run the slot before it existed). After a gap (the watch was down) only
the latest missed slot runs, once, and says it is late: by how much, and how many slots it
skipped. A job still running is never due.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

LATE_AFTER = 120.0  # a run starting this long after its slot is reported as late
MAX_COUNTED = 1000  # skipped slots are counted up to this many


def _croniter(cron: str, start: datetime) -> Any:
    from croniter import croniter

    return croniter(cron, start)


def _at(ts: float, timezone: str) -> datetime:
    # UTC needs no tz database (a slim container may lack one).
    zone = UTC if timezone == "UTC" else ZoneInfo(timezone)
    return datetime.fromtimestamp(ts, tz=UTC).astimezone(zone)


def latest_slot(cron: str, timezone: str, now: float) -> float:
    """The last slot at or before `now`."""
    # croniter's get_prev is strictly before its start; slots fall on whole seconds.
    start = _at(math.floor(now) + 1.0, timezone)
    return float(_croniter(cron, start).get_prev(datetime).timestamp())


def next_slot(cron: str, timezone: str, now: float) -> float:
    """The first slot after `now`."""
    return float(_croniter(cron, _at(now, timezone)).get_next(datetime).timestamp())


def slots_between(cron: str, timezone: str, after: float, until: float) -> int:
    """How many slots fall in (after, until] (counted up to MAX_COUNTED)."""
    it = _croniter(cron, _at(after, timezone))
    count = 0
    while count < MAX_COUNTED:
        if it.get_next(datetime).timestamp() > until:
            break
        count += 1
    return count


@dataclass(frozen=True)
class Due:
    """A slot to run now."""

    slot: float
    late: bool  # started well after its slot, or after missed slots
    skipped: int  # earlier slots since the last run that will not run
    delay: float  # seconds between the slot and the start

    def describe(self) -> str:
        """`on time`, or `late by 3h, 2 missed slots skipped`."""
        from quality_gates.units import format_duration

        parts = []
        if self.late and self.delay > 1.0:
            parts.append(f"late by {format_duration(self.delay)}")
        if self.skipped:
            parts.append(f"{self.skipped} missed slot{'s' if self.skipped != 1 else ''} skipped")
        return ", ".join(parts) if parts else "on time"


def due(
    cron: str,
    timezone: str,
    *,
    now: float,
    last_slot: float | None,
    first_seen: float,
    running: bool,
    late_after: float = LATE_AFTER,
) -> Due | None:
    """The slot to run at `now`, if any: the latest slot after the last one run (or after
    `first_seen` for a job never run); None while a run of the job is still going."""
    if running:
        return None
    latest = latest_slot(cron, timezone, now)
    since = last_slot if last_slot is not None else first_seen
    if latest <= since:
        return None
    skipped = max(0, slots_between(cron, timezone, since, latest) - 1)
    delay = now - latest
    return Due(slot=latest, late=delay > late_after or skipped > 0, skipped=skipped, delay=delay)


def slot_values(slot: float, timezone: str) -> dict[str, str]:
    """The placeholders a command may use: `{date}` and `{month}` of the slot, local to the job."""
    local = _at(slot, timezone)
    return {"date": local.strftime("%Y-%m-%d"), "month": local.strftime("%Y-%m")}
