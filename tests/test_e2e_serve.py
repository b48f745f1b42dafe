"""`quality-gates serve` as a user runs it: a real process (the lean server by default, uvicorn
or granian when the config asks, uvicorn's supervisor for --workers 2) in front of the
simulators.
Two processes on PostgreSQL and Redis: a rollback reaches both within a second and a breaker
opened by one is open on the other."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import REDIS_ENV, Workspace, make_workspace
from tests.processes import clean_env, cli_process, ready
from tests.test_gateway_simulator import INSTANT

from quality_gates.config import parse_config_text, render_starter
from quality_gates.registry import Actor, rollback
from quality_gates.simulator import SimulatorThread, spec_from_provider
from quality_gates.simulator.control import put_faults

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

NO_PROBES = """
gateway:
  control_poll: 0.1
  heartbeat: 0.5s
  breaker: {probe_interval: 0, open_for: 60s, consecutive_failures: 3}
  telemetry: {flush_interval: 100ms}
"""


@contextlib.contextmanager
def simulators(root: Path, db_url: str, extra: str) -> Iterator[tuple[Workspace, Any]]:
    config = parse_config_text(render_starter("e2e"), "quality-gates.yaml").config
    specs = [spec_from_provider(p, config.models, port=0) for p in config.providers]
    with SimulatorThread(specs) as sims:
        for sim in sims.running.values():
            put_faults(sim.base_url, {"reset": True, **INSTANT}, provider=sim.name)
        ports = {f"port_{n}": sims[n].port for n in ("bedrock", "google", "meta")}
        ws = make_workspace(root, db_url, render_starter("e2e", ports) + extra)
        try:
            yield ws, sims
        finally:
            ws.database.close_shared()


@contextlib.contextmanager
def serve(
    ws: Workspace,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
    facts: dict[str, Any] | None = None,
) -> Iterator[str]:
    """`quality-gates serve --port 0 --json` in its own process group; yields its URL (and
    puts the line it printed in `facts`)."""
    log = ws.root / f"serve-{time.monotonic_ns()}.log"
    args = [*ws.cli_args(), "serve", "--port", "0", "--json", *extra]
    with cli_process(args, cwd=ws.root, log=log, env=clean_env(**(env or {}))) as proc:
        assert proc.stdout is not None
        printed = json.loads(proc.stdout.readline())
        if facts is not None:
            facts.update(printed)
        url = printed["listen"]
        deadline = time.monotonic() + 30
        while not ready(url):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the gateway did not become ready in 30 s"
            time.sleep(0.1)
        yield url


def chat(url: str, text: str) -> tuple[int, dict[str, str]]:
    body = json.dumps({"model": "current", "messages": [{"role": "user", "content": text}]})
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=body.encode(),
        headers={"content-type": "application/json", "cache-control": "no-cache"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}


def breaker_state(url: str, deployment: str) -> float | None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("qg_gateway_breaker_state{") and f'"{deployment}"' in line:
                return float(line.rsplit(" ", 1)[1])
    return None


def wait_for(predicate: Any, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("server", "workers", "runs"),
    [
        ("auto", 1, "lean"),
        ("uvicorn", 1, "uvicorn"),
        ("granian", 1, "granian"),
        ("auto", 2, "uvicorn"),
    ],
)
def test_serve_answers_records_and_stops_cleanly(
    tmp_path: Path, server: str, workers: int, runs: str
) -> None:
    extra = NO_PROBES.replace("gateway:\n", f"gateway:\n  server: {server}\n")
    with simulators(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}", extra) as (
        ws,
        _,
    ):
        facts: dict[str, Any] = {}
        with serve(ws, extra=("--workers", str(workers)), facts=facts) as url:
            assert (facts["server"], facts["workers"]) == (runs, workers)
            # serve raised its descriptor limit to the hard one and bounds connections by it.
            import resource

            assert facts["fd_limit"] == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            assert 16 <= facts["max_connections"] < facts["fd_limit"]
            results = [chat(url, f"question {i}") for i in range(19)]
            body = json.dumps(
                {
                    "model": "current",
                    "stream": True,
                    "messages": [{"role": "user", "content": "stream it"}],
                }
            )
            request = urllib.request.Request(
                f"{url}/v1/chat/completions",
                data=body.encode(),
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.headers["content-type"].startswith("text/event-stream")
                events = resp.read().decode()
            assert events.rstrip().endswith("data: [DONE]")
            assert {status for status, _ in results} == {200}
            assert {h["x-qg-provider"] for _, h in results} == {"bedrock"}
            wait_for(lambda: ws.conn.scalar("SELECT COUNT(*) FROM gateway_instances") == workers, 5)
        assert ws.conn.scalar("SELECT COUNT(*) FROM requests") == 20  # flushed at shutdown
        assert ws.conn.scalar("SELECT SUM(count) FROM rollups WHERE kind = 'request'") == 20
        assert ws.conn.scalar("SELECT COUNT(*) FROM gateway_instances") == 0


def test_serve_runs_the_alert_evaluator_unless_told_not_to(tmp_path: Path) -> None:
    """The watch plane runs inside serve by default: it takes the evaluator's lease."""
    lease = "SELECT holder FROM leases WHERE name = 'watch-evaluator' AND expires_at > :now"
    with simulators(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}", NO_PROBES) as (
        ws,
        _,
    ):
        with serve(ws, extra=("--no-watch",)) as url:
            assert chat(url, "hello")[0] == 200
            time.sleep(1.0)
            assert ws.conn.one(lease, {"now": time.time()}) is None
        with serve(ws):
            wait_for(lambda: ws.conn.one(lease, {"now": time.time()}) is not None, 15)


@pytest.mark.postgres
@pytest.mark.redis
def test_two_gateway_processes_share_rollbacks_and_breakers(
    tmp_path: Path, pg_schema_url: str
) -> None:
    redis_url = os.environ.get(REDIS_ENV)
    if not redis_url:
        pytest.skip(f"Redis tests need {REDIS_ENV}")
    with simulators(tmp_path / "ws", pg_schema_url, NO_PROBES) as (ws, sims):
        env = {"QG_REDIS_URL": redis_url}
        with serve(ws, env) as url_a, serve(ws, env) as url_b:
            assert chat(url_a, "warm a")[0] == chat(url_b, "warm b")[0] == 200
            put_faults(sims.base_url("bedrock"), {"outage": True}, provider="bedrock")
            for i in range(3):
                status, headers = chat(url_a, f"into the outage {i}")
                assert status == 200
                assert headers["x-qg-provider"] == "google"
            assert breaker_state(url_a, "bedrock/claude-3-5-haiku") == 2.0
            seen = wait_for(lambda: breaker_state(url_b, "bedrock/claude-3-5-haiku") == 2.0, 3)
            assert seen < 1.0  # B never called bedrock: it learned of the open breaker
            put_faults(sims.base_url("bedrock"), {"outage": False}, provider="bedrock")

            rollback(
                ws.conn,
                environment="production",
                model_ref="current-model",
                previous_ref="previous-stable",
                reason="e2e",
                actor=Actor("tester"),
            )
            changed = time.monotonic()

            def both_moved() -> bool:
                return all(
                    chat(u, str(time.monotonic()))[1].get("x-qg-model") == "claude-3-haiku"
                    for u in (url_a, url_b)
                )

            wait_for(both_moved, 5)
            assert time.monotonic() - changed < 1.0
        instances = ws.conn.scalar("SELECT COUNT(*) FROM gateway_instances")
        assert instances == 0
