"""Charts as PNG bytes, drawn with matplotlib's Agg backend (no display needed).

Each chart is drawn from a section of the report document, so it shows exactly the figures
the tables show. matplotlib is in the `reports` extra: without it `available()` is False and
the renderings say the charts were left out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DPI = 110
SIZE = (8.0, 3.2)
HEADROOM = 1.25  # room above the highest value for the legend
COLOURS = {"p50": "#4c72b0", "p95": "#dd8452", "p99": "#c44e52", "target": "#55a868"}


@dataclass(frozen=True)
class Chart:
    """One drawn chart: its id (the file stem), the section it belongs to, a title, PNG bytes."""

    id: str
    section: str
    title: str
    png: bytes


def available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _times(points: list[dict[str, Any]]) -> list[datetime]:
    return [datetime.fromtimestamp(p["t"], tz=UTC) for p in points]


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _finish(fig: Any, ax: Any) -> bytes:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    locator = mdates.AutoDateLocator(tz=UTC, maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)
    ax.set_xlabel("time (UTC)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def latency_chart(data: dict[str, Any]) -> bytes:
    """P50, P95 and P99 per bucket with the P95 target."""
    points = data["points"]
    times = _times(points)
    fig, ax = _figure()
    for name in ("p50", "p95", "p99"):
        values = [p[f"{name}_ms"] for p in points]
        ax.plot(times, values, marker="o", markersize=3, label=name.upper(), color=COLOURS[name])
    ax.axhline(data["target_ms"], linestyle="--", color=COLOURS["target"], label="P95 target")
    ax.set_ylabel("latency (ms)")
    highest = max([data["target_ms"], *(p["p99_ms"] or 0.0 for p in points)])
    ax.set_ylim(0, highest * HEADROOM)
    ax.legend(loc="upper left", fontsize=8, ncols=4)
    return _finish(fig, ax)


def cost_chart(data: dict[str, Any]) -> bytes:
    """Cost per minute (bars) and tokens per minute (line, right axis) in each bucket: rates,
    so a bucket the data covers only in part (the first, the current) is not a false dip."""
    points = data["points"]
    times = _times(points)
    bucket = float(data["bucket_seconds"] or 60)
    minutes = [max(p["seconds"], 1.0) / 60.0 for p in points]
    cost = [p["cost"] / m for p, m in zip(points, minutes, strict=True)]
    used = [
        (p["input_tokens"] + p["output_tokens"]) / m for p, m in zip(points, minutes, strict=True)
    ]
    fig, ax = _figure()
    width = bucket / 86400.0 * 0.8  # in days, matplotlib's date unit
    ax.bar(times, cost, width=width, align="edge", color="#8172b3", label="cost per minute")
    ax.set_ylabel("USD per minute")
    ax.set_ylim(0, max(cost) * HEADROOM or 1)
    tokens = ax.twinx()
    middles = [t + timedelta(seconds=bucket / 2) for t in times]
    tokens.plot(middles, used, color="#937860", marker="o", markersize=3, label="tokens per minute")
    tokens.spines[["top"]].set_visible(False)
    tokens.set_ylabel("tokens per minute")
    tokens.set_ylim(0, max(used) * HEADROOM or 1)
    handles = ax.get_legend_handles_labels()
    more = tokens.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=8, ncols=2)
    return _finish(fig, ax)


def budget_chart(data: dict[str, Any]) -> bytes:
    """Share of the period's error budget spent, cumulative over time."""
    points = data["points"]
    budget = 1.0 - data["objective"]
    spent, seen, shares = 0.0, 0.0, []
    total = sum(p["requests"] for p in points)
    for p in points:
        spent += p["failed"]
        seen += p["requests"]
        allowed = budget * total
        shares.append(spent / allowed * 100.0 if allowed > 0 else 0.0)
    fig, ax = _figure()
    ax.plot(_times(points), shares, color="#c44e52", marker="o", markersize=3, label="spent")
    ax.axhline(100.0, linestyle="--", color=COLOURS["target"], label="whole budget")
    ax.set_ylabel("error budget spent (%)")
    ax.set_ylim(0, max([100.0, *shares]) * HEADROOM)
    ax.legend(loc="upper left", fontsize=8)
    return _finish(fig, ax)


DRAWERS = {
    "latency": ("latency", "Latency percentiles", latency_chart),
    "cost": ("cost-tokens", "Cost and tokens", cost_chart),
    "error_budget": ("error-budget", "Error budget spent", budget_chart),
}


def draw(document: dict[str, Any]) -> list[Chart]:
    """Every chart the document's sections call for (sections without data draw none)."""
    charts = []
    for section in document["sections"]:
        spec = DRAWERS.get(section["id"])
        if spec is None or section["empty"] or not section["data"].get("points"):
            continue
        stem, title, drawer = spec
        charts.append(Chart(stem, section["id"], title, drawer(section["data"])))
    return charts
