"""`serve --admin-port` and `dashboard` as a user runs them: real processes, real HTTP, a
clean stop on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from tests.conftest import Workspace
from tests.processes import cli_process
from tests.test_e2e_serve import NO_PROBES, chat, ready, simulators

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


@contextlib.contextmanager
def launched(ws: Workspace, *args: str) -> Iterator[tuple[dict[str, Any], subprocess.Popen[str]]]:
    """`quality-gates ARGS --json` in its own process group; yields its first JSON line."""
    log = ws.root / f"web-{time.monotonic_ns()}.log"
    with cli_process([*ws.cli_args(), *args, "--json"], cwd=ws.root, log=log) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, log.read_text()
        yield json.loads(line), proc


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def stop(proc: subprocess.Popen[str]) -> int:
    os.killpg(proc.pid, signal.SIGTERM)
    return proc.wait(40)


def test_serve_with_an_admin_port_serves_the_status_page_beside_the_gateway(
    tmp_path: Any,
) -> None:
    with (
        simulators(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}", NO_PROBES) as (
            ws,
            _sims,
        ),
        launched(ws, "serve", "--port", "0", "--admin-port", "0", "--no-watch") as (facts, proc),
    ):
        gateway, admin = facts["listen"], facts["admin"]
        deadline = time.monotonic() + 30
        while not ready(gateway):
            assert proc.poll() is None
            assert time.monotonic() < deadline, "the gateway did not become ready in 30 s"
            time.sleep(0.1)
        for n in range(5):
            assert chat(gateway, f"e2e web {n}")[0] == 200

        def service_status() -> str:
            code, body = get(f"{admin}/status.json")
            assert code == 200
            status: str = json.loads(body)["components"][0]["status"]
            return status

        deadline = time.monotonic() + 20
        while service_status() == "no_data":  # until the first heartbeat is stored
            assert time.monotonic() < deadline, "the status page never saw the gateway"
            time.sleep(0.2)
        assert service_status() == "operational"
        assert get(f"{admin}/status")[0] == 200
        assert get(f"{admin}/login")[0] == 200
        assert stop(proc) == 0


def test_dashboard_serves_until_sigterm(sqlite_workspace: Workspace) -> None:
    with launched(sqlite_workspace, "dashboard", "--port", "0") as (facts, proc):
        assert facts["environment"] == "production"
        deadline = time.monotonic() + 20
        while True:
            try:
                code, body = get(f"{facts['listen']}/status")
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not answer in 20 s"
                time.sleep(0.1)
        assert code == 200
        assert "AI service" in body
        code, _ = get(f"{facts['listen']}/dashboard.json")
        assert code == 401
        assert stop(proc) == 0
