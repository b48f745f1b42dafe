"""The check framework behind `validate`: registering a check, isolation, the verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from quality_gates.config import load_config, render_starter
from quality_gates.validation import CHECKS, CheckResult, ValidationContext, check, run_checks


@pytest.fixture
def context(tmp_path: Path) -> ValidationContext:
    path = tmp_path / "quality-gates.yaml"
    path.write_text(render_starter("t"))
    return ValidationContext("production", path, load_config(path))


@pytest.fixture
def extra_checks():  # type: ignore[no-untyped-def]
    before = dict(CHECKS)
    yield
    CHECKS.clear()
    CHECKS.update(before)


async def test_a_registered_check_runs_and_its_worst_status_decides(
    context: ValidationContext, extra_checks: None
) -> None:
    @check("always-warn", "an example", order=1)
    def warn(ctx: ValidationContext) -> list[CheckResult]:
        return [CheckResult("always-warn", "WARN", f"looked at {ctx.environment}")]

    report = await run_checks(context, ["config", "always-warn"])
    assert [r.check for r in report.results] == ["always-warn", "config"]
    assert report.status == "WARN"
    assert report.passed


async def test_a_check_that_raises_becomes_a_fail_not_a_crash(
    context: ValidationContext, extra_checks: None
) -> None:
    @check("broken", "raises")
    async def broken(ctx: ValidationContext) -> list[CheckResult]:
        raise RuntimeError("boom")

    report = await run_checks(context, ["broken"])
    assert report.results[0].status == "FAIL"
    assert "RuntimeError: boom" in report.results[0].summary
    assert not report.passed


def test_an_environment_uses_the_providers_of_its_models_and_traffic(
    context: ValidationContext,
) -> None:
    assert context.environment_models()[:2] == ["claude-3-5-haiku", "claude-3-haiku"]
    assert context.environment_providers() == ["bedrock", "google", "meta"]
    development = ValidationContext("development", context.config_path, context.loaded)
    assert development.environment_providers() == ["bedrock", "meta"]
