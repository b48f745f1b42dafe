"""Jinja filters: numbers and times as a person reads them (a dash where there is no data)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

DASH = "–"


def pct(value: Any, digits: int = 1) -> str:
    """0.9731 -> `97.3%`; None -> a dash. Never shows 100.0% for a value under 1."""
    if value is None:
        return DASH
    shown = f"{float(value) * 100:.{digits}f}"
    if float(value) < 1.0 and float(shown) >= 100.0:
        shown = f"{100 - 10**-digits:.{digits}f}"
    return f"{shown}%"


def ms(value: Any) -> str:
    """Milliseconds: `840 ms`, `2.31 s`; None -> a dash."""
    if value is None:
        return DASH
    number = float(value)
    return f"{number / 1000:.2f} s" if number >= 1000 else f"{number:.0f} ms"


def num(value: Any, digits: int = 1) -> str:
    """A plain number with `digits` decimals (none for whole values); None -> a dash."""
    if value is None:
        return DASH
    number = float(value)
    return f"{number:.0f}" if number == int(number) else f"{number:.{digits}f}"


def money(value: Any) -> str:
    """`$0.0123`; None -> a dash."""
    return DASH if value is None else f"${float(value):.4f}"


def utc(value: Any) -> str:
    """An ISO time or epoch seconds as `2025-03-04 14:03 UTC` (the browser shows local time)."""
    if value is None or value == "":
        return DASH
    if isinstance(value, int | float):
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def iso(value: Any) -> str:
    """Epoch seconds or an ISO string as ISO 8601 (for `<time datetime>`)."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz=UTC).isoformat(timespec="seconds")
    return str(value)


def ago(seconds: Any) -> str:
    """Seconds as `42 s`, `7 min`, `3 h 5 min`, `2 d 4 h`."""
    if seconds is None:
        return DASH
    s = int(float(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def span(seconds: Any) -> str:
    """A window in words: `20 seconds`, `5 minutes`, `1 hour`, `90 minutes`."""
    s = round(float(seconds))
    for unit, size in (("hour", 3600), ("minute", 60)):
        if s >= size and s % size == 0:
            n = s // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{s} second{'s' if s != 1 else ''}"


FILTERS = {
    "pct": pct,
    "ms": ms,
    "num": num,
    "money": money,
    "utc": utc,
    "iso": iso,
    "ago": ago,
    "span": span,
}
