"""Alert rule semantics, free of I/O: `for`, `keep_firing_for`, inhibition and silences.

An alert is one rule for one set of labels. Its life follows Prometheus:

    inactive --holds--> pending --held for `for`--> firing --stopped holding for
       ^                   |                           `keep_firing_for`--> resolved
       +---stops holding---+                                                   |
       +------------------------------------holds again-----------------------+

A firing alert may be inhibited (a firing source alert with equal labels mutes it) or
silenced (an operator's silence matches its labels); either way it keeps its state, but it
opens no incident and sends nothing until the mute ends.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

PENDING, FIRING, RESOLVED, INACTIVE = "pending", "firing", "resolved", "inactive"
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class RuleSpec:
    """One evaluable rule: an alert rule from the config, or one burn-rate window of an SLO."""

    name: str
    metric: str
    op: str
    threshold: float
    window: float
    for_: float
    keep_firing_for: float
    severity: str
    type: str
    group_by: tuple[str, ...]
    min_requests: float = 0.0
    baseline_window: float = 86400.0
    incident_severity: str | None = None
    summary: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    short_window: float | None = None  # burn-rate rules: the second (short) window
    slo: Mapping[str, Any] | None = None
    opens_incident: bool = True  # False: firing and resolving only notify
    baseline_floor: float = 0.0  # relative metrics: no verdict under this baseline
    recovery_window: float | None = None  # provider health: see _evaluate.sustained

    def holds(self, value: float | None) -> bool:
        """True when `value` breaks the threshold; no value never breaks it."""
        if value is None:
            return False
        return {
            ">": value > self.threshold,
            ">=": value >= self.threshold,
            "<": value < self.threshold,
            "<=": value <= self.threshold,
        }[self.op]

    @property
    def expression(self) -> str:
        """`error_rate > 0.05` in base units."""
        return f"{self.metric} {self.op} {self.threshold:g}"


@dataclass
class AlertState:
    """Where one alert stands; stored in `alert_states`."""

    fingerprint: str
    rule: str
    labels: dict[str, str]
    environment: str
    metric: str
    severity: str
    type: str
    state: str
    value: float | None
    threshold: float
    active_since: float
    updated_at: float
    summary: str
    fired_at: float | None = None
    last_true_at: float | None = None
    resolved_at: float | None = None
    silenced_by: int | None = None
    inhibited_by: str | None = None
    incident_id: int | None = None

    @property
    def muted(self) -> bool:
        """Silenced or inhibited."""
        return self.silenced_by is not None or self.inhibited_by is not None

    @property
    def notifiable(self) -> bool:
        """Firing and not muted: this alert may open or join an incident."""
        return self.state == FIRING and not self.muted

    def match_labels(self) -> dict[str, str]:
        """The labels silences match against (alertname, severity, metric, type, ...)."""
        return {
            **self.labels,
            "alertname": self.rule,
            "severity": self.severity,
            "metric": self.metric,
            "type": self.type,
        }


@dataclass(frozen=True)
class Transition:
    """An alert changed state."""

    alert: AlertState
    from_state: str
    to_state: str


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """A stable id for one rule and one set of labels."""
    text = json.dumps([rule, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def describe(spec: RuleSpec, labels: Mapping[str, str], value: float | None) -> str:
    """One line for people: what broke, where, by how much."""
    where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if v)
    shown = "no data" if value is None else _format(spec.metric, value)
    limit = _format(spec.metric, spec.threshold)
    text = spec.summary if spec.summary else f"{spec.metric} {spec.op} {limit}"
    return f"{text}: {shown} ({where})" if where else f"{text}: {shown}"


# How a metric reads in a sentence (an incident title).
METRIC_WORDS = {
    "provider_availability": "availability",
    "error_rate": "error rate",
    "server_error_rate": "5xx rate",
    "rate_limited_rate": "429 rate",
    "p50_latency": "median latency",
    "p95_latency": "P95 latency",
    "p99_latency": "P99 latency",
    "ttft_p95": "P95 time to first token",
    "throughput": "throughput",
    "cache_hit_rate": "cache hit rate",
    "quality_score": "quality score",
    "quality_score_decrease": "quality score drop",
    "toxicity_rate": "toxicity rate",
    "pii_rate": "PII rate",
    "refusal_rate": "refusal rate",
    "prompt_injection_rate": "prompt-injection rate",
    "invalid_output_rate": "invalid structured-output rate",
    "satisfaction": "user satisfaction",
    "cost_per_minute": "spend",
    "cost_increase": "cost rise",
    "unusual_traffic_pattern": "traffic anomaly score",
    "quota_utilization": "quota use",
    "resource_utilization": "resource use",
    "burn_rate": "error budget burn rate",
}
PROVIDER_NAMES = {
    "bedrock": "Bedrock",
    "google": "Gemini",
    "meta": "Meta",
    "anthropic": "Anthropic",
}


def sentence(spec: RuleSpec, labels: Mapping[str, str], value: float | None) -> str:
    """An alert as a person says it: `Bedrock availability 89.7% (below 95%) in production`."""
    words = METRIC_WORDS.get(spec.metric, spec.metric.replace("_", " "))
    provider = labels.get("provider")
    subject = provider[:1].upper() + provider[1:] if provider else labels.get("model_id")
    head = f"{subject} {words}" if subject else words[:1].upper() + words[1:]
    side = "above" if spec.op in (">", ">=") else "below"
    shown = "no data" if value is None else _format(spec.metric, value)
    where = labels.get("environment")
    return f"{head} {shown} ({side} {_format(spec.metric, spec.threshold)})" + (
        f" in {where}" if where else ""
    )


def _format(metric: str, value: float) -> str:
    if metric.endswith("_latency") or metric == "ttft_p95":
        return f"{value:.0f} ms"
    if metric in ("throughput",):
        return f"{value:.2f} req/s"
    if metric == "burn_rate":
        return f"{value:.1f}x"
    if metric in ("unusual_traffic_pattern", "satisfaction"):
        return f"{value:.2f}"
    if metric == "routine_failed":
        return "failed" if value > 0.5 else "passed"
    if metric == "cost_per_minute":
        return f"${value:.4f}/min"
    return f"{value * 100:.2f}%"


def step(
    spec: RuleSpec,
    labels: Mapping[str, str],
    value: float | None,
    previous: AlertState | None,
    now: float,
) -> tuple[AlertState | None, Transition | None]:
    """Advance one alert by one evaluation; returns its new state (None: inactive) and the
    transition, if any."""
    holds = spec.holds(value)
    summary = describe(spec, labels, value)
    active = previous if previous is not None and previous.state != RESOLVED else None
    if active is None:
        if not holds:
            return previous, None
        first = AlertState(
            fingerprint=fingerprint(spec.name, labels),
            rule=spec.name,
            labels=dict(labels),
            environment=labels.get("environment", ""),
            metric=spec.metric,
            severity=spec.severity,
            type=spec.type,
            state=PENDING,
            value=value,
            threshold=spec.threshold,
            active_since=now,
            updated_at=now,
            summary=summary,
            last_true_at=now,
            incident_id=None,
            # A resolved alert that holds again keeps when it resolved: until a window has
            # passed, the evaluation judges it on the samples taken since (see `_evaluate`).
            resolved_at=previous.resolved_at if previous is not None else None,
        )
        if spec.for_ <= 0:
            first.state, first.fired_at = FIRING, now
        from_state = previous.state if previous is not None else INACTIVE
        return first, Transition(first, from_state, first.state)
    state = replace(active, value=value, updated_at=now, summary=summary)
    if holds:
        state.last_true_at = now
    if state.state == PENDING:
        if not holds:
            if state.resolved_at is not None:
                # Back to the resolved record it came from, which still bounds its samples.
                kept = replace(state, state=RESOLVED)
                return kept, Transition(state, PENDING, INACTIVE)
            return None, Transition(state, PENDING, INACTIVE)
        if now - state.active_since >= spec.for_:
            state.state, state.fired_at = FIRING, now
            return state, Transition(state, PENDING, FIRING)
        return state, None
    # firing
    last_true = state.last_true_at if state.last_true_at is not None else now
    if holds or now - last_true < spec.keep_firing_for:
        return state, None
    state.state, state.resolved_at = RESOLVED, now
    return state, Transition(state, FIRING, RESOLVED)


@dataclass(frozen=True)
class Inhibition:
    """While a `source_metric` alert fires, `target_metrics` alerts with equal labels are muted."""

    source_metric: str
    target_metrics: frozenset[str]
    equal: tuple[str, ...]


def apply_inhibitions(states: Sequence[AlertState], rules: Iterable[Inhibition]) -> None:
    """Set `inhibited_by` on every active alert muted by a firing source alert.

    Labels named in `equal` must match, and a label missing on one side counts as empty, so
    an environment-wide error-rate alert is not muted by one provider's availability alert.
    The environment always has to match.
    """
    rules = list(rules)
    firing = [s for s in states if s.state == FIRING]
    for target in states:
        target.inhibited_by = None
        if target.state not in (PENDING, FIRING):
            continue
        for rule in rules:
            if target.metric not in rule.target_metrics:
                continue
            source = next(
                (
                    s
                    for s in firing
                    if s.metric == rule.source_metric
                    and s.fingerprint != target.fingerprint
                    and s.environment == target.environment
                    and all(s.labels.get(n, "") == target.labels.get(n, "") for n in rule.equal)
                ),
                None,
            )
            if source is not None:
                target.inhibited_by = source.fingerprint
                break


@dataclass(frozen=True)
class Matcher:
    """`name=value`, `name!=value`, `name=~regex` or `name!~regex`."""

    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if the labels satisfy this matcher (a missing label is empty)."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


def parse_matcher(text: str) -> Matcher:
    """Read `provider=bedrock` (or `!=`, `=~`, `!~`); ValueError says what is accepted."""
    match = _MATCHER.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a matcher; use name=value, name!=value, name=~regex or name!~regex "
            "(e.g. provider=bedrock, alertname=~error-rate.*)"
        )
    name, op, value = match.groups()
    value = value.strip("\"'")
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{text!r}: the regular expression is invalid ({exc})") from None
    return Matcher(name, op, value)


@dataclass(frozen=True)
class Silence:
    """An operator's mute: all matchers must match; active in [starts_at, ends_at)."""

    id: int
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    expired_at: float | None = None

    def active(self, now: float) -> bool:
        """True while the silence applies."""
        return self.expired_at is None and self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if every matcher matches."""
        return all(m.matches(labels) for m in self.matchers)


def apply_silences(states: Sequence[AlertState], silences: Iterable[Silence], now: float) -> None:
    """Set `silenced_by` on every active alert that an active silence matches."""
    active = [s for s in silences if s.active(now)]
    for state in states:
        labels = state.match_labels()
        state.silenced_by = next((s.id for s in active if s.matches(labels)), None)
