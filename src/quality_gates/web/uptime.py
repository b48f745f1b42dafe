"""Daily availability per component from the per-minute roll-ups (UTC days).

A provider's day: 1 - its failed upstream attempts / its attempts (kind `attempt`); the AI
service's day: 1 - failed client requests / requests (kind `request`). Client mistakes
(bad_request, content_filtered) do not count as failures, as in the watch plane's
provider availability. A day without a single call has no availability (None): the page
shows it as "no data", never as 100%.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from quality_gates.signals._windows import CLIENT_ERROR_CLASSES
from quality_gates.store.db import Connection

MINUTES_PER_DAY = 1440
SERVICE = "service"
PAST_DAYS_TTL_S = 600.0


@dataclass(frozen=True)
class Day:
    """One bar: the UTC date, calls and failures (None availability: no data)."""

    date: str
    calls: float
    failures: float

    @property
    def availability(self) -> float | None:
        """Share of calls that did not fail, or None without calls."""
        return 1.0 - self.failures / self.calls if self.calls > 0 else None


@dataclass(frozen=True)
class Uptime:
    """A component's bars, oldest first, and its availability over the days with data."""

    days: list[Day]

    @property
    def availability(self) -> float | None:
        """Call-weighted availability over the whole span, or None without any call."""
        calls = sum(d.calls for d in self.days)
        return 1.0 - sum(d.failures for d in self.days) / calls if calls > 0 else None

    @property
    def days_with_data(self) -> int:
        """How many bars have calls behind them."""
        return sum(1 for d in self.days if d.calls > 0)


Counts = dict[tuple[str, int], tuple[float, float]]


def day_counts(conn: Connection, environment: str, first_day: int, last_day: int) -> Counts:
    """(component, UTC day index) -> (calls, failures) for the days in [first, last]."""
    params = {
        "env": environment,
        "first": first_day * MINUTES_PER_DAY,
        "end": (last_day + 1) * MINUTES_PER_DAY,
    }
    where = "environment = :env AND minute >= :first AND minute < :end"
    day = f"minute / {MINUTES_PER_DAY}"
    calls: dict[tuple[str, int], float] = {}
    failures: dict[tuple[str, int], float] = {}
    for row in conn.execute(
        f"SELECT {day} AS day, provider, kind, SUM(count) AS n, SUM(errors) AS e FROM rollups "
        f"WHERE {where} GROUP BY {day}, provider, kind",
        params,
    ):
        key = _key(row)
        if key is None:
            continue
        calls[key] = calls.get(key, 0.0) + float(row["n"] or 0)
        failures[key] = failures.get(key, 0.0) + float(row["e"] or 0)
    # Client mistakes are not failures; only rows with errors carry classes worth reading.
    for row in conn.execute(
        f"SELECT {day} AS day, provider, kind, errors_by_class FROM rollups "
        f"WHERE {where} AND errors > 0",
        params,
    ):
        key = _key(row)
        if key is None or not row["errors_by_class"]:
            continue
        classes = json.loads(row["errors_by_class"])
        client = sum(float(classes.get(c, 0)) for c in CLIENT_ERROR_CLASSES)
        failures[key] = failures.get(key, 0.0) - client
    return {k: (n, max(failures.get(k, 0.0), 0.0)) for k, n in calls.items()}


def _bars(counts: Counts, names: list[str], first_day: int, last_day: int) -> dict[str, Uptime]:
    out = {}
    for name in names:
        bars = []
        for index in range(first_day, last_day + 1):
            n, failed = counts.get((name, index), (0.0, 0.0))
            bars.append(Day(_date(index), n, failed))
        out[name] = Uptime(bars)
    return out


def today_index(now: float) -> int:
    """The UTC day `now` falls in (days since the epoch)."""
    return int(now // 60) // MINUTES_PER_DAY


def daily_uptime(
    conn: Connection,
    environment: str,
    providers: list[str],
    *,
    days: int = 90,
    now: float | None = None,
) -> dict[str, Uptime]:
    """`service` and each provider -> its last `days` UTC days, today included."""
    today = today_index(time.time() if now is None else now)
    first = today - days + 1
    return _bars(day_counts(conn, environment, first, today), [SERVICE, *providers], first, today)


class UptimeHistory:
    """Daily bars with the finished days read once per `ttl` (they no longer change, bar a
    roll-up row written just after midnight) and today read on every call."""

    def __init__(self, ttl: float = PAST_DAYS_TTL_S) -> None:
        self.ttl = ttl
        self._past: dict[tuple[str, int, int], tuple[float, Counts]] = {}
        self._lock = threading.Lock()

    def uptime(
        self, conn: Connection, environment: str, providers: list[str], *, days: int, now: float
    ) -> dict[str, Uptime]:
        """Like `daily_uptime`, past days from memory."""
        today = today_index(now)
        first = today - days + 1
        key = (environment, first, today)
        with self._lock:
            cached = self._past.get(key)
        if cached is None or now - cached[0] > self.ttl:
            cached = (now, day_counts(conn, environment, first, today - 1))
            with self._lock:
                self._past = {key: cached}
        counts = {**cached[1], **day_counts(conn, environment, today, today)}
        return _bars(counts, [SERVICE, *providers], first, today)


def _key(row: dict[str, object]) -> tuple[str, int] | None:
    index = int(str(row["day"]))
    if row["kind"] == "request":
        return (SERVICE, index)
    if row["kind"] == "attempt":
        return (str(row["provider"]), index)
    return None


def _date(day_index: int) -> str:
    return datetime.fromtimestamp(day_index * 86400, tz=UTC).strftime("%Y-%m-%d")
