"""One evaluation: metrics -> rule states -> inhibitions and silences -> incidents -> outbox.

Everything a cycle changes commits in one transaction, so two evaluators can never half-apply
a cycle; leadership (see `store._leader`) keeps a second one from acting at all.

Provider health and latency alerts end when the problem ends, with or without client
traffic: see `alerts._recovery`.

An alert that resolved does not fire again on the samples it already judged. Until one
window has passed since it resolved, a rule on a plain window metric (error and
availability rates, latency quantiles, cache and output rates) judges that alert on the
samples taken since it resolved, with the rule's `min_requests` counted over them: the
outage an incident already reported, still inside the window, cannot open a second one
when a single probe times out afterwards (Alertmanager's and PagerDuty's "flapping").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quality_gates.alerts._recovery import (
    RECOVERING_METRICS,
    judged,
    recent_samples,
    recent_seconds,
    recovery_window,
)
from quality_gates.alerts._rules import (
    FIRING,
    INACTIVE,
    PENDING,
    RESOLVED,
    AlertState,
    Inhibition,
    RuleSpec,
    Transition,
    apply_inhibitions,
    apply_silences,
    fingerprint,
    sentence,
    step,
)
from quality_gates.alerts._store import (
    active_silences,
    delete_state,
    load_states,
    prune_resolved,
    save_state,
)
from quality_gates.incidents._incident_flow import check_timers, sync_alerts
from quality_gates.routines._scheduler import ROUTINE_METRIC, routine_sample, routine_specs
from quality_gates.signals._live import LiveTail
from quality_gates.signals._metrics import SIMPLE_METRICS, MetricEngine, Quota, Sample
from quality_gates.signals._windows import Window, group
from quality_gates.store.db import Connection
from quality_gates.store.registry import set_meta
from quality_gates.units import format_duration

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

RESOLVED_KEPT_FOR = 7 * 86400.0
LAST_EVALUATION_KEY = "watch_last_evaluation"
SLO_MIN_REQUESTS = 20.0


def rule_specs(config: QualityGatesConfig) -> list[RuleSpec]:
    """The config's alert rules, SLO burn-rate windows and routine checks as evaluable
    rules."""
    specs = []
    probe_interval = config.gateway.breaker.probe_interval
    for rule in config.alerts.rules:
        group_by = tuple(rule.group_by or ("environment",))
        if "environment" not in group_by:
            group_by = ("environment", *group_by)
        specs.append(
            RuleSpec(
                name=rule.name,
                metric=str(rule.metric),
                op=str(rule.op),
                threshold=rule.threshold_value,
                window=rule.window,
                for_=rule.for_,
                keep_firing_for=rule.keep_firing_for,
                severity=rule.severity,
                type=rule.type,
                group_by=group_by,
                min_requests=float(rule.min_requests),
                baseline_window=rule.baseline_window,
                incident_severity=rule.incident_severity,
                summary=rule.summary,
                labels=dict(rule.labels),
                opens_incident=rule.opens_incident,
                baseline_floor=rule.floor,
                recovery_window=recovery_window(rule.window, probe_interval)
                if rule.metric in RECOVERING_METRICS
                else None,
            )
        )
    for slo in config.alerts.slos:
        for burn in slo.windows:
            name = f"slo-{slo.name}-burn-{_short(burn.long)}-{_short(burn.short)}"
            budget = 1.0 - slo.objective
            specs.append(
                RuleSpec(
                    name=name,
                    metric="burn_rate",
                    op=">",
                    threshold=burn.factor,
                    window=burn.long,
                    short_window=burn.short,
                    for_=0.0,
                    keep_firing_for=60.0,
                    severity=burn.severity,
                    type=slo.type,
                    group_by=("environment",),
                    min_requests=SLO_MIN_REQUESTS,
                    summary=(
                        f"SLO {slo.name} ({slo.objective * 100:g}% {slo.sli}, budget "
                        f"{budget * 100:g}%) burning faster than {burn.factor:g}x over "
                        f"{_short(burn.long)} and {_short(burn.short)}"
                    ),
                    slo={"sli": slo.sli, "objective": slo.objective, "latency_ms": slo.latency_ms},
                )
            )
    return specs + routine_specs(config)


def _short(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def inhibitions(config: QualityGatesConfig) -> list[Inhibition]:
    """The config's inhibition rules."""
    return [
        Inhibition(i.source_metric, frozenset(i.target_metrics), tuple(i.equal))
        for i in config.alerts.inhibit
    ]


def quotas(config: QualityGatesConfig) -> dict[str, Quota]:
    """Provider quotas from the config."""
    return {
        p.name: Quota(p.quotas.rpm, p.quotas.tpm, p.quotas.rpd)
        for p in config.providers
        if p.quotas.rpm or p.quotas.tpm or p.quotas.rpd
    }


def burn_samples(engine: MetricEngine, spec: RuleSpec) -> list[Sample]:
    """Burn rate of an SLO over both windows; the value is the smaller of the two, so it
    breaks the factor only when both windows burn that fast."""
    slo = spec.slo or {}
    budget = 1.0 - float(slo.get("objective", 0.999))
    latency = slo.get("sli") == "latency"
    out = []
    rates: list[dict[tuple[tuple[str, str], ...], tuple[float | None, float]]] = []
    for seconds in (spec.window, spec.short_window or spec.window):
        groups = group(engine.window(seconds, histograms=latency).requests, spec.group_by)
        rate: dict[tuple[tuple[str, str], ...], tuple[float | None, float]] = {}
        for key, agg in groups.items():
            if latency:
                bad = agg.latency.share_above(float(slo.get("latency_ms") or 0.0))
            else:
                bad = agg.availability_errors / agg.count if agg.count > 0 else None
            rate[key] = (None if bad is None or budget <= 0 else bad / budget, agg.count)
        rates.append(rate)
    long_rates, short_rates = rates
    for key, (long_burn, _n) in sorted(long_rates.items()):
        short_burn, short_count = short_rates.get(key, (None, 0.0))
        value = None
        if long_burn is not None and short_burn is not None and short_count >= spec.min_requests:
            value = min(long_burn, short_burn)
        out.append(Sample(key, value, short_count))
    return out


def recently_resolved(conn: Connection, since: float) -> dict[str, float]:
    """When each alert that resolved after `since` (and is resolved, or pending again)
    last resolved: one narrow read, not every stored state."""
    rows = conn.execute(
        "SELECT fingerprint, resolved_at FROM alert_states WHERE resolved_at >= :since "
        "AND state IN ('resolved', 'pending')",
        {"since": since},
    )
    return {str(row["fingerprint"]): float(row["resolved_at"]) for row in rows}


def since_resolved(
    engine: MetricEngine, spec: RuleSpec, labels: tuple[tuple[str, str], ...], seconds: float
) -> float | None:
    """The rule's metric for one group over the `seconds` since its alert resolved (None
    under the rule's `min_requests`). Rounded up to a tenth of a second, so that the groups
    that resolved in one cycle share one window read."""
    seconds = math.ceil(seconds * 10.0) / 10.0
    for sample in engine.samples(
        spec.metric, seconds, spec.group_by, min_requests=spec.min_requests
    ):
        if sample.labels == labels:
            return sample.value
    return None


@dataclass(frozen=True)
class LocalBreach:
    """A rule that breaks its threshold on one gateway's in-memory figures."""

    rule: str
    severity: str
    labels: dict[str, str]
    value: float
    sentence: str

    @property
    def key(self) -> str:
        """The alert's fingerprint."""
        return fingerprint(self.rule, self.labels)


@dataclass
class LocalEvaluation:
    """What the rules say on one gateway's own figures while the store is unreachable."""

    at: float
    breaches: list[LocalBreach] = field(default_factory=list)
    judged: list[str] = field(default_factory=list)  # rule names evaluated
    # rule name -> why not: a metric the roll-ups alone cannot give, or a window longer
    # than the figures this process has kept since it started watching
    skipped: dict[str, str] = field(default_factory=dict)


def evaluate_local(live: LiveTail, specs: list[RuleSpec], now: float) -> LocalEvaluation:
    """Judge the rules on `live` alone, the roll-ups this gateway keeps in memory: no store
    read, no state, no incident, no notification. Rules on plain window metrics whose window
    the figures cover are judged as `evaluate` would (recovery window included, no `for`);
    the rest are listed as skipped, with the reason."""
    out = LocalEvaluation(at=now)
    engine = MetricEngine(None, now, live=live)
    for spec in specs:
        if spec.metric not in SIMPLE_METRICS:
            out.skipped[spec.name] = f"{spec.metric} needs the store"
            continue
        windows = [spec.window]
        if spec.metric in RECOVERING_METRICS:
            windows.append(recent_seconds(spec))
        if not all(live.covers(Window.last(w, now)) for w in windows):
            out.skipped[spec.name] = (
                f"its {_short(spec.window)} window is longer than the figures kept"
            )
            continue
        out.judged.append(spec.name)
        recent = recent_samples(engine, spec) if spec.metric in RECOVERING_METRICS else {}
        for sample in engine.samples(
            spec.metric, spec.window, spec.group_by, min_requests=spec.min_requests
        ):
            value = sample.value
            if spec.metric in RECOVERING_METRICS:
                latest, failed = recent.get(sample.labels, (None, None))
                value = judged(spec, value, latest, None, failed)
            if value is None or not spec.holds(value):
                continue
            labels = {**spec.labels, **dict(sample.labels)}
            out.breaches.append(
                LocalBreach(spec.name, spec.severity, labels, value, sentence(spec, labels, value))
            )
    return out


@dataclass
class EvaluationReport:
    """What one evaluation found and changed."""

    at: float
    rules: int = 0
    series: int = 0
    pending: int = 0
    firing: int = 0
    muted: int = 0
    transitions: list[Transition] = field(default_factory=list)
    seconds: float = 0.0


def evaluate(
    conn: Connection,
    config: QualityGatesConfig,
    now: float | None = None,
    *,
    specs: list[RuleSpec] | None = None,
    live: LiveTail | None = None,
) -> EvaluationReport:
    """Evaluate every rule once and apply the consequences in one transaction. With `live`
    (kept across cycles by the service), short windows are exact to the cycle."""
    clock = time.perf_counter()
    now = time.time() if now is None else now
    specs = rule_specs(config) if specs is None else specs
    if live is not None:
        live.observe(conn, now)
    engine = MetricEngine(conn, now, quotas=quotas(config), live=live)
    # only an alert that resolved within its rule's window is judged since then
    resolved = recently_resolved(conn, now - max((s.window for s in specs), default=0.0))
    # rule, labels, value, and (RECOVERING_METRICS) the value of its latest samples and how
    # many of them failed
    observed: list[
        tuple[RuleSpec, dict[str, str], float | None, tuple[float | None, float | None]]
    ] = []
    notes: dict[str, str] = {}  # fingerprint -> a summary better than the rule's own
    for spec in specs:
        if spec.metric == ROUTINE_METRIC:
            value, note = routine_sample(conn, spec)
            if note is not None:
                labels = dict(spec.labels)
                notes[fingerprint(spec.name, labels)] = note
                observed.append((spec, labels, value, (None, None)))
            continue
        if spec.metric == "burn_rate":
            samples = burn_samples(engine, spec)
        else:
            samples = engine.samples(
                spec.metric,
                spec.window,
                spec.group_by,
                min_requests=spec.min_requests,
                baseline=spec.baseline_window,
                floor=spec.baseline_floor,
            )
        recent = recent_samples(engine, spec) if spec.metric in RECOVERING_METRICS else {}
        for sample in samples:
            labels = {**spec.labels, **dict(sample.labels)}
            value = sample.value
            since = resolved.get(fingerprint(spec.name, labels))
            if since is not None and spec.metric in SIMPLE_METRICS and now - since < spec.window:
                value = since_resolved(engine, spec, sample.labels, now - since)
            observed.append((spec, labels, value, recent.get(sample.labels, (None, None))))
    report = EvaluationReport(at=now, rules=len(specs), series=len(observed))
    with conn.write():
        states = load_states(conn)
        seen: set[str] = set()
        by_name = {s.name: s for s in specs}
        for spec, labels, value, (latest, failed) in observed:
            key = fingerprint(spec.name, labels)
            seen.add(key)
            if spec.metric in RECOVERING_METRICS:
                value = judged(spec, value, latest, states.get(key), failed)
            new, transition = step(spec, labels, value, states.get(key), now)
            if new is not None and key in notes:
                new.summary = notes[key]
            _apply(states, key, new, transition, report)
        # Series that vanished (no traffic at all) stop holding; rules removed from the
        # config resolve at once.
        for key, state in list(states.items()):
            if key in seen or state.state not in (PENDING, FIRING):
                continue
            known = by_name.get(state.rule)
            if known is None:
                transition = _retire(state, now)
                _apply(
                    states,
                    key,
                    None if transition.to_state == INACTIVE else state,
                    transition,
                    report,
                )
                continue
            new, transition = step(known, state.labels, None, state, now)
            _apply(states, key, new, transition, report)
        active = [s for s in states.values() if s.state in (PENDING, FIRING)]
        apply_inhibitions(active, inhibitions(config))
        apply_silences(active, active_silences(conn, now), now)
        sync_alerts(conn, config, by_name, states, report.transitions, now)
        for state in states.values():
            if state.state in (PENDING, FIRING, RESOLVED):
                save_state(conn, state)
        for transition in report.transitions:
            # A pending alert that came back from resolved stays a resolved record.
            if transition.to_state == INACTIVE and transition.alert.fingerprint not in states:
                delete_state(conn, transition.alert.fingerprint)
        check_timers(conn, config, now)
        prune_resolved(conn, now - RESOLVED_KEPT_FOR)
        set_meta(conn, LAST_EVALUATION_KEY, repr(now))
    report.pending = sum(1 for s in states.values() if s.state == PENDING)
    report.firing = sum(1 for s in states.values() if s.state == FIRING)
    report.muted = sum(1 for s in states.values() if s.state == FIRING and s.muted)
    report.seconds = time.perf_counter() - clock
    return report


def _apply(
    states: dict[str, AlertState],
    key: str,
    new: AlertState | None,
    transition: Transition | None,
    report: EvaluationReport,
) -> None:
    if new is None:
        states.pop(key, None)
    else:
        states[key] = new
    if transition is not None:
        report.transitions.append(transition)


def _retire(state: AlertState, now: float) -> Transition:
    if state.state == PENDING:
        return Transition(state, PENDING, INACTIVE)
    state.state, state.resolved_at, state.updated_at = RESOLVED, now, now
    state.summary = f"{state.summary} (rule removed from the config)"
    return Transition(state, FIRING, RESOLVED)


def describe_transition(transition: Transition) -> str:
    """`error-rate-critical firing: error_rate > 5.00%: 20.00% (environment=production)`."""
    alert = transition.alert
    age = ""
    if transition.to_state == RESOLVED and alert.fired_at:
        age = f" after {format_duration(alert.updated_at - alert.fired_at)}"
    return f"{alert.rule} {transition.from_state} -> {transition.to_state}{age}: {alert.summary}"
