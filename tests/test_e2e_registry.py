"""The registry walk-through from the README, as separate processes on a fresh folder."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.processes import cli_process

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_init_status_rollback_history_audit(tmp_path: Path) -> None:
    assert run_cli("init", cwd=tmp_path).returncode == 0
    config = tmp_path / "quality-gates.yaml"
    text = config.read_text()
    bedrock = _free_port()
    text = text.replace("port: 9101", f"port: {bedrock}")
    for default in (9102, 9103):
        text = text.replace(f"port: {default}", f"port: {_free_port()}")
    config.write_text(text)
    down = run_cli(
        *("rollback", "--model-id", "current-model", "--previous-model", "last-known-good"),
        *("--reason", "Quality degradation detected"),
        cwd=tmp_path,
    )
    assert down.returncode == 1  # no simulator runs yet: the model to go back to is down
    assert "rollback to claude-3-haiku refused: the target is not healthy" in down.stderr
    with cli_process(["simulate"], cwd=tmp_path, log=tmp_path / "simulate.log"):
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", bedrock), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        _walk_through(tmp_path)


def _walk_through(tmp_path: Path) -> None:
    status = run_cli("status", "--environment", "production", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "claude-3-5-haiku" in status.stdout
    rollback = run_cli(
        "rollback",
        "--model-id",
        "current-model",
        "--previous-model",
        "last-known-good",
        "--reason",
        "Quality degradation detected",
        cwd=tmp_path,
        env={"QG_ACTOR": "oncall"},
    )
    assert rollback.returncode == 0, rollback.stderr
    history = json.loads(run_cli("history", "--json", "-n", "1", cwd=tmp_path).stdout)
    assert history[0]["actor"] == "oncall"
    assert history[0]["reason"] == "Quality degradation detected"
    verify = run_cli("audit", "verify", cwd=tmp_path)
    assert verify.returncode == 0
    assert verify.stdout.startswith("OK:")
    again = run_cli(
        "rollback",
        "--model-id",
        "claude-3-5-haiku",
        "--previous-model",
        "last-known-good",
        "--reason",
        "again",
        cwd=tmp_path,
    )
    assert again.returncode == 1
    assert "claude-3-5-haiku is not current in production" in again.stderr


def test_store_on_postgresql_by_environment_variable(tmp_path: Path, pg_schema_url: str) -> None:
    assert run_cli("init", cwd=tmp_path, env={"QG_DATABASE_URL": pg_schema_url}).returncode == 0
    status = run_cli("--json", "status", cwd=tmp_path, env={"QG_DATABASE_URL": pg_schema_url})
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["store"]["url"].startswith("postgresql://")
    assert not (tmp_path / ".quality-gates").exists()
