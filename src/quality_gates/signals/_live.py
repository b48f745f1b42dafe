"""Sub-minute windows from the roll-ups' own growth.

A gateway rewrites its roll-up row for the current minute every flush (cumulative counts and
histograms). An evaluator that reads those rows every cycle can keep what each row grew by
since the previous read, stamped with the read's time: a series of slices a few seconds
wide. Windows shorter than the time the evaluator has been watching are then summed from
slices (the oldest one weighted by its overlap) instead of from whole minutes, so a 20 s
window means 20 s, and a burst shows at full strength within one cycle. Before the slices
cover a window, `_windows.read_window` serves it. The reads touch only the last two minutes'
rows, so the cost does not grow with traffic or history.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from quality_gates.signals._windows import (
    _NUMBERS,
    MINUTE,
    PROBE,
    Aggregate,
    SeriesKey,
    Window,
    WindowData,
    _add_classes,
    minute_of,
)
from quality_gates.store.db import Connection
from quality_gates.telemetry import LatencyHistogram

LIVE_SPAN = 600.0  # slices are kept this long; longer windows come from whole minutes
# minute, environment, alias, model, provider, kind, writer
RowKey = tuple[int, str, str, str, str, str, str]


@dataclass
class _Slice:
    start: float
    end: float
    requests: dict[SeriesKey, Aggregate] = field(default_factory=dict)
    attempts: dict[SeriesKey, Aggregate] = field(default_factory=dict)
    probes: dict[SeriesKey, Aggregate] = field(default_factory=dict)

    def series(self, kind: str) -> dict[SeriesKey, Aggregate]:
        """`request`, `attempt` or `probe` series."""
        if kind == "request":
            return self.requests
        return self.probes if kind == PROBE else self.attempts


def _aggregate(row: dict[str, Any], weight: float) -> Aggregate:
    agg = Aggregate()
    for name in _NUMBERS:
        setattr(agg, name, float(row[name] or 0) * weight)
    _add_classes(agg.errors_by_class, row["errors_by_class"], weight)
    agg.latency.add(LatencyHistogram.from_json(row["latency_hist"]), weight)
    agg.ttft.add(LatencyHistogram.from_json(row["ttft_hist"]), weight)
    return agg


class LiveTail:
    """The recent past in slices as wide as the evaluation interval."""

    def __init__(self, span: float = LIVE_SPAN) -> None:
        self.span = span
        self.since: float | None = None
        self.last_read: float | None = None
        self._rows: dict[RowKey, dict[str, Any]] = {}
        self._slices: deque[_Slice] = deque()

    def observe(self, conn: Connection, now: float, environment: str | None = None) -> None:
        """Read the last two minutes' roll-up rows and keep what grew since the last read."""
        params: dict[str, Any] = {"first": minute_of(now) - 1}
        sql = "SELECT * FROM rollups WHERE minute >= :first"
        if environment is not None:
            sql += " AND environment = :env"
            params["env"] = environment
        self.observe_rows(conn.execute(sql, params), now)

    def observe_rows(self, rows: list[dict[str, Any]], now: float) -> None:
        """Keep what each of these roll-up rows (the last two minutes') grew since the last
        read: from the store, or from a gateway's memory while the store is unreachable."""
        # Only the last two minutes are read, so after a longer gap growth was missed:
        # start over (whole minutes serve the windows meanwhile).
        first_read = self.last_read is None or now - self.last_read > MINUTE
        if first_read:
            self._slices.clear()
        piece = _Slice(now if first_read else (self.last_read or now), now)
        seen: dict[RowKey, dict[str, Any]] = {}
        for row in rows:
            key: RowKey = (
                int(row["minute"]),
                row["environment"],
                row["alias"],
                row["model_id"],
                row["provider"],
                row["kind"],
                row["writer"],
            )
            seen[key] = row
            if first_read:
                continue
            before = self._rows.get(key)
            if before is not None and (row["count"] or 0) < (before["count"] or 0):
                before = None  # a writer restarted under the same id: take the row whole
            if before is not None and before["updated_at"] == row["updated_at"]:
                continue
            delta = _aggregate(row, 1.0)
            if before is not None:
                delta.merge(_aggregate(before, -1.0))
            series = piece.series(str(row["kind"]))
            target = series.setdefault((key[1], key[2], key[3], key[4]), Aggregate())
            target.merge(delta)
        # Keep the snapshots of rows still being written (this minute and the last).
        self._rows = seen
        if first_read:
            self.since = now
        elif now > piece.start:
            self._slices.append(piece)
        self.last_read = now
        while self._slices and self._slices[0].end < now - self.span:
            self._slices.popleft()

    def covers(self, window: Window) -> bool:
        """True when slices span the whole window (and it ends now)."""
        return (
            self.since is not None
            and self.last_read is not None
            and window.end >= self.last_read
            and window.start >= self.since
            and window.seconds <= self.span
        )

    def read(self, window: Window) -> WindowData:
        """The window summed from slices; the oldest slice weighted by its overlap."""
        data = WindowData(window)
        for piece in self._slices:
            if piece.end <= window.start:
                continue
            width = piece.end - piece.start
            weight = 1.0 if width <= 0 else min(1.0, (piece.end - window.start) / width)
            for source, target in (
                (piece.requests, data.requests),
                (piece.attempts, data.attempts),
                (piece.probes, data.probes),
            ):
                for key, agg in source.items():
                    slot = target.setdefault(key, Aggregate())
                    if weight >= 1.0:
                        slot.merge(agg)
                    else:
                        slot.merge(_scaled(agg, weight))
        return data


def _scaled(agg: Aggregate, weight: float) -> Aggregate:
    out = Aggregate()
    for name in _NUMBERS:
        setattr(out, name, getattr(agg, name) * weight)
    out.errors_by_class = {k: v * weight for k, v in agg.errors_by_class.items()}
    for source, target in ((agg.latency, out.latency), (agg.ttft, out.ttft)):
        target.buckets = {k: v * weight for k, v in source.buckets.items()}
        target.zeros, target.count, target.total = (
            source.zeros * weight,
            source.count * weight,
            source.total * weight,
        )
    return out
