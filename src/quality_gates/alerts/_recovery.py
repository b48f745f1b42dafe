"""Provider health and latency alerts end when the problem ends, with or without traffic.

A provider whose traffic failed over still gets the gateways' active probes, and those count
as samples of its health metrics (`PROBED_METRICS`: availability, 5xx and 429 rates). The
rule's window alone would still hold the outage's failures (or a latency spike's slow
answers) for a whole window after the provider recovered, so each rule on these metrics and
on latency (`RECOVERING_METRICS`; latency counts client requests only, never probes) is
also judged on its latest samples, the way the short window of a multiwindow burn-rate
alert resets it when the problem ends (Google's SRE workbook, "Alerting on SLOs"); a new
alert, too, needs both windows to break the threshold:

- `recent`: the rule's metric over its recovery window (`recovery_window`: a sixth of its
  window, and at least two of the slowest probe rounds, so that two probes always fall in
  it), given when it holds `RECOVERY_MIN_SAMPLES` samples: the provider's latest outcomes.
- Fewer samples than that in the recovery window is no current evidence: no data, which
  never holds. A provider whose traffic failed over is judged on its probes; without probes
  (and for latency, which never counts them) its alerts end as its traffic does.
- When `recent` does not break the threshold, the alert does not hold: a recovered provider
  resolves within the recovery window plus the evaluation interval and `keep_firing_for`,
  and stale failures in the window cannot fire it again.
- A pending or firing alert whose window has fewer samples than `min_requests` (the probes
  of a provider traffic left) is judged on `recent`, so it keeps firing while the probes
  fail. A new alert still needs `min_requests` samples in its window.
- A new alert on a provider health metric also needs `ONSET_MIN_FAILURES` failed samples
  in its recovery window: one failed call or probe is no outage (a breaker opens on several
  in a row), so one probe timing out on an idle provider, in a window that short timescales
  fill with probes alone, opens nothing.
- When both break the threshold, the alert's value is the worse of the two: how the provider
  does now, which the incident's title and the severity table ("every provider down") read.
"""

from __future__ import annotations

from quality_gates.alerts._rules import FIRING, PENDING, AlertState, RuleSpec
from quality_gates.signals._metrics import PROBED_METRICS, Labels, MetricEngine

RECOVERING_METRICS = PROBED_METRICS | frozenset(
    {"p50_latency", "p95_latency", "p99_latency", "ttft_p95"}
)
# Two good samples in a row close a circuit breaker (close_after's default): the same two,
# with none failing, end a provider alert.
RECOVERY_MIN_SAMPLES = 2.0
# ...and two failed ones, at least, start one.
ONSET_MIN_FAILURES = 2.0
RECOVERY_SHARE = 6.0  # the recovery window: a sixth of the rule's window (10 s of 1 min)
# The gateway's prober waits `interval` after a round, and a round lasts at most its probes'
# timeout, max(interval, 1 s) (gateway/_health.Prober): rounds start at most this far apart.
PROBE_TIMEOUT_FLOOR = 1.0


def probe_round_gap(probe_interval: float) -> float:
    """The longest time between the starts of two probe rounds of one gateway."""
    return probe_interval + max(probe_interval, PROBE_TIMEOUT_FLOOR) if probe_interval > 0 else 0.0


def recovery_window(window: float, probe_interval: float) -> float:
    """The recent part of a provider rule's `window` that can end its alert: a sixth of it,
    and at least two of the slowest probe rounds (never more than the window). 1 min rules
    with 5 s probes: 20 s."""
    return min(window, max(window / RECOVERY_SHARE, 2.0 * probe_round_gap(probe_interval)))


def recent_seconds(spec: RuleSpec) -> float:
    """The rule's recovery window: its own, else a sixth of its window (never longer)."""
    return min(spec.recovery_window or spec.window / RECOVERY_SHARE, spec.window)


def recent_samples(
    engine: MetricEngine, spec: RuleSpec
) -> dict[Labels, tuple[float | None, float | None]]:
    """Per group, the metric over its recovery window (None under RECOVERY_MIN_SAMPLES) and,
    for a provider health metric, how many of those samples failed."""
    samples = engine.samples(
        spec.metric, recent_seconds(spec), spec.group_by, min_requests=RECOVERY_MIN_SAMPLES
    )
    out: dict[Labels, tuple[float | None, float | None]] = {}
    for sample in samples:
        failed = None
        if sample.value is not None and spec.metric in PROBED_METRICS:
            # availability counts the good share; the 5xx and 429 rates the bad one
            share = 1.0 - sample.value if spec.metric == "provider_availability" else sample.value
            failed = share * sample.volume
        out[sample.labels] = (sample.value, failed)
    return out


def judged(
    spec: RuleSpec,
    value: float | None,
    recent: float | None,
    previous: AlertState | None,
    failed: float | None = None,
) -> float | None:
    """The value an alert on a RECOVERING_METRICS metric is judged on (see the module's
    docstring); `failed`: how many of the recent samples failed (provider health metrics)."""
    if recent is None or not spec.holds(recent):
        return recent  # nothing current (no data), or the latest samples pass
    active = previous is not None and previous.state in (PENDING, FIRING)
    if not active and failed is not None and failed < ONSET_MIN_FAILURES - 1e-9:
        return None  # one failed sample is no outage
    if value is None:
        return recent if active else None
    if spec.holds(value):
        # Both break the threshold: say how bad it is now. A window that still holds the
        # minutes before an outage reads 85% while every recent call fails; the severity
        # table's "every provider down" reads this value.
        return min(value, recent) if spec.op in ("<", "<=") else max(value, recent)
    return value
