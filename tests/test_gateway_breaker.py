"""Circuit breaker transitions, fed by traffic, by probes, by operators and by other replicas."""

from __future__ import annotations

from quality_gates.config import BreakerSettings
from quality_gates.gateway._breaker import CLOSED, HALF_OPEN, OPEN, BreakerBoard, CircuitBreaker

SETTINGS = BreakerSettings(
    consecutive_failures=3, error_rate=0.5, window=10, min_requests=6, open_for=10.0, close_after=2
)


def test_consecutive_failures_open_the_breaker() -> None:
    b = CircuitBreaker("p/m", SETTINGS)
    for t in range(2):
        b.record(False, float(t))
    assert b.current(2.0) == CLOSED
    b.record(False, 2.0)
    assert b.current(2.0) == OPEN
    assert not b.allow(5.0)


def test_error_rate_over_the_window_opens_the_breaker() -> None:
    b = CircuitBreaker("p/m", SETTINGS)
    for i, ok in enumerate([True, False, True, False, True, False]):
        b.record(ok, float(i))
    assert b.current(6.0) == OPEN


def test_after_the_cool_down_one_trial_goes_through_and_successes_close_it() -> None:
    b = CircuitBreaker("p/m", SETTINGS)
    for t in range(3):
        b.record(False, float(t))
    assert not b.allow(11.0)
    assert b.current(12.0) == HALF_OPEN
    assert b.allow(12.0)
    assert not b.allow(12.1)  # one trial at a time
    b.record(True, 12.2)
    assert b.allow(12.3)
    b.record(True, 12.4)
    assert b.current(12.5) == CLOSED


def test_a_failed_trial_opens_the_breaker_again() -> None:
    b = CircuitBreaker("p/m", SETTINGS)
    for t in range(3):
        b.record(False, float(t))
    assert b.allow(13.0)
    b.record(False, 13.1)
    assert b.current(13.2) == OPEN
    assert not b.allow(20.0)
    assert b.allow(23.2)


def test_probes_alone_open_and_close_a_breaker() -> None:
    board = BreakerBoard(SETTINGS)
    for t in range(3):
        board.record("p/m", False, float(t), probe=True)
    assert board.is_open("p/m", 3.0)
    board.record("p/m", True, 5.0, probe=True)  # during the cool-down: no change
    assert board.is_open("p/m", 5.0)
    board.record("p/m", True, 13.0, probe=True)
    assert board.get("p/m").current(13.0) == HALF_OPEN
    board.record("p/m", True, 18.0, probe=True)
    assert board.get("p/m").current(18.0) == CLOSED


def test_forced_states_override_and_clear() -> None:
    board = BreakerBoard(SETTINGS)
    board.force({"p/m": ("open", None)})
    assert not board.allow("p/m", 0.0)
    assert board.is_open("p/m", 0.0)
    board.force({"p/m": ("closed", None)})
    for t in range(5):
        board.record("p/m", False, float(t))
    assert board.allow("p/m", 5.0)
    board.force({})
    assert board.get("p/m").forced is None


def test_a_forced_state_with_an_end_returns_to_automatic_by_itself() -> None:
    board = BreakerBoard(SETTINGS)
    board.force({"p/m": ("open", 100.0)})
    assert not board.allow("p/m", 99.0)
    assert board.get("p/m").view(99.0).forced == "open"
    assert board.allow("p/m", 100.0)  # the end passed: the breaker decides again
    assert board.get("p/m").view(100.0).forced is None
    assert board.get("p/m").current(100.0) == CLOSED


def test_forced_settings_past_their_end_are_not_in_force() -> None:
    from quality_gates.gateway.runtime import forced_breakers

    values = {
        "breaker:a/x": {"state": "open", "actor": "ann", "until": 50.0},
        "breaker:b/y": {"state": "open", "actor": "bob"},
    }
    assert forced_breakers(values, 49.0) == {"a/x": ("open", 50.0), "b/y": ("open", None)}
    assert forced_breakers(values, 51.0) == {"b/y": ("open", None)}


def test_transitions_reach_the_listener_and_remote_ones_apply_only_if_newer() -> None:
    seen: list[tuple[str, str, float]] = []
    board = BreakerBoard(SETTINGS, listener=lambda d, s, at: seen.append((d, s, at)))
    for t in range(3):
        board.record("p/m", False, 100.0 + t)
    assert seen == [("p/m", OPEN, 102.0)]
    other = CircuitBreaker("p/m", SETTINGS)
    other.apply_remote(OPEN, 102.0)
    assert other.current(103.0) == OPEN
    other.apply_remote(CLOSED, 101.0)  # older than what it knows: ignored
    assert other.current(103.0) == OPEN
    other.apply_remote(CLOSED, 104.0)
    assert other.current(104.0) == CLOSED
