"""Durations, ratios and latencies as the runbook writes them."""

from __future__ import annotations

import pytest

from quality_gates.units import (
    format_duration,
    format_ratio,
    parse_duration,
    parse_latency_ms,
    parse_ratio,
)


@pytest.mark.parametrize(
    ("text", "unit", "seconds"),
    [
        ("30s", "s", 30.0),
        ("5m", "s", 300.0),
        ("2h", "s", 7200.0),
        ("1d", "s", 86400.0),
        ("250ms", "s", 0.25),
        ("5", "m", 300.0),
        (5, "m", 300.0),
        ("0.5", "m", 30.0),
        ("immediate", "s", 0.0),
        ("1.5s", "m", 1.5),
    ],
)
def test_parse_duration_accepts_the_runbook_forms(
    text: str | int, unit: str, seconds: float
) -> None:
    assert parse_duration(text, bare_unit=unit) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "-5m", "5x", "nan"])
def test_parse_duration_refuses_anything_else_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="30s"):
        parse_duration(text)


def test_parse_ratio_reads_percentages_and_fractions() -> None:
    assert parse_ratio("2%") == 0.02
    assert parse_ratio("99.9%") == 0.999
    assert parse_ratio(0.05) == 0.05


@pytest.mark.parametrize("text", ["150%", "2", "-1%", "abc"])
def test_parse_ratio_refuses_values_outside_zero_to_one(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ratio(text)


def test_parse_latency_reads_seconds_and_milliseconds() -> None:
    assert parse_latency_ms("1.5s") == 1500.0
    assert parse_latency_ms("3000ms") == 3000.0
    assert parse_latency_ms(1500) == 1500.0


def test_formatting_is_short_and_exact() -> None:
    assert format_duration(0.0031) == "3.1 ms"
    assert format_duration(12.34) == "12.3 s"
    assert format_duration(303) == "5m 3s"
    assert format_duration(7800) == "2h 10m"
    assert format_ratio(0.9995) == "99.95%"
