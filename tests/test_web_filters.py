"""How the pages write numbers and times."""

from __future__ import annotations

from quality_gates.web.filters import ago, ms, pct, span, utc


def test_a_share_under_one_is_never_written_as_100_percent() -> None:
    assert pct(0.99996, 2) == "99.99%"
    assert pct(1.0, 2) == "100.00%"
    assert pct(0.9731) == "97.3%"
    assert pct(None) == "–"


def test_latencies_read_in_ms_then_seconds() -> None:
    assert (ms(840.4), ms(2310), ms(None)) == ("840 ms", "2.31 s", "–")


def test_windows_and_ages_read_in_words() -> None:
    assert (span(20), span(300), span(3600), span(5400)) == (
        "20 seconds",
        "5 minutes",
        "1 hour",
        "90 minutes",
    )
    assert (ago(42), ago(420), ago(11100), ago(180000)) == ("42 s", "7 min", "3 h 5 min", "2 d 2 h")


def test_times_are_shown_in_utc() -> None:
    assert utc(0) == "1970-01-01 00:00 UTC"
    assert utc("2025-03-04T14:03:00Z") == "2025-03-04 14:03 UTC"
