"""quality-gates.yaml: the starter, defaults from the runbook, and errors with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from quality_gates.config import load_config, parse_config_text, render_starter
from quality_gates.errors import ConfigError, CredentialMissing


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "qg.yaml")
    assert caught.value.exit_code == 2
    return caught.value.problems


def test_starter_config_validates_without_warnings() -> None:
    loaded = parse_config_text(render_starter("demo"), "quality-gates.yaml")
    assert loaded.warnings == []
    assert {p.name for p in loaded.config.providers} == {"bedrock", "google", "meta"}
    assert loaded.config.environments["production"].aliases["current"] == "claude-3-5-haiku"


def test_defaults_are_the_runbooks_numbers() -> None:
    config = parse_config_text("version: 1\nenvironments: {production: {}}\n", "q.yaml").config
    t = config.environments["production"].thresholds
    assert (t.p95_latency_ms, t.throughput_rps, t.error_rate) == (1500.0, 20.0, 0.02)
    assert (t.accuracy, t.satisfaction, t.toxicity_rate) == (0.95, 4.0, 0.001)
    assert (t.availability, t.cache_hit_rate, t.resource_utilization) == (0.999, 0.8, 0.8)
    rules = {(r.metric, r.op, r.threshold, r.severity) for r in config.alerts.rules}
    assert ("error_rate", ">", 0.05, "critical") in rules
    assert ("error_rate", ">", 0.02, "warning") in rules
    assert ("p95_latency", ">", 3000.0, "critical") in rules
    assert ("p95_latency", ">", 1500.0, "warning") in rules
    assert ("provider_availability", "<", 0.95, "critical") in rules
    assert ("cache_hit_rate", "<", 0.70, "warning") in rules
    assert ("quality_score_decrease", ">", 0.05, "info") in rules
    assert ("cost_increase", ">", 0.20, "info") in rules
    assert any(r.metric == "unusual_traffic_pattern" for r in config.alerts.rules)
    severities = config.incidents.severities
    assert [severities[p].response_time for p in ("P0", "P1", "P2", "P3")] == [
        900,
        1800,
        7200,
        86400,
    ]
    matrix = {
        r.label: (r.primary, r.secondary, r.escalation_time) for r in config.incidents.escalation
    }
    assert matrix == {
        "Provider Outage": ("On-Call Engineer", "AI Team Lead", 1800),
        "Performance Issues": ("AI Team Lead", "Infrastructure Team", 3600),
        "Security Incidents": ("Security Team", "On-Call Engineer", 0),
        "Quality Issues": ("AI Team Lead", "Product Team", 7200),
    }


def test_malformed_yaml_names_the_line() -> None:
    found = problems("version: 1\nproviders:\n  - name: a\n    kind: [unclosed\n")
    assert len(found) == 1
    assert found[0].startswith("qg.yaml:")
    assert "malformed YAML" in found[0]


def test_unknown_key_suggests_the_nearest_valid_one() -> None:
    found = problems("version: 1\nenvironments:\n  production:\n    treshold: {}\n")
    assert found == [
        "qg.yaml:4: environments.production.treshold: unknown key 'treshold'; "
        "did you mean 'thresholds'?"
    ]


def test_wrong_type_names_file_line_and_field() -> None:
    text = (
        "version: 1\nproviders:\n  - {name: p, kind: openai}\nmodels:\n"
        "  - id: m\n    provider: p\n    price: {input_per_1k: cheap}\n"
    )
    found = problems(text)
    assert len(found) == 1
    assert found[0].startswith("qg.yaml:7: models[0].price.input_per_1k:")
    assert "'cheap'" in found[0]


def test_wrong_choice_suggests_the_valid_one() -> None:
    found = problems("version: 1\nproviders:\n  - name: p\n    kind: bedrok\n")
    assert found[0].startswith("qg.yaml:4: providers[0].kind: 'bedrok' is not one of")
    assert "did you mean 'bedrock'" in found[0]


def test_chain_naming_an_unknown_model_is_an_error_at_its_line() -> None:
    text = render_starter().replace(
        "{primary: claude-3-haiku, secondary: gemini-1-5-flash, tertiary: llama-3-1-70b}",
        "{primary: claude-3-haiku, secondary: gemini-flsh, tertiary: llama-3-1-70b}",
    )
    found = problems(text)
    assert len(found) == 1
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "gemini-flsh" in row)
    assert found[0].startswith(
        f"qg.yaml:{line}: environments.production.failover_chains[1]"
        ".secondary: unknown model 'gemini-flsh'; did you mean "
        "'gemini-1-5-flash'?"
    )


def test_every_problem_is_reported_once() -> None:
    text = (
        "version: 1\nproviders:\n  - {name: p, kind: openai}\n  - {name: p, kind: gemini}\n"
        "models:\n  - {id: m, provider: q}\n"
    )
    found = problems(text)
    assert len(found) == 2
    assert any("provider 'p' is defined twice" in f for f in found)
    assert any("unknown provider 'q'" in f for f in found)


def test_duplicate_keys_are_errors_not_silently_overwritten() -> None:
    found = problems("version: 1\nproject: a\nproject: b\n")
    assert found == ["qg.yaml:3: project: key 'project' appears twice (line 3)"]


@pytest.mark.parametrize("body", ["", "# only a comment\n", "- a list\n"])
def test_empty_or_non_mapping_file_is_a_clear_error(body: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(body, "qg.yaml")
    assert "qg.yaml" in str(caught.value)


def test_plain_text_secret_is_a_warning_with_its_line() -> None:
    text = (
        "version: 1\nproviders:\n  - name: g\n    kind: gemini\n"
        "    credentials: {api_key: AIzaSyA1234567890abcdefghijklmnopqrstu}\n"
        "notifications:\n  channels:\n"
        "    - {name: s, type: slack, url: 'https://hooks.slack.com/services/T0/B0/xyz'}\n"
        "  routes: []\n"
        "incidents:\n  contacts: {}\n  escalation: []\n"
    )
    loaded = parse_config_text(text, "qg.yaml")
    assert len(loaded.warnings) == 2
    assert loaded.warnings[0].startswith(
        "qg.yaml:5: providers[0].credentials.api_key: warning: plain-text secret"
    )
    assert loaded.warnings[1].startswith(
        "qg.yaml:8: notifications.channels[0].url: warning: plain-text secret"
    )


def test_env_references_are_not_secrets() -> None:
    text = (
        "version: 1\nnotifications:\n  channels:\n"
        "    - {name: s, type: slack, url: '${SLACK_URL}'}\n  routes: []\n"
        "incidents:\n  contacts: {}\n  escalation: []\n"
    )
    assert parse_config_text(text, "qg.yaml").warnings == []


def test_credential_must_name_an_environment_variable() -> None:
    found = problems(
        "version: 1\nproviders:\n  - name: g\n    kind: gemini\n"
        "    credentials: {api_key: not a var}\n"
    )
    assert "is not an environment variable name" in found[0]


def test_missing_credential_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_GEMINI_KEY", raising=False)
    config = parse_config_text(
        "version: 1\nproviders:\n  - name: g\n    kind: gemini\n"
        "    credentials: {api_key: MY_GEMINI_KEY}\n",
        "q.yaml",
    ).config
    with pytest.raises(CredentialMissing) as caught:
        config.providers[0].credential("api_key")
    assert caught.value.exit_code == 2
    assert "MY_GEMINI_KEY" in str(caught.value)
    assert config.providers[0].missing_credentials() == ["MY_GEMINI_KEY"]
    monkeypatch.setenv("MY_GEMINI_KEY", "k")
    assert config.providers[0].credential("api_key") == "k"


def test_simulator_fields_on_a_real_provider_are_refused() -> None:
    found = problems("version: 1\nproviders:\n  - {name: o, kind: openai, port: 9000}\n")
    assert found == ["qg.yaml:3: providers[0].port: port applies only to kind: simulator"]


def test_alert_rule_expression_is_parsed_in_the_metrics_unit() -> None:
    text = (
        "version: 1\nalerts:\n  rules:\n"
        "    - {name: slow, expr: 'p95_latency > 2.5s', severity: warning, for: 30s}\n"
    )
    rule = parse_config_text(text, "q.yaml").config.alerts.rules[0]
    assert (rule.metric, rule.op, rule.threshold, rule.for_) == ("p95_latency", ">", 2500.0, 30)


def test_alert_rule_with_unknown_metric_suggests_one() -> None:
    found = problems(
        "version: 1\nalerts:\n  rules:\n"
        "    - {name: x, expr: 'eror_rate > 5%', severity: warning}\n"
    )
    assert "unknown metric 'eror_rate'; did you mean 'error_rate'?" in found[0]
    assert found[0].startswith("qg.yaml:4: alerts.rules[0]:")


def test_traffic_accepts_the_runbooks_string_form() -> None:
    text = render_starter().replace("traffic: {}", 'traffic: "bedrock:50,google:30,meta:20"')
    env = parse_config_text(text, "q.yaml").config.environments["production"]
    assert env.traffic == {"bedrock": 50.0, "google": 30.0, "meta": 20.0}


def test_load_config_reads_a_file_and_refuses_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "quality-gates.yaml"
    path.write_bytes(b"version: 1\nproject: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_a_billion_laughs_config_is_refused_before_it_expands(tmp_path: Path) -> None:
    from quality_gates.config import load_config
    from quality_gates.errors import ConfigError

    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "quality-gates.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expands to over 100,000 YAML nodes"):
        load_config(path)


def test_a_config_over_a_mebibyte_is_refused_unparsed(tmp_path: Path) -> None:
    from quality_gates.config import load_config
    from quality_gates.errors import ConfigError

    path = tmp_path / "quality-gates.yaml"
    path.write_text("# " + "x" * (1024 * 1024) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="a config is at most"):
        load_config(path)
