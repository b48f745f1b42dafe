"""What the canary checks about its traffic: before it starts, whether the alias's recent
request rate at the share asked for can reach the minimum sample in the duration (and what
would), and whether the candidate can be reached at all; after, the share it measured beside
the share it set, and which running gateways applied the setting.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from quality_gates.gateway.runtime import BREAKER_PREFIX
from quality_gates.store import settings
from quality_gates.store.db import Connection
from quality_gates.store.gate_runs import upstream_rate

RATE_WINDOW_S = 300.0  # the alias's recent rate is measured over the last 5 minutes
HEARTBEAT_FRESH_S = 15.0  # a gateway that beat this recently is running
SHARE_ALPHA = 0.001  # a served share this unlikely under the set one is reported as off
APPLY_POLL_S = 0.1  # how often the canary reads the heartbeats while gateways apply its share


@dataclass(frozen=True)
class SamplePlan:
    """The sample the canary can expect, from the alias's recent rate."""

    alias: str
    percent: float
    duration_s: float
    min_requests: int
    recent_requests: int
    rate_per_s: float
    gateways: int
    expected_canary: float
    expected_baseline: float
    duration_needed_s: float | None  # at this share; None: no recent traffic
    percent_range: tuple[float, float] | None  # shares that reach it in this duration

    @property
    def enough(self) -> bool:
        """Both sides can reach the minimum sample in the duration."""
        return (
            self.gateways > 0
            and min(self.expected_canary, self.expected_baseline) >= self.min_requests
        )

    def describe(self) -> str:
        """One line: the rate, what it gives, and what would do when it is not enough."""
        if self.gateways == 0:
            return (
                "no running gateway reports a heartbeat for this environment, so no request "
                "would reach the candidate (start `quality-gates serve` first)"
            )
        if self.recent_requests < 2:
            return (
                f"no requests reached the models on alias {self.alias} in the last "
                f"{RATE_WINDOW_S / 60:g} minutes, so the canary cannot reach {self.min_requests} "
                "requests per side"
            )
        line = (
            f"alias {self.alias} had {self.rate_per_s:.3g} requests/s reaching the models over "
            f"the last {RATE_WINDOW_S / 60:g} minutes: {self.percent:g}% for "
            f"{self.duration_s:g} s gives about {self.expected_canary:.0f} canary and "
            f"{self.expected_baseline:.0f} baseline requests ({self.min_requests} needed per side)"
        )
        if self.enough:
            return line
        ways = []
        if self.duration_needed_s is not None:
            ways.append(f"--duration {math.ceil(self.duration_needed_s)}s at this share")
        if self.percent_range is not None:
            low, high = self.percent_range
            ways.append(f"--traffic between {low:.3g} and {high:.3g} for this duration")
        return line + ("; it would take " + " or ".join(ways) if ways else "")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, with the verdict of the plan."""
        return {**asdict(self), "enough": self.enough, "detail": self.describe()}


def live_gateways(conn: Connection, environment: str, now: float) -> list[dict[str, Any]]:
    """Gateway processes of the environment with a fresh heartbeat (id, control version)."""
    return conn.execute(
        "SELECT id, control_version, heartbeat_at FROM gateway_instances "
        "WHERE environment = :env AND heartbeat_at >= :t ORDER BY id",
        {"env": environment, "t": now - HEARTBEAT_FRESH_S},
    )


async def wait_applied(
    conn: Connection,
    environment: str,
    version: int,
    *,
    timeout: float,
    sleep: Callable[[float], Awaitable[None]],
    clock: Callable[[], float],
) -> list[str]:
    """Wait until every running gateway's heartbeat reports control version `version` (or a
    later one) in force, for at most `timeout` seconds; the ids of those that did not."""
    deadline = clock() + timeout
    while True:
        now = clock()
        lagging = [
            str(g["id"])
            for g in live_gateways(conn, environment, now)
            if int(g["control_version"] or 0) < version
        ]
        if not lagging or now >= deadline:
            return lagging
        await sleep(APPLY_POLL_S)


def plan_sample(
    conn: Connection,
    environment: str,
    *,
    alias: str,
    percent: float,
    duration_s: float,
    min_requests: int,
    now: float,
) -> SamplePlan:
    """Expected canary and baseline samples at the alias's recent rate of requests that
    reach the models (cache hits and refusals before any upstream call are not judged)."""
    n, span = upstream_rate(conn, environment, alias, now - RATE_WINDOW_S, now)
    rate = n / span if n >= 2 and span > 0 else 0.0
    share = percent / 100.0
    needed_duration = None
    percent_range = None
    if rate > 0:
        needed_duration = min_requests / (rate * min(share, 1.0 - share)) if 0 < share < 1 else None
        low = 100.0 * min_requests / (rate * duration_s)
        if low <= 100.0 - low:
            percent_range = (low, 100.0 - low)
    return SamplePlan(
        alias,
        percent,
        duration_s,
        min_requests,
        n,
        rate,
        len(live_gateways(conn, environment, now)),
        rate * share * duration_s,
        rate * (1.0 - share) * duration_s,
        needed_duration,
        percent_range,
    )


def forced_open(conn: Connection, environment: str, deployment: str) -> dict[str, Any] | None:
    """The forced-open breaker setting of a deployment, if an operator or the watch plane
    forced it open."""
    value = settings.get(conn, environment, BREAKER_PREFIX + deployment)
    return value if isinstance(value, dict) and value.get("state") == "open" else None


@dataclass(frozen=True)
class ShareCheck:
    """The share served over the window against the share set."""

    set_percent: float
    canary: int
    total: int
    measured: float | None
    low: float | None  # 95% Clopper-Pearson interval of the measured share, in percent
    high: float | None
    p_value: float | None  # exact binomial test of the counts against the set share
    gateways: int
    lagging: list[str]  # gateways whose last heartbeat still reports an older control version

    @property
    def off(self) -> bool:
        """The counts are too unlikely under the set share (or a gateway did not apply it)."""
        return bool(self.lagging) or (self.p_value is not None and self.p_value < SHARE_ALPHA)

    def describe(self) -> str:
        """`measured 29.4% (95% CI 27.1-31.8%) of 1,520 requests vs 30% set`."""
        if self.measured is None:
            return f"no request was routed for the alias; {self.set_percent:g}% set"
        line = (
            f"measured {self.measured:.1f}% (95% CI {self.low:.1f}-{self.high:.1f}%) of "
            f"{self.total:,} requests vs {self.set_percent:g}% set"
        )
        if self.p_value is not None and self.p_value < SHARE_ALPHA:
            line += f": off (binomial p {self.p_value:.2g})"
        if self.lagging:
            line += f"; not applied by gateway(s) {', '.join(self.lagging)}"
        return line

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**asdict(self), "off": self.off, "detail": self.describe()}


def measure_share(
    conn: Connection,
    environment: str,
    *,
    percent: float,
    canary: int,
    total: int,
    version: int,
    applied_by: float,
    now: float,
) -> ShareCheck:
    """The share served (`canary` of `total` routed requests) against `percent`, and the
    gateways that beat after `applied_by` (when the window opened) still reporting a control
    version below `version`."""
    from scipy import stats as sps

    gateways = live_gateways(conn, environment, now)
    lagging = [
        str(g["id"])
        for g in gateways
        if float(g["heartbeat_at"]) >= applied_by and int(g["control_version"] or 0) < version
    ]
    if total == 0:
        return ShareCheck(percent, 0, 0, None, None, None, None, len(gateways), lagging)
    test = sps.binomtest(canary, total, min(max(percent / 100.0, 0.0), 1.0))
    interval = test.proportion_ci(0.95, method="exact")
    return ShareCheck(
        percent,
        canary,
        total,
        100.0 * canary / total,
        100.0 * interval.low,
        100.0 * interval.high,
        float(test.pvalue),
        len(gateways),
        lagging,
    )


def forced_reason(value: dict[str, Any]) -> str:
    """`by auto-remediation (automatic failover: ...)` from a forced breaker setting."""
    return f"by {value.get('actor') or 'someone'} ({value.get('reason') or 'no reason given'})"
