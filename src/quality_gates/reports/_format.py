"""Figures as text for the Markdown and HTML renderings: units, percentages, safe cells."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from quality_gates.units import format_duration

DASH = "-"


def ratio(value: float | None) -> str:
    """`2.00%`, with more digits near 0% and 100% (99.95%, 0.050%)."""
    if value is None:
        return DASH
    if value >= 0.99 or value < 0.01:
        return f"{value * 100:.3f}%"
    return f"{value * 100:.2f}%"


def value(amount: float | None, unit: str) -> str:
    """A figure in its unit: ms, s, ratio, req/s, score, usd, count."""
    if amount is None:
        return DASH
    if unit == "ms":
        return f"{amount:,.0f} ms" if amount >= 10 else f"{amount:.1f} ms"
    if unit == "s":
        return format_duration(amount)
    if unit == "ratio":
        return ratio(amount)
    if unit == "req/s":
        return f"{amount:,.2f} req/s"
    if unit == "score":
        return f"{amount:.2f}"
    if unit == "usd":
        if amount != 0 and abs(amount) < 0.01:
            return f"${amount:.6f}"
        return f"${amount:,.4f}" if abs(amount) < 100 else f"${amount:,.2f}"
    if unit == "count":
        return f"{amount:,.0f}" if float(amount).is_integer() else f"{amount:,.1f}"
    return f"{amount:g}"


def change(amount: float | None) -> str:
    """A relative change: `+12.5%`."""
    return DASH if amount is None else f"{amount * 100:+.1f}%"


def seconds(amount: float | None) -> str:
    """A duration, or a dash."""
    return DASH if amount is None else format_duration(amount)


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell and in the HTML made from it: no raw HTML, no
    column breaks, one line."""
    if text is None or text == "":
        return DASH
    # Only what could start an HTML tag or an entity is escaped: `p95 < 1.5 s` stays as
    # written in the Markdown, `<script>` and `&amp;` do not reach the HTML made from it.
    out = _ENTITY.sub(lambda m: "&amp;" + m.group(0)[1:], str(text))
    out = _TAG_START.sub("&lt;", out)
    return out.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


_ENTITY = re.compile(r"&(#?\w+;)")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


def when(iso_text: str | None) -> str:
    """`2026-11-27 10:00 UTC` from ISO 8601."""
    if not iso_text:
        return DASH
    stamp = datetime.fromisoformat(iso_text.replace("Z", "+00:00")).astimezone(UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")
