"""Telemetry: request and attempt records, per-minute roll-ups, latency histograms."""

from quality_gates.telemetry._histogram import RELATIVE_ACCURACY, LatencyHistogram

__all__ = ["RELATIVE_ACCURACY", "LatencyHistogram"]
