"""Whether this process can reach its store: one state per store URL, shared by every thread.

A connection that dies (PostgreSQL cut, restarted, failed over; a SQLite file that cannot be
opened) marks the store down; the next successful connection marks it up again. Each change is
logged once (`store lost: ...`, `store back after 8.2 s`), never once per failed query, and
reconnecting waits an exponential backoff (capped at MAX_BACKOFF_S, so a process notices the
store's return within that time) during which callers fail fast with StoreUnavailable instead
of each waiting for a connect timeout. `qg_store_up` on /metrics reads `up`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("quality_gates.store")

FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 2.0


class StoreHealth:
    """Up or down, since when, and when the next reconnect may be tried."""

    def __init__(self, display: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.display = display
        self.clock = clock
        self.up = True
        self.reason: str | None = None
        self.down_since: float | None = None
        self.outages = 0
        self._failures = 0
        self._next_attempt = 0.0
        self._lock = threading.Lock()

    def may_connect(self) -> bool:
        """True when a (re)connect may be tried now: the store is up or the backoff elapsed."""
        with self._lock:
            return self.up or self.clock() >= self._next_attempt

    def retry_in(self) -> float:
        """Seconds until the next reconnect may be tried (0 when up)."""
        with self._lock:
            return 0.0 if self.up else max(0.0, self._next_attempt - self.clock())

    def lost(self, reason: str) -> None:
        """A connection failed or died: log once per outage, push the next attempt back."""
        with self._lock:
            now = self.clock()
            self._failures += 1
            backoff = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (self._failures - 1))
            self._next_attempt = now + backoff
            self.reason = reason
            if not self.up:
                return
            self.up = False
            self.down_since = now
            self.outages += 1
        log.error(
            "store lost: %s (%s); reconnecting with backoff up to %g s",
            reason,
            self.display,
            MAX_BACKOFF_S,
            extra={"category": "SYSTEM"},
        )

    def back(self) -> None:
        """A connection worked: log the outage's end and its length, once."""
        with self._lock:
            self._failures = 0
            self._next_attempt = 0.0
            if self.up:
                return
            self.up = True
            lasted = self.clock() - (self.down_since or self.clock())
            self.down_since = None
            self.reason = None
        log.warning(
            "store back after %.1f s (%s)", lasted, self.display, extra={"category": "SYSTEM"}
        )


def quiet() -> None:
    """In a helper process (the telemetry writer, the scoring process): its parent reports
    the outage, so the helper's own state lines would only repeat it."""
    log.disabled = True


_HEALTH: dict[str, StoreHealth] = {}
_HEALTH_LOCK = threading.Lock()


def health_of(key: str, display: str) -> StoreHealth:
    """The one StoreHealth of the store `key` in this process."""
    with _HEALTH_LOCK:
        health = _HEALTH.get(key)
        if health is None:
            health = _HEALTH[key] = StoreHealth(display)
        return health


class StoreHealthCollector:
    """`qg_store_up` (1 reachable, 0 lost), `qg_store_outages_total` and
    `qg_store_down_seconds` (of the outage in progress) for a Prometheus registry."""

    def __init__(self, health: StoreHealth) -> None:
        self.health = health

    def describe(self) -> list[object]:
        """Nothing up front (the registry calls collect)."""
        return []

    def collect(self) -> Iterator[object]:
        """The store's state now."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        health = self.health
        yield GaugeMetricFamily(
            "qg_store_up",
            "1 when this process reaches its store, 0 while it is lost",
            value=1 if health.up else 0,
        )
        yield CounterMetricFamily(
            "qg_store_outages", "Store outages this process lived through", value=health.outages
        )
        since = health.down_since
        yield GaugeMetricFamily(
            "qg_store_down_seconds",
            "Length of the store outage in progress (0 when up)",
            value=0.0 if since is None else max(0.0, health.clock() - since),
        )
