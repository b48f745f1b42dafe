"""Alert rule semantics: `for`, `keep_firing_for`, inhibition, silences (no store involved)."""

from __future__ import annotations

import pytest

from quality_gates.alerts._rules import (
    FIRING,
    INACTIVE,
    PENDING,
    RESOLVED,
    AlertState,
    Inhibition,
    RuleSpec,
    Silence,
    apply_inhibitions,
    apply_silences,
    parse_matcher,
    step,
)


def spec(**overrides: object) -> RuleSpec:
    values: dict[str, object] = {
        "name": "error-rate-critical",
        "metric": "error_rate",
        "op": ">",
        "threshold": 0.05,
        "window": 60.0,
        "for_": 10.0,
        "keep_firing_for": 30.0,
        "severity": "critical",
        "type": "provider",
        "group_by": ("environment",),
    }
    values.update(overrides)
    return RuleSpec(**values)  # type: ignore[arg-type]


LABELS = {"environment": "production"}


def run(rule: RuleSpec, values: list[tuple[float, float | None]]) -> list[str]:
    """Feed (time, value) pairs; return the state after each step ('inactive' for none)."""
    state: AlertState | None = None
    seen = []
    for now, value in values:
        state, _ = step(rule, LABELS, value, state, now)
        seen.append(state.state if state else INACTIVE)
    return seen


def test_alert_waits_for_its_for_duration_before_firing() -> None:
    assert run(spec(), [(0, 0.2), (5, 0.2), (9.9, 0.2), (10, 0.2)]) == [
        PENDING,
        PENDING,
        PENDING,
        FIRING,
    ]


def test_pending_alert_that_stops_holding_is_dropped_without_firing() -> None:
    assert run(spec(), [(0, 0.2), (5, 0.01), (6, 0.2)]) == [PENDING, INACTIVE, PENDING]


def test_zero_for_fires_on_the_first_breach() -> None:
    assert run(spec(for_=0.0), [(0, 0.2)]) == [FIRING]


def test_keep_firing_for_holds_a_recovered_alert_then_resolves() -> None:
    # keep_firing_for counts from the last evaluation at which the rule held (t=0)
    states = run(spec(for_=0.0), [(0, 0.2), (10, 0.0), (29, 0.0), (30, 0.0)])
    assert states == [FIRING, FIRING, FIRING, RESOLVED]


def test_a_breach_during_keep_firing_for_restarts_the_hold() -> None:
    states = run(spec(for_=0.0), [(0, 0.2), (20, 0.0), (25, 0.3), (50, 0.0), (54, 0.0), (55, 0.0)])
    assert states == [FIRING, FIRING, FIRING, FIRING, FIRING, RESOLVED]


def test_no_data_never_breaks_a_threshold() -> None:
    assert run(spec(for_=0.0), [(0, None)]) == [INACTIVE]
    assert run(spec(op="<", threshold=0.95, for_=0.0), [(0, None), (1, 0.9)]) == [INACTIVE, FIRING]


def test_resolved_alert_that_breaks_again_starts_pending_with_the_same_fingerprint() -> None:
    rule = spec(for_=5.0, keep_firing_for=0.0)
    state = None
    fingerprints = set()
    for now, value in [(0, 0.2), (5, 0.2), (6, 0.0), (7, 0.2)]:
        state, _ = step(rule, LABELS, value, state, now)
        assert state is not None
        fingerprints.add(state.fingerprint)
    assert state is not None
    assert state.state == PENDING
    assert len(fingerprints) == 1


def alert(rule: str, metric: str, provider: str | None, state: str = FIRING) -> AlertState:
    labels = {"environment": "production", **({"provider": provider} if provider else {})}
    new, _ = step(
        spec(name=rule, metric=metric, for_=0.0, threshold=0.5, op=">"), labels, 1.0, None, 0.0
    )
    assert new is not None
    new.state = state
    return new


AVAILABILITY_MUTES = Inhibition(
    "provider_availability", frozenset({"p95_latency", "error_rate"}), ("provider",)
)


def test_availability_alert_mutes_latency_and_errors_of_the_same_provider_only() -> None:
    source = alert("availability", "provider_availability", "bedrock")
    same = alert("latency-bedrock", "p95_latency", "bedrock")
    other = alert("latency-google", "p95_latency", "google")
    env_wide = alert("error-rate", "error_rate", None)
    apply_inhibitions([source, same, other, env_wide], [AVAILABILITY_MUTES])
    assert same.inhibited_by == source.fingerprint
    assert other.inhibited_by is None
    assert env_wide.inhibited_by is None  # no provider label: not this provider's alert
    assert source.inhibited_by is None
    assert same.muted
    assert not same.notifiable


def test_inhibition_lifts_when_the_source_stops_firing() -> None:
    source = alert("availability", "provider_availability", "bedrock", state=RESOLVED)
    target = alert("latency-bedrock", "p95_latency", "bedrock")
    target.inhibited_by = "stale"
    apply_inhibitions([source, target], [AVAILABILITY_MUTES])
    assert target.inhibited_by is None
    assert target.notifiable


def test_inhibition_needs_the_same_environment() -> None:
    source = alert("availability", "provider_availability", "bedrock")
    target = alert("latency-bedrock", "p95_latency", "bedrock")
    target.environment = "staging"
    apply_inhibitions([source, target], [AVAILABILITY_MUTES])
    assert target.inhibited_by is None


def test_silence_mutes_matching_alerts_only_while_active() -> None:
    bedrock = alert("latency-bedrock", "p95_latency", "bedrock")
    google = alert("latency-google", "p95_latency", "google")
    silence = Silence(
        7,
        (parse_matcher("provider=bedrock"), parse_matcher("alertname=~latency-.*")),
        starts_at=100.0,
        ends_at=200.0,
    )
    apply_silences([bedrock, google], [silence], now=150.0)
    assert bedrock.silenced_by == 7
    assert google.silenced_by is None
    apply_silences([bedrock, google], [silence], now=200.0)
    assert bedrock.silenced_by is None
    apply_silences([bedrock], [silence], now=99.0)
    assert bedrock.silenced_by is None


def test_expired_silence_mutes_nothing() -> None:
    target = alert("latency-bedrock", "p95_latency", "bedrock")
    silence = Silence(1, (parse_matcher("provider=bedrock"),), 0.0, 1e12, expired_at=5.0)
    apply_silences([target], [silence], now=10.0)
    assert target.silenced_by is None


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("provider=bedrock", {"provider": "bedrock"}, True),
        ("provider!=bedrock", {"provider": "google"}, True),
        ("severity=~crit.*", {"severity": "critical"}, True),
        ("severity!~crit.*", {"severity": "critical"}, False),
        ("provider=bedrock", {}, False),
        ("provider=", {}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["provider", "=bedrock", "provider=~(unclosed"])
def test_bad_matchers_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"matcher|regular expression"):
        parse_matcher(text)


def firing(
    metric: str, value: float, provider: str | None = None, severity: str = "critical"
) -> AlertState:
    state = alert(f"{metric}-{provider}", metric, provider)
    state.value, state.severity = value, severity
    state.type = "provider" if metric in ("error_rate", "provider_availability") else "performance"
    return state


def test_severity_table_p0_all_down_p1_several_providers_p2_one_p3_warnings() -> None:
    from quality_gates.incidents._incident_flow import classify

    env = {"bedrock", "google", "meta"}
    one = [firing("provider_availability", 0.8, "bedrock")]
    two = [*one, firing("provider_availability", 0.8, "google")]
    down = [firing("provider_availability", 0.1, p) for p in sorted(env)]
    assert classify(one[0], None, one, env, 0.5) == "P2"  # single provider
    assert classify(two[0], None, two, env, 0.5) == "P1"  # provider failures
    assert classify(down[0], None, down, env, 0.5) == "P0"  # every provider down
    assert classify(firing("error_rate", 0.2), None, [], env, 0.5) == "P1"  # high error rate
    assert classify(firing("error_rate", 0.6), None, [], env, 0.5) == "P0"  # all services down
    assert classify(firing("p95_latency", 4000.0), None, [], env, 0.5) == "P2"  # degradation
    assert classify(firing("error_rate", 0.03, severity="warning"), None, [], env, 0.5) == "P3"
    override = spec(incident_severity="P0")
    assert classify(firing("p95_latency", 4000.0), override, [], env, 0.5) == "P0"


def test_one_provider_slow_or_failing_is_p2_like_one_provider_down() -> None:
    from quality_gates.incidents._incident_flow import classify

    env = {"bedrock", "google", "meta"}
    slow = firing("p95_latency", 5000.0, "bedrock")
    slow.type = "provider"  # provider-p95-latency-critical, a failover trigger
    errors = firing("server_error_rate", 0.9, "bedrock")
    errors.type = "provider"
    assert classify(slow, None, [slow], env, 0.5) == "P2"
    assert classify(errors, None, [errors, slow], env, 0.5) == "P2"  # still one provider
    other = firing("server_error_rate", 0.9, "google")
    other.type = "provider"
    assert classify(errors, None, [errors, other], env, 0.5) == "P1"  # provider failures
    # Every provider down reads availability only: slow providers are not down.
    slow_all = []
    for name in sorted(env):
        state = firing("p95_latency", 5000.0, name)
        state.type = "provider"
        slow_all.append(state)
    assert classify(slow_all[0], None, slow_all, env, 0.5) == "P1"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("rules: [{name: x, expr: 'eror_rate > 5%', severity: critical}]", "did you mean"),
        (
            "rules: [{name: x, expr: 'error_rate > 5%', severity: critical, group_by: [region]}]",
            "not a label",
        ),
        (
            "inhibit: [{source_metric: provider_availability, target_metrics: [p95_latncy]}]",
            "unknown metric",
        ),
    ],
)
def test_bad_alert_config_is_one_line_with_the_fix(section: str, message: str) -> None:
    from quality_gates.config import parse_config_text
    from quality_gates.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config_text(f"version: 1\nalerts:\n  {section}\n", "q.yaml")
    assert any(message in line and "q.yaml:" in line for line in caught.value.problems)


def test_incident_titles_are_sentences() -> None:
    from quality_gates.alerts._rules import RuleSpec, sentence

    spec = RuleSpec(
        name="provider-availability-critical",
        metric="provider_availability",
        op="<",
        threshold=0.95,
        window=60.0,
        for_=0.0,
        keep_firing_for=60.0,
        severity="critical",
        type="provider",
        group_by=("environment", "provider"),
    )
    labels = {"environment": "production", "provider": "bedrock"}
    said = sentence(spec, labels, 0.897)
    assert said == "Bedrock availability 89.70% (below 95.00%) in production"
