"""Parsing and printing of the units the runbook speaks: durations, percentages, latencies.

Durations accept `30s`, `5m`, `2h`, `1d`, `250ms` or a bare number in a unit the caller names
(the runbook's `--duration 5` means minutes). Ratios accept `2%` or `0.02`.
"""

from __future__ import annotations

import math
import os
import re

_DURATION_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>ms|s|m|h|d|w)?\s*$", re.I)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
DURATION_FORMS = "a number with a unit such as 250ms, 30s, 5m, 2h or 1d"


def parse_duration(value: str | float | int, *, bare_unit: str = "s") -> float:
    """Seconds in `value`; a bare number is read in `bare_unit` (one of ms, s, m, h, d)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value) * _UNIT_SECONDS[bare_unit]
    else:
        if value.strip().lower() in ("immediate", "immediately", "0"):
            return 0.0
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; use {DURATION_FORMS}")
        unit = (match.group("unit") or bare_unit).lower()
        seconds = float(match.group("num")) * _UNIT_SECONDS[unit]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration; use {DURATION_FORMS}")
    return seconds


def parse_ratio(value: str | float | int) -> float:
    """A fraction from `2%`, `0.02` or `99.9%`; numbers above 1 without `%` are refused."""
    if isinstance(value, bool):
        raise ValueError(f"expected a ratio, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            ratio = round(float(text[:-1]) / 100.0, 12) if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a ratio; use a percentage like 2% or 0.02"
            ) from None
    else:
        ratio = float(value)
    if not math.isfinite(ratio) or ratio < 0 or ratio > 1:
        raise ValueError(f"{value!r} is not between 0% and 100%")
    return ratio


def parse_latency_ms(value: str | float | int) -> float:
    """Milliseconds from `1500ms`, `1.5s` or a bare number of milliseconds."""
    return parse_duration(value, bare_unit="ms") * 1000.0


def format_duration(seconds: float) -> str:
    """`0.8 ms`, `1.2 s`, `5m 3s`, `2h 10m`: short and exact enough for an incident."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    if seconds < 86400:
        hours, rest = divmod(round(seconds), 3600)
        return f"{hours}h {rest // 60}m" if rest // 60 else f"{hours}h"
    days, rest = divmod(round(seconds), 86400)
    return f"{days}d {rest // 3600}h" if rest // 3600 else f"{days}d"


def format_ratio(ratio: float, digits: int = 2) -> str:
    """`2.00%`; more digits are kept for ratios close to 100% such as 99.95%."""
    return f"{ratio * 100:.{digits}f}%"


MAX_DURATION_ENV = "QG_MAX_DURATION"


def bounded_duration(seconds: float | None) -> float | None:
    """`seconds` (None: until interrupted) capped by $QG_MAX_DURATION when it is set.

    The one knob that bounds every timed or continuous run (`monitor`, `watch`), so that a
    script running the runbook's commands as written (`--duration 15`, `--continuous`)
    finishes in bounded time.
    """
    raw = os.environ.get(MAX_DURATION_ENV)
    if not raw:
        return seconds
    try:
        cap = parse_duration(raw, bare_unit="s")
    except ValueError:
        raise ValueError(f"${MAX_DURATION_ENV}={raw!r}: {DURATION_FORMS}") from None
    return cap if seconds is None else min(seconds, cap)


def capped_duration(seconds: float) -> float:
    """A finite duration capped by $QG_MAX_DURATION (load and canary windows, pipeline
    monitoring), so the runbook's `pipeline` and `performance` finish in bounded time too."""
    bounded = bounded_duration(seconds)
    return seconds if bounded is None else bounded
