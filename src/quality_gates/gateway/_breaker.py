"""Circuit breakers, one per deployment: closed -> open -> half-open -> closed.

A breaker opens after `consecutive_failures` failures in a row, or when the error rate over
the last `window` outcomes reaches `error_rate` (with at least `min_requests` outcomes). After
`open_for` it lets one trial through (half-open); `close_after` successes close it, a failure
opens it again. Live outcomes and active probes feed it alike, so a breaker can close with no
traffic at all. An operator can force a state (runtime setting `breaker:<deployment>`).
Transitions are reported to a listener, which shares them across processes through Redis.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from quality_gates.config import BreakerSettings

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

Listener = Callable[[str, str, float], None]


@dataclass
class BreakerView:
    """A breaker's state for /metrics, the heartbeat row and status."""

    deployment: str
    state: str
    forced: str | None
    opened_at: float | None
    consecutive_failures: int
    window_errors: int
    window_size: int


class CircuitBreaker:
    """The breaker of one deployment."""

    __slots__ = (
        "_trial",
        "changed_at",
        "consecutive",
        "deployment",
        "forced",
        "forced_until",
        "half_open_successes",
        "opened_at",
        "outcomes",
        "settings",
        "state",
        "window_errors",
    )

    def __init__(self, deployment: str, settings: BreakerSettings) -> None:
        self.deployment = deployment
        self.settings = settings
        self.state = CLOSED
        self.forced: str | None = None
        self.forced_until: float | None = None  # a forced state with an end ends by itself
        self.opened_at = 0.0
        self.changed_at = 0.0
        self.consecutive = 0
        self.half_open_successes = 0
        self.outcomes: deque[bool] = deque(maxlen=settings.window)
        self.window_errors = 0
        self._trial = False

    def forced_now(self, now: float) -> str | None:
        """The forced state in force at `now` (None once its end has passed)."""
        if self.forced is None or (self.forced_until is not None and now >= self.forced_until):
            return None
        return self.forced

    def current(self, now: float) -> str:
        """The state now (an open breaker past its cool-down reads half-open)."""
        forced = self.forced_now(now)
        if forced is not None:
            return forced
        if self.state == OPEN and now - self.opened_at >= self.settings.open_for:
            return HALF_OPEN
        return self.state

    def is_open(self, now: float) -> bool:
        """True when the breaker refuses traffic outright (for route ordering)."""
        return self.current(now) == OPEN

    def allow(self, now: float, listener: Listener | None = None) -> bool:
        """May a live request go to this deployment now? Half-open admits one trial at once."""
        forced = self.forced_now(now)
        if forced is not None:
            return forced == CLOSED
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now - self.opened_at < self.settings.open_for:
                return False
            self._enter(HALF_OPEN, now, listener)
        if self._trial:
            return False
        self._trial = True
        return True

    def record(
        self, success: bool, now: float, listener: Listener | None = None, *, probe: bool = False
    ) -> None:
        """Feed one outcome (a live attempt or, with `probe`, an active probe)."""
        if not probe:
            self._trial = False
        if len(self.outcomes) == self.outcomes.maxlen and not self.outcomes[0]:
            self.window_errors -= 1
        self.outcomes.append(success)
        if not success:
            self.window_errors += 1
        self.consecutive = 0 if success else self.consecutive + 1
        if self.forced_now(now) is not None:
            return
        if self.state == OPEN:
            if now - self.opened_at < self.settings.open_for:
                return  # stragglers and probes during the cool-down change nothing
            self._enter(HALF_OPEN, now, listener)
        if self.state == HALF_OPEN:
            if not success:
                self._enter(OPEN, now, listener)
                return
            self.half_open_successes += 1
            if self.half_open_successes >= self.settings.close_after:
                self._enter(CLOSED, now, listener)
            return
        if not success and self._tripped():
            self._enter(OPEN, now, listener)

    def _tripped(self) -> bool:
        s = self.settings
        if self.consecutive >= s.consecutive_failures:
            return True
        return len(self.outcomes) >= s.min_requests and (
            self.window_errors / len(self.outcomes) >= s.error_rate
        )

    def _enter(self, state: str, now: float, listener: Listener | None) -> None:
        self.state = state
        self.changed_at = now
        self._trial = False
        self.half_open_successes = 0
        if state == OPEN:
            self.opened_at = now
        if state == CLOSED:
            self.outcomes.clear()
            self.window_errors = 0
            self.consecutive = 0
        if listener is not None:
            listener(self.deployment, state, now)

    def apply_remote(self, state: str, at: float) -> None:
        """Adopt a transition another gateway process made at `at`, if it is newer than this
        breaker's own last transition (no listener call, so nothing echoes back)."""
        if at <= self.changed_at or state not in (OPEN, CLOSED):
            return
        self.state, self.changed_at, self._trial = state, at, False
        self.half_open_successes = 0
        if state == OPEN:
            self.opened_at = at
        else:
            self.outcomes.clear()
            self.window_errors = self.consecutive = 0

    def view(self, now: float) -> BreakerView:
        """A snapshot for reporting."""
        return BreakerView(
            self.deployment,
            self.current(now),
            self.forced_now(now),
            self.opened_at if self.state != CLOSED else None,
            self.consecutive,
            self.window_errors,
            len(self.outcomes),
        )


class BreakerBoard:
    """Every deployment's breaker, created on first use."""

    def __init__(self, settings: BreakerSettings, listener: Listener | None = None) -> None:
        self.settings = settings
        self.listener = listener
        self.breakers: dict[str, CircuitBreaker] = {}

    def get(self, deployment: str) -> CircuitBreaker:
        """The deployment's breaker."""
        breaker = self.breakers.get(deployment)
        if breaker is None:
            breaker = self.breakers[deployment] = CircuitBreaker(deployment, self.settings)
        return breaker

    def is_open(self, deployment: str, now: float) -> bool:
        """True when the deployment's breaker refuses traffic now."""
        breaker = self.breakers.get(deployment)
        return breaker is not None and breaker.is_open(now)

    def allow(self, deployment: str, now: float) -> bool:
        """May a live request go there now?"""
        return self.get(deployment).allow(now, self.listener)

    def record(self, deployment: str, success: bool, now: float, *, probe: bool = False) -> None:
        """Feed an outcome."""
        self.get(deployment).record(success, now, self.listener, probe=probe)

    def force(self, forced: dict[str, tuple[str, float | None]]) -> None:
        """Apply the forced states (state, end or None); deployments not named return to
        automatic, and so does each one whose end passes."""
        for deployment, breaker in self.breakers.items():
            state, until = forced.get(deployment, (None, None))
            breaker.forced, breaker.forced_until = state, until
        for deployment, (state, until) in forced.items():
            breaker = self.get(deployment)
            breaker.forced, breaker.forced_until = state, until

    def views(self, now: float) -> list[BreakerView]:
        """Every breaker's state."""
        return [b.view(now) for b in self.breakers.values()]
