"""`rules export`: Prometheus rules valid at the scrape interval with the promtool unit tests
they ship with, and an Alertmanager configuration that routes and inhibits as the watch does.
promtool and amtool come from the Debian packages prometheus and prometheus-alertmanager
(.ci/run installs both); without them these tests skip."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.conftest import Workspace

from quality_gates.config import load_config
from quality_gates.exports._prometheus import prometheus_rules
from quality_gates.units import parse_duration


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian package {package})")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=300)


def export_rules(qg, ws: Workspace, tmp_path: Path, *extra: str) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    rules, tests = tmp_path / "rules.yml", tmp_path / "tests" / "rules_test.yml"
    result = qg(*ws.cli_args(), "rules", "export", "-o", str(rules), "--tests", str(tests), *extra)
    assert result.code == 0, result.err
    return rules, tests


@pytest.mark.slow
@pytest.mark.parametrize("scrape", ["1m", "2m"])
def test_exported_rules_pass_their_promtool_unit_tests(
    sqlite_workspace: Workspace, qg, tmp_path: Path, scrape: str
) -> None:  # type: ignore[no-untyped-def]
    promtool = tool("promtool", "prometheus")
    rules, tests = export_rules(qg, sqlite_workspace, tmp_path, "--scrape-interval", scrape)
    checked = run(promtool, "check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    data = yaml.safe_load(tests.read_text())
    names = {t["name"] for t in data["tests"]}
    # Each exported alert fires on breaking traffic and stays quiet otherwise.
    assert {"provider-p95-latency-critical: breaks", "error-rate-critical: holds"} <= names
    assert "error-rate-critical: too few requests" in names
    assert "slo-availability-burn-1h-5m: burns" in names
    tested = run(promtool, "test", "rules", str(tests))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_unit_tests_catch_a_window_too_short_for_the_scrape_interval(
    sqlite_workspace: Workspace, qg, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """rate(...[1m]) at a 1-minute scrape never holds for 5 minutes: the export's 4m
    passes, the 1m the rule asks for fails."""
    promtool = tool("promtool", "prometheus")
    rules, tests = export_rules(qg, sqlite_workspace, tmp_path)
    data = yaml.safe_load(tests.read_text())
    data["tests"] = [t for t in data["tests"] if t["name"].startswith("provider-p95-latency")]
    tests.write_text(yaml.safe_dump(data))
    assert run(promtool, "test", "rules", str(tests)).returncode == 0
    rules.write_text(rules.read_text().replace("[4m]", "[1m]"))
    failed = run(promtool, "test", "rules", str(tests))
    assert failed.returncode != 0
    assert "provider-p95-latency-critical" in failed.stdout + failed.stderr


@pytest.mark.parametrize("scrape", [15.0, 60.0, 120.0, 300.0])
def test_every_window_spans_four_scrape_intervals(
    sqlite_workspace: Workspace, scrape: float
) -> None:
    config = load_config(sqlite_workspace.config_path).config
    export = prometheus_rules(config, scrape)
    ranges = [
        parse_duration(m)
        for group in export.data["groups"]
        for rule in group["rules"]
        for m in re.findall(r"\[(\w+?)(?:\]|:)", rule["expr"])
    ]
    assert ranges
    assert min(ranges) >= 4 * scrape
    p95 = next(
        r
        for r in export.data["groups"][0]["rules"]
        if r["alert"] == "provider-p95-latency-critical"
    )
    assert p95["for"] == "5m"
    assert (export.widened != []) == (scrape * 4 > 60)


def test_exported_rules_carry_the_watch_minimum_sample_and_labels(
    sqlite_workspace: Workspace,
) -> None:
    config = load_config(sqlite_workspace.config_path).config
    rules = {
        r["alert"]: r
        for g in prometheus_rules(config).data["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    cache = rules["cache-hit-rate-warning"]
    assert "increase(qg_gateway_cache_lookups_total" in cache["expr"]
    assert cache["expr"].rstrip().endswith(">= 100")
    assert rules["provider-server-errors-critical"]["labels"] == {
        "severity": "critical",
        "type": "provider",
        "metric": "server_error_rate",
        "priority": "P1",
    }
    assert rules["cost-increase-info"]["labels"]["priority"] == "P3"
    # A refused key never counts toward an error rate's denominator.
    assert 'error_class!="auth_failed"' in rules["error-rate-critical"]["expr"]


def test_rules_export_refuses_a_bad_scrape_interval(sqlite_workspace: Workspace, qg) -> None:  # type: ignore[no-untyped-def]
    result = qg(*sqlite_workspace.cli_args(), "rules", "export", "--scrape-interval", "soon")
    assert result.code == 2
    assert "--scrape-interval" in result.err
    result = qg(*sqlite_workspace.cli_args(), "rules", "export", "--tests", "t.yml")
    assert result.code == 2
    assert "--tests needs" in result.err


def test_alertmanager_config_passes_amtool_and_routes_like_the_watch(
    sqlite_workspace: Workspace, qg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    amtool = tool("amtool", "prometheus-alertmanager")
    monkeypatch.setenv("QG_SLACK_OPS_ALERTS_WEBHOOK", "https://hooks.slack.test/SECRET-TOKEN")
    target = tmp_path / "alertmanager.yml"
    result = qg(
        *sqlite_workspace.cli_args(), "rules", "export", "--format", "alertmanager",
        "-o", str(target), "--secrets-dir", "/run/secrets",
    )  # fmt: skip
    assert result.code == 0, result.err
    text = target.read_text()
    assert "SECRET-TOKEN" not in text
    assert "api_url_file: /run/secrets/QG_SLACK_OPS_ALERTS_WEBHOOK" in text
    checked = run(amtool, "check-config", str(target))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    def receivers(**labels: str) -> str:
        args = [f"{k}={v}" for k, v in labels.items()]
        routed = run(amtool, "config", "routes", "test", f"--config.file={target}", *args)
        assert routed.returncode == 0, routed.stdout + routed.stderr
        return routed.stdout.strip()

    # The runbook's routes: provider problems to ops, P0/P1 also paged; quality to the AI team.
    assert receivers(type="provider", priority="P1", environment="production") == (
        "ops-alerts,pagerduty"
    )
    assert receivers(type="performance", priority="P2") == "ops-alerts"
    assert receivers(type="quality", priority="P3") == "ai-team"
    assert receivers(type="security", priority="P0") == "security-alerts,pagerduty"
    data = yaml.safe_load(text)
    assert data["inhibit_rules"] == [
        {
            "source_matchers": ['metric="provider_availability"'],
            "target_matchers": ['metric=~"p95_latency|p99_latency|error_rate|server_error_rate"'],
            "equal": ["environment", "provider"],
        }
    ]
