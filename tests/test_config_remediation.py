"""The `remediation:` and `emergency:` sections: defaults on, per-environment overrides,
clear errors, and a warning for a trigger that names no rule."""

from __future__ import annotations

import pytest

from quality_gates.config import parse_config_text, render_starter
from quality_gates.errors import ConfigError


def test_defaults_are_on_and_an_environment_override_lays_over_them() -> None:
    text = render_starter("t").replace(
        "    development: {enabled: false}",
        "    development: {enabled: false}\n"
        "    staging: {dry_run: true, failback: {healthy_for: 1m}}",
    )
    config = parse_config_text(text, "q.yaml").config
    production = config.remediation.policy("production")
    assert production.enabled
    assert not production.dry_run
    assert "quality-score-drop-critical" in production.rollback.triggers
    assert "quality-score-decrease-info" not in production.rollback.triggers  # info never acts
    staging = config.remediation.policy("staging")
    assert staging.dry_run
    assert staging.failback.healthy_for == 60.0
    assert staging.failback.steps == [0.25, 0.5, 1.0]
    assert not config.remediation.policy("development").enabled
    assert config.emergency.degraded.p95_latency_ms == 5000.0
    assert config.emergency.degraded.availability == 0.95


def test_failback_steps_must_rise_to_100_percent() -> None:
    text = render_starter("t").replace("steps: [25%, 50%, 100%]", "steps: [50%, 25%]")
    with pytest.raises(ConfigError, match="steps must rise and end at 100%"):
        parse_config_text(text, "q.yaml")


def test_a_trigger_naming_no_rule_is_a_warning_with_a_suggestion() -> None:
    text = render_starter("t").replace(
        "rollback: {triggers: [error-rate-critical,", "rollback: {triggers: [error-rate-critcal,"
    )
    loaded = parse_config_text(text, "q.yaml")
    assert any(
        "no alert rule is called 'error-rate-critcal'" in w and "error-rate-critical" in w
        for w in loaded.warnings
    )
