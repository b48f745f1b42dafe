"""Alert rules, SLO burn-rate rules and inhibitions; the runbook's alert set is the default."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, NonNegativeInt, model_validator

from quality_gates.config._base import Duration, Ratio, StrictModel
from quality_gates.units import parse_latency_ms

Severity = Literal["critical", "warning", "info"]
IncidentType = Literal["provider", "performance", "quality", "infrastructure", "security", "cost"]
Comparison = Literal[">", ">=", "<", "<="]

# metric name -> (unit, what it measures). Units: ratio (2% or 0.02), ms, rps, usd, score, z.
METRICS: dict[str, tuple[str, str]] = {
    "error_rate": ("ratio", "failed requests / requests"),
    "rate_limited_rate": ("ratio", "429 answers / upstream attempts and gateway probes"),
    "server_error_rate": ("ratio", "5xx answers / upstream attempts and gateway probes"),
    "p50_latency": ("ms", "median end-to-end latency"),
    "p95_latency": ("ms", "95th percentile end-to-end latency"),
    "p99_latency": ("ms", "99th percentile end-to-end latency"),
    "ttft_p95": ("ms", "95th percentile time to first token (streams)"),
    "throughput": ("rps", "requests per second"),
    "provider_availability": (
        "ratio",
        "successful upstream attempts and gateway probes / both, per provider",
    ),
    "cache_hit_rate": ("ratio", "cache hits / cacheable requests"),
    "quality_score": ("ratio", "online quality score of sampled live answers"),
    "quality_score_decrease": ("ratio", "relative drop of the quality score against its baseline"),
    "toxicity_rate": ("ratio", "answers flagged by the toxicity scorer / scored answers"),
    "pii_rate": ("ratio", "answers with PII / scored answers"),
    "refusal_rate": ("ratio", "sampled live answers that decline / scored answers"),
    "prompt_injection_rate": ("ratio", "sampled prompts that look like injection attempts"),
    "invalid_output_rate": (
        "ratio",
        "answers to tools / response_format requests whose tool arguments or JSON are "
        "unusable / such answers checked",
    ),
    "satisfaction": ("score", "mean 1-5 user feedback"),
    "cost_per_minute": ("usd", "spend per minute"),
    "cost_increase": ("ratio", "relative rise of cost per minute against its baseline"),
    "unusual_traffic_pattern": ("z", "robust z-score of throughput against its trailing median"),
    "quota_utilization": ("ratio", "highest of rpm/tpm/rpd use against the provider's quota"),
    "resource_utilization": ("ratio", "highest of CPU, memory, in-flight and queue use"),
}
GROUP_LABELS = ("environment", "alias", "model_id", "provider")
# Efficiency, not health: a rule on these notifies but opens no incident unless it says so.
EFFICIENCY_METRICS = frozenset({"cache_hit_rate", "cost_per_minute", "cost_increase"})
# The smallest baseline a relative rule compares against: under it, a rise or drop is noise
# (62,703,594% of a near-zero spend). Units: usd per minute; a quality score.
BASELINE_FLOORS = {"cost_increase": 0.01, "quality_score_decrease": 0.05}
PER_PROVIDER_METRICS = frozenset(
    {"provider_availability", "rate_limited_rate", "server_error_rate", "quota_utilization"}
)
_EXPR = re.compile(r"^\s*(?P<metric>[a-z_0-9]+)\s*(?P<op>>=|<=|>|<)\s*(?P<value>\S+)\s*$")


def parse_threshold(metric: str, value: float | str) -> float:
    """Read a threshold in the metric's unit: `5%` for ratios, `3000ms` or `3s` for latencies."""
    unit = METRICS[metric][0]
    if unit == "ms":
        return parse_latency_ms(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return round(float(text[:-1]) / 100.0, 12) if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"threshold {value!r} for {metric} is not a number") from None
    return float(value)


class AlertRule(StrictModel):
    """`metric op threshold` over `window`, true for `for`, kept firing for `keep_firing_for`.

    Write it as the runbook does (`expr: "error_rate > 5%"`) or field by field.
    """

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    expr: str | None = None
    metric: str | None = None
    op: Comparison | None = None
    threshold: float | str | None = None
    window: Duration = 60.0
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 60.0
    severity: Severity
    type: IncidentType = "performance"
    group_by: list[str] | None = None
    min_requests: NonNegativeInt = Field(20, description="no verdict on fewer requests")
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str | None = None
    baseline_window: Duration = Field(
        86400.0, description="what *_decrease, *_increase and unusual_* compare against"
    )
    incident_severity: Literal["P0", "P1", "P2", "P3"] | None = Field(
        None, description="override the severity table's classification of this rule's incidents"
    )
    incident: bool | None = Field(
        None,
        description="open an incident when it fires (default: critical and warning rules "
        "on health metrics; info and efficiency rules only notify)",
    )
    baseline_floor: float | None = Field(
        None,
        ge=0,
        description="*_increase / *_decrease: no verdict when the baseline is under this "
        "(default: 0.01 usd/min for cost, 0.05 for quality scores)",
    )

    @model_validator(mode="after")
    def _normalise(self) -> AlertRule:
        if self.expr:
            match = _EXPR.match(self.expr)
            if not match:
                raise ValueError(
                    f"expr {self.expr!r} is not 'metric > value' (example: 'error_rate > 5%')"
                )
            self.metric, self.op = match.group("metric"), match.group("op")  # type: ignore[assignment]
            self.threshold = match.group("value")
        if self.metric is None or self.op is None or self.threshold is None:
            raise ValueError("give either expr or all of metric, op and threshold")
        if self.metric not in METRICS:
            from quality_gates._suggest import did_you_mean

            hint = did_you_mean(self.metric, METRICS)
            raise ValueError(f"unknown metric {self.metric!r}{hint}")
        self.threshold = parse_threshold(self.metric, self.threshold)
        unknown = [label for label in self.group_by or [] if label not in GROUP_LABELS]
        if unknown:
            raise ValueError(
                f"group_by {unknown[0]!r} is not a label; use {', '.join(GROUP_LABELS)}"
            )
        if self.group_by is None:
            per_provider = self.metric in PER_PROVIDER_METRICS
            self.group_by = ["environment", "provider"] if per_provider else ["environment"]
        return self

    @property
    def opens_incident(self) -> bool:
        """Whether firing opens (or joins) an incident, rather than only notifying."""
        if self.incident is not None:
            return self.incident
        return self.severity != "info" and self.metric not in EFFICIENCY_METRICS

    @property
    def floor(self) -> float:
        """The baseline floor in force for relative metrics (0 for the others)."""
        if self.baseline_floor is not None:
            return self.baseline_floor
        return BASELINE_FLOORS.get(str(self.metric), 0.0)

    @property
    def threshold_value(self) -> float:
        """The threshold in the metric's base unit (after normalisation it is a float)."""
        return float(self.threshold or 0.0)

    @property
    def expression(self) -> str:
        """`error_rate > 0.05`: the rule as one line, in base units."""
        return f"{self.metric} {self.op} {self.threshold_value:g}"


class BurnWindow(StrictModel):
    """A multi-window burn-rate pair: fire when both windows burn faster than `factor`."""

    long: Duration
    short: Duration
    factor: float = Field(gt=0)
    severity: Severity


SRE_WORKBOOK_WINDOWS = [
    BurnWindow(long=3600, short=300, factor=14.4, severity="critical"),
    BurnWindow(long=21600, short=1800, factor=6.0, severity="critical"),
    BurnWindow(long=259200, short=21600, factor=1.0, severity="warning"),
]


class Slo(StrictModel):
    """A service level objective whose error budget burn is alerted on."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    sli: Literal["availability", "latency"] = "availability"
    objective: Ratio = 0.999
    latency_ms: float | None = Field(None, gt=0, description="latency SLI: good if faster")
    period: Duration = 30 * 86400.0
    windows: list[BurnWindow] = Field(default_factory=lambda: list(SRE_WORKBOOK_WINDOWS))
    type: IncidentType = "performance"


class InhibitRule(StrictModel):
    """While a `source_metric` alert fires, `target_metrics` alerts with equal labels are muted."""

    source_metric: str
    target_metrics: list[str]
    equal: list[str] = Field(default_factory=lambda: ["provider"])

    @model_validator(mode="after")
    def _known(self) -> InhibitRule:
        from quality_gates._suggest import did_you_mean

        for metric in [self.source_metric, *self.target_metrics]:
            if metric not in METRICS:
                raise ValueError(f"unknown metric {metric!r}{did_you_mean(metric, METRICS)}")
        for label in self.equal:
            if label not in GROUP_LABELS:
                raise ValueError(f"equal {label!r} is not a label; use {', '.join(GROUP_LABELS)}")
        return self


def _runbook_rules() -> list[AlertRule]:
    def rule(
        name: str, expr: str, severity: Severity, kind: IncidentType, **kw: object
    ) -> AlertRule:
        return AlertRule.model_validate(
            {"name": name, "expr": expr, "severity": severity, "type": kind, **kw}
        )

    return [
        rule("error-rate-critical", "error_rate > 5%", "critical", "provider"),
        rule("p95-latency-critical", "p95_latency > 3000ms", "critical", "performance"),
        rule(
            "provider-availability-critical", "provider_availability < 95%", "critical", "provider"
        ),
        rule("error-rate-warning", "error_rate > 2%", "warning", "provider"),
        rule("p95-latency-warning", "p95_latency > 1500ms", "warning", "performance"),
        rule(
            "cache-hit-rate-warning",
            "cache_hit_rate < 70%",
            "warning",
            "performance",
            window=900,
            min_requests=100,
        ),
        rule(
            "quality-score-decrease-info",
            "quality_score_decrease > 5%",
            "info",
            "quality",
            window=900,
            group_by=["environment", "model_id"],
            min_requests=10,
        ),
        # The quality rollback trigger: a drop that is large and significant (one-sided
        # Welch test on the sampled scores), not a dip in a handful of probes.
        rule(
            "quality-score-drop-critical",
            "quality_score_decrease > 5%",
            "critical",
            "quality",
            window=900,
            group_by=["environment", "model_id"],
            min_requests=10,
        ),
        rule("cost-increase-info", "cost_increase > 20%", "info", "cost", window=900),
        # Structured outputs an application cannot parse (malformed tool arguments, JSON that
        # breaks its schema): worth a look, not a page, and only on a real sample.
        rule(
            "invalid-output-rate-warning",
            "invalid_output_rate > 5%",
            "warning",
            "quality",
            window=300,
            group_by=["environment", "model_id"],
            min_requests=50,
            incident=False,
        ),
        # The failover triggers: a provider answering 5xx or 429, or slow for five minutes.
        rule(
            "provider-server-errors-critical",
            "server_error_rate > 10%",
            "critical",
            "provider",
        ),
        rule(
            "provider-rate-limited-critical",
            "rate_limited_rate > 25%",
            "critical",
            "provider",
        ),
        rule(
            "provider-p95-latency-critical",
            "p95_latency > 3000ms",
            "critical",
            "provider",
            group_by=["environment", "provider"],
            **{"for": 300},
        ),
        rule(
            "unusual-traffic-pattern-info",
            "unusual_traffic_pattern > 3.5",
            "info",
            "security",
            window=300,
        ),
    ]


class AlertSettings(StrictModel):
    """How often rules run, which rules, which SLOs, which inhibitions."""

    evaluation_interval: Duration = 5.0
    rules: list[AlertRule] = Field(default_factory=_runbook_rules)
    slos: list[Slo] = Field(default_factory=lambda: [Slo(name="availability")])
    inhibit: list[InhibitRule] = Field(
        default_factory=lambda: [
            InhibitRule(
                source_metric="provider_availability",
                target_metrics=["p95_latency", "p99_latency", "error_rate", "server_error_rate"],
            )
        ]
    )
