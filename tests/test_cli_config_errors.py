"""A broken config stops every command with one line per problem, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from quality_gates.config import render_starter

CASES = {
    "malformed": ("version: 1\nproviders: [\n", "quality-gates.yaml:3: malformed YAML"),
    "unknown key": (
        "version: 1\nprojetc: x\n",
        "quality-gates.yaml:2: projetc: unknown key 'projetc'; did you mean 'project'?",
    ),
    "wrong type": (
        "version: 1\nalerts:\n  evaluation_interval: often\n",
        "quality-gates.yaml:3: alerts.evaluation_interval: 'often' is not a duration",
    ),
    "unknown chain model": (
        render_starter().replace(
            "{primary: claude-3-5-haiku, secondary: llama-3-1-70b}",
            "{primary: claude-3-5-haiku, secondary: llama-4}",
        ),
        "environments.development.failover_chains[0].secondary: unknown model 'llama-4'",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_one_line_with_its_location_and_exit_2(qg, tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    (tmp_path / "quality-gates.yaml").write_text(text)
    result = qg("status", cwd=tmp_path)
    assert result.code == 2
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert expected in lines[0]
    assert "Traceback" not in result.err
    assert not (tmp_path / ".quality-gates").exists()  # nothing written
