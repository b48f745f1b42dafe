"""What a report is asked for: its type, period and filters, checked before anything is read."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from quality_gates.errors import UsageError
from quality_gates.units import DURATION_FORMS, parse_duration

REPORT_TYPES = (
    "summary",
    "detailed",
    "comparison",
    "incident",
    "quota-usage",
    "performance-impact",
    "failover-effectiveness",
)
# The runbook's "monthly comprehensive review" is the detailed report; others look at a day.
DEFAULT_PERIODS = {"detailed": "30d", "failover-effectiveness": "30d"}
DEFAULT_PERIOD = "24h"
MIN_PERIOD_S = 60.0
MAX_PERIOD_S = 400 * 86400.0


@dataclass(frozen=True)
class ReportRequest:
    """One report: `type`, the period [start, end], and optional filters."""

    type: str
    period: str
    start: float
    end: float
    environment: str | None = None
    model_id: str | None = None
    baseline_model: str | None = None
    incident_id: int | None = None
    at: float | None = None  # performance-impact: the change to look around

    @property
    def seconds(self) -> float:
        """The period's length."""
        return self.end - self.start


def parse_time(value: str, *, now: float) -> float:
    """Epoch seconds from ISO 8601 (`2026-11-27T10:00:00Z`), epoch seconds, or a duration
    meaning that long ago (`30m`)."""
    text = value.strip()
    try:
        return float(text)  # a bare number is epoch seconds; `30m` (with a unit) is ago
    except ValueError:
        pass
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--at {value!r} is not a time",
            hint="use ISO 8601 such as 2026-11-27T10:00:00Z, epoch seconds, or 30m (ago)",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def make_request(
    type: str,
    *,
    period: str | None = None,
    environment: str | None = None,
    model_id: str | None = None,
    baseline_model: str | None = None,
    incident_id: int | None = None,
    at: str | float | None = None,
    now: float | None = None,
) -> ReportRequest:
    """Check the arguments (UsageError, exit 2, names what is accepted) and fix the period."""
    now = time.time() if now is None else now
    if type not in REPORT_TYPES:
        from quality_gates._suggest import did_you_mean

        raise UsageError(
            f"unknown report type {type!r}{did_you_mean(type, REPORT_TYPES)}",
            hint=f"use one of {', '.join(REPORT_TYPES)}",
        )
    name = period or DEFAULT_PERIODS.get(type, DEFAULT_PERIOD)
    try:
        seconds = parse_duration(name, bare_unit="h")
    except ValueError:
        raise UsageError(
            f"--period {name!r} is not a duration", hint=f"use 24h, 7d, 30d or {DURATION_FORMS}"
        ) from None
    if not MIN_PERIOD_S <= seconds <= MAX_PERIOD_S:
        raise UsageError(
            f"--period {name!r} is out of range", hint="use between 1m and 400d (24h, 7d, 30d)"
        )
    if type == "incident" and incident_id is None:
        raise UsageError(
            "--type incident needs --incident N", hint="see `incident list --state all`"
        )
    when = None
    if at is not None:
        when = float(at) if isinstance(at, int | float) else parse_time(at, now=now)
    return ReportRequest(
        type=type,
        period=name,
        start=now - seconds,
        end=now,
        environment=environment,
        model_id=model_id,
        baseline_model=baseline_model,
        incident_id=incident_id,
        at=when,
    )
