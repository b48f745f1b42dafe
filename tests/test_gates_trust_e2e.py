"""The gates as a new user meets them during a simulated quality regression: `init`, the
simulators, then the runbook's quality check and the staging pipeline, run as commands.

Each test reproduces an example of issue 15: a provider change behind an unchanged model id
is measured (no reused answers), a baseline that never answered ends the gate with exit 4,
46 items cannot pass a threshold they do not evidence, and long gates say how far they are.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.processes import clean_env, cli_process

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def qg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quality_gates", *args],
        cwd=root,
        env=clean_env(QG_ACTOR="gate-test", COLUMNS="200"),
        text=True,
        capture_output=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`init` with free simulator ports and one attempt per call, the simulators running."""
    root = tmp_path_factory.mktemp("trust")
    assert qg(root, "init").returncode == 0
    config = root / "quality-gates.yaml"
    text = config.read_text()
    ports = {}
    for default in (9101, 9102, 9103):
        ports[default] = _free_port()
        text = text.replace(f"port: {default}", f"port: {ports[default]}")
    config.write_text(text)
    assert qg(root, "config", "set", "gates.max_attempts", "1").returncode == 0
    with cli_process(["simulate"], cwd=root, log=root / "simulate.log"):
        deadline = time.monotonic() + 30
        for port in ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, (root / "simulate.log").read_text()
                    time.sleep(0.1)
        yield root


@pytest.fixture
def healthy(workspace: Path) -> Iterator[Path]:
    assert qg(workspace, "simulate", "fault", "--provider", "bedrock", "--reset").returncode == 0
    yield workspace
    qg(workspace, "simulate", "fault", "--provider", "bedrock", "--reset")


def test_quality_check_asks_again_and_rejects_a_provider_side_regression(healthy: Path) -> None:
    first = qg(healthy, "offline", "--model-id", "current-model")
    assert first.returncode in (0, 3), first.stdout + first.stderr
    assert "every answer fresh" in first.stdout
    broken = qg(healthy, "simulate", "fault", "--provider", "bedrock", "--accuracy", "0.5")
    assert broken.returncode == 0, broken.stderr
    check = qg(healthy, "offline", "--model-id", "current-model")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "REJECT" in check.stdout
    assert "every answer asked afresh" in check.stdout
    headline = next(line for line in check.stdout.splitlines() if line.startswith("REJECT"))
    accuracy = float(headline.split("accuracy ")[1].split("%")[0])
    assert 30 < accuracy < 60, headline
    # Without a terminal, progress comes as plain lines on stderr: done, failed, time.
    assert "46/46 answers, 0 failed" in check.stderr


def test_reused_answers_are_said_in_the_verdict_and_the_stored_run(healthy: Path) -> None:
    qg(healthy, "offline", "--model-id", "current-model")
    reused = qg(healthy, "offline", "--model-id", "current-model", "--reuse-answers", "--json")
    assert reused.returncode in (0, 3), reused.stderr
    summary = json.loads(reused.stdout)
    assert summary["reused_answers"] == {"candidate": 46}
    assert "reused 46 candidate answers" in summary["headline"]
    assert any("46 answers reused from the answer store" in n for n in summary["notes"])
    assert "answers," not in reused.stderr  # --json: no progress lines
    legacy = qg(healthy, "offline", "--model-id", "current-model", "--no-cache", "--json")
    assert legacy.returncode in (0, 3), legacy.stderr
    assert json.loads(legacy.stdout)["reused_answers"] == {}


def test_a_pipeline_against_a_baseline_that_never_answered_exits_4(healthy: Path) -> None:
    """The staging baseline (previous-stable, claude-3-haiku) is overloaded on every call."""
    haiku = "anthropic.claude-3-haiku-20240307-v1:0"  # its name at the provider
    assert haiku in (healthy / "quality-gates.yaml").read_text()
    faulted = qg(
        healthy,
        "simulate", "fault", "--provider", "bedrock", "--model", haiku,
        "--set", "overloaded_rate=1",
    )  # fmt: skip
    assert faulted.returncode == 0, faulted.stderr
    result = qg(healthy, "pipeline", "staging", "--model-id", "production-model")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "baseline claude-3-haiku could not be measured: 46 of 46 calls failed" in result.stdout
    assert "overloaded 46" in result.stdout
    assert "APPROVE" not in result.stdout.splitlines()[0]


def test_a_46_item_check_is_conditional_with_the_items_that_would_decide(healthy: Path) -> None:
    result = qg(healthy, "offline", "--model-id", "current-model", "--json")
    summary = json.loads(result.stdout)
    checks = {t["metric"]: t for t in summary["thresholds"]}
    toxicity = checks["toxicity_rate"]
    assert toxicity["value"] == 0
    assert toxicity["verdict"] == "CONDITIONAL"
    assert toxicity["items_to_decide"] == 3838
    if checks["accuracy"]["value"] > 0.95:
        assert checks["accuracy"]["verdict"] == "CONDITIONAL"
    assert result.returncode == 3
