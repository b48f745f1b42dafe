"""Exports: the watch plane's signals published where operators already look.

Owns the interval exporters the evaluator calls (`_exporters`, with `_cloudwatch` for
CloudWatch PutMetricData and Logs, `_otel` for the window gauges and cycle spans), the
gateway's GenAI OpenTelemetry export (`_genai`, `_genai_export`), and the files `rules export`
and `dashboards export` write (`_prometheus`, `_promtool`, `_alertmanager`, `_grafana`).

Exports read from the watch, never the reverse: this room may import watch, alerts,
incidents, signals, the gateway's telemetry, the store, config and errors; no other room
imports it. The evaluator gets its exporters injected: the command line (or any other
composition root) passes `exporters_for` to `WatchService(exporters=...)` or
`watch_background(exporters=...)`. Light to import: `exporters_for` loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quality_gates.exports._exporters import exporters_for

__all__ = ["exporters_for"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from quality_gates.exports import _exporters

        value = getattr(_exporters, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'quality_gates.exports' has no attribute {name!r}")
