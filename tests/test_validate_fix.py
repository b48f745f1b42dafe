"""`validate --fix`: a workspace with a plain-text secret, a missing previous-stable and a
pending migration is fixed by one run, and a second run is clean; the secret is never shown."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.conftest import make_workspace

from quality_gates.config import parse_config_text, render_starter
from quality_gates.registry import Actor, move_alias
from quality_gates.simulator import SimulatorThread, spec_from_provider

PASSWORD = "s3cretPassw0rdXYZ"


@pytest.fixture
def clean_environ() -> Iterator[None]:
    before = dict(os.environ)
    yield
    for name in set(os.environ) - set(before):
        del os.environ[name]


@pytest.fixture
def listener() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def broken_workspace(root: Path, ports: dict[str, int], hook_port: int):  # type: ignore[no-untyped-def]
    data = yaml.safe_load(render_starter("fix", {f"port_{n}": p for n, p in ports.items()}))
    del data["environments"]["production"]["aliases"]["previous-stable"]
    data["notifications"]["channels"][0]["url"] = (
        f"http://alerts:{PASSWORD}@127.0.0.1:{hook_port}/hook"
    )
    ws = make_workspace(root, f"sqlite:///{root / 'state.db'}", yaml.safe_dump(data))
    conn = ws.conn
    move_alias(
        conn,
        environment="production",
        alias="current",
        model_ref="claude-3-haiku",
        reason="a manual deploy",
        actor=Actor("tester"),
    )
    with conn.write():  # the store is behind the code: 0007 and 0008 undone
        conn.execute("DROP TABLE drill_runs")
        conn.execute("ALTER TABLE requests DROP COLUMN output_check")
        conn.execute("ALTER TABLE rollups DROP COLUMN outputs_checked")
        conn.execute("ALTER TABLE rollups DROP COLUMN outputs_invalid")
        conn.execute("UPDATE alembic_version SET version_num = '0006'")
    return ws


@pytest.mark.integration
def test_fix_repairs_secret_previous_stable_and_migration_and_a_second_run_is_clean(
    tmp_path: Path, qg, clean_environ: None, listener: int
) -> None:  # type: ignore[no-untyped-def]
    starter = parse_config_text(render_starter("fix"), "quality-gates.yaml").config
    specs = [spec_from_provider(p, starter.models, port=0) for p in starter.providers]
    with SimulatorThread(specs) as sims:
        ports = {name: sims[name].port for name in ("bedrock", "google", "meta")}
        ws = broken_workspace(tmp_path / "ws", ports, listener)
        args = [*ws.cli_args(), "validate", "-e", "production", "--json"]
        before = qg(*args)
        assert before.code == 1
        first = {r["check"]: r for r in json.loads(before.out)["results"]}
        assert first["migrations"]["status"] == "FAIL"
        assert first["secrets"]["status"] == "FAIL"
        assert first["rollback-readiness"]["status"] == "FAIL"
        config_before = ws.config_path.read_text()
        fixed = qg(*args, "--fix")
        assert fixed.code == 0, fixed.out + fixed.err
        report = {r["check"]: r for r in json.loads(fixed.out)["results"]}
        for name in ("migrations", "secrets", "rollback-readiness"):
            assert report[name]["status"] == "PASS", report[name]
            assert report[name]["evidence"]["fixed"] is True
        assert "claude-3-5-haiku" in report["rollback-readiness"]["summary"]
        again = qg(*args)
        assert again.code == 0, again.out
        second = json.loads(again.out)
        assert second["counts"]["FAIL"] == 0
        assert not any(r["evidence"].get("fixed") for r in second["results"])
    assert PASSWORD not in ws.config_path.read_text()
    secrets = ws.root / ".quality-gates" / "secrets.env"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert PASSWORD in secrets.read_text()
    for output in (before, fixed, again):
        assert PASSWORD not in output.out + output.err
    assert "${QG_NOTIFICATIONS_OPS_ALERTS_URL}" in ws.config_path.read_text()
    # The fix changed the secret's line and nothing else (byte-identical elsewhere).
    old_lines = config_before.splitlines(keepends=True)
    new_lines = ws.config_path.read_text().splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert len(changed) == 1
    assert PASSWORD in changed[0][0]
    assert "${QG_NOTIFICATIONS_OPS_ALERTS_URL}" in changed[0][1]
