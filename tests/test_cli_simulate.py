"""`simulate`, `simulate fault`, `status --provider --health-only` and `validate`, as a user
runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import Result

from quality_gates.config import load_config, render_starter
from quality_gates.simulator import SimulatorThread, spec_from_provider

pytestmark = pytest.mark.integration


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on right now (the kernel hands out distinct ones)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def sim_workspace(tmp_path: Path) -> Iterator[tuple[Path, SimulatorThread]]:
    """A starter config on free ports, its three simulators running in this process."""
    ports = free_ports(3)
    text = render_starter(
        "test", {"port_bedrock": ports[0], "port_google": ports[1], "port_meta": ports[2]}
    )
    text = text.replace(
        "profile: healthy",
        "profile: healthy\n    faults: {latency_p50_ms: 5ms, latency_p95_ms: 20ms}",
    )
    config_path = tmp_path / "quality-gates.yaml"
    config_path.write_text(text)
    loaded = load_config(config_path)
    specs = [
        spec_from_provider(p, loaded.config.models, base_dir=tmp_path)
        for p in loaded.config.providers
    ]
    with SimulatorThread(specs) as sims:
        yield config_path, sims


def run_in(qg, config: Path, *args: str) -> Result:  # type: ignore[no-untyped-def]
    return qg("--config", str(config), "--db", f"sqlite:///{config.parent / 'state.db'}", *args)


def test_health_only_prints_healthy_then_unhealthy_after_an_outage(qg, sim_workspace) -> None:  # type: ignore[no-untyped-def]
    config, _sims = sim_workspace
    healthy = run_in(qg, config, "status", "--provider", "meta", "--health-only")
    assert (healthy.code, healthy.out.strip()) == (0, "HEALTHY")
    fault = run_in(qg, config, "simulate", "fault", "--provider", "meta", "--outage", "on")
    assert fault.code == 0
    assert "outage=True" in fault.out
    down = run_in(qg, config, "status", "--provider", "meta", "--health-only")
    assert (down.code, down.out.strip()) == (1, "UNHEALTHY")
    assert "overloaded" in down.err
    as_json = run_in(qg, config, "status", "--provider", "meta", "--health-only", "--json")
    report = json.loads(as_json.out)
    assert as_json.code == 1
    assert report["status"] == "UNHEALTHY"
    assert report["error_class"] == "overloaded"
    audit = run_in(qg, config, "audit", "list", "--json")
    assert any(e["action"] == "simulator.fault" for e in json.loads(audit.out))


def test_simulate_fault_changes_one_model_and_rejects_bad_values(qg, sim_workspace) -> None:  # type: ignore[no-untyped-def]
    config, sims = sim_workspace
    result = run_in(
        qg,
        config,
        "simulate",
        "fault",
        "--provider",
        "google",
        "--model",
        "gemini-1.5-flash",
        "--accuracy",
        "92%",
        "--latency-p95",
        "3s",
        "--json",
    )
    assert result.code == 0, result.err
    overrides = json.loads(result.out)["faults"]["models"]["gemini-1.5-flash"]
    assert overrides == {"accuracy": "92%", "latency_p95_ms": 3000.0}
    assert sims["google"].app.behaviour.faults_for("gemini-1.5-flash").accuracy == 0.92
    bad = run_in(qg, config, "simulate", "fault", "--provider", "google", "--set", "bogus=1")
    assert bad.code == 2
    assert "bogus" in bad.err
    unknown = run_in(qg, config, "simulate", "fault", "--provider", "goggle", "--outage", "on")
    assert unknown.code == 2
    assert "did you mean 'google'" in unknown.err


def test_simulate_fault_on_a_stopped_simulator_exits_4(qg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_ports(1)[0]
    config = tmp_path / "quality-gates.yaml"
    config.write_text(render_starter("t", {"port_meta": port}))
    result = run_in(qg, config, "simulate", "fault", "--provider", "meta", "--outage", "on")
    assert result.code == 4
    assert "not reachable" in result.err


def test_validate_passes_with_healthy_providers_and_fails_on_an_outage(qg, sim_workspace) -> None:  # type: ignore[no-untyped-def]
    config, sims = sim_workspace
    ok = run_in(qg, config, "validate", "--environment", "production", "--json")
    report = json.loads(ok.out)
    assert ok.code == 0, ok.out
    rows = {r["check"]: r for r in report["results"]}
    assert rows["config"]["status"] == "PASS"
    assert rows["credentials"]["status"] == "PASS"
    assert rows["notifications"]["status"] == "WARN"  # the starter's channels have no URLs
    for name in ("bedrock", "google", "meta"):
        assert rows[f"providers:{name}"]["status"] == "PASS"
        assert rows[f"providers:{name}"]["evidence"]["latency_ms"] > 0
    sims["google"].app.behaviour.update({"server_error_rate": 1.0})
    failed = run_in(qg, config, "validate", "-e", "production")
    assert failed.code == 1
    assert "providers:google" in failed.out
    assert "server_error" in failed.out


def test_validate_reports_a_broken_config_and_refuses_an_unknown_environment(
    qg, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "quality-gates.yaml"
    config.write_text(render_starter("t").replace("routing: weighted", "routng: weighted"))
    broken = run_in(qg, config, "validate", "--json")
    report = json.loads(broken.out)
    assert broken.code == 1
    assert report["results"][0]["status"] == "FAIL"
    assert "routng" in report["results"][0]["summary"]
    config.write_text(render_starter("t"))
    unknown = run_in(qg, config, "validate", "-e", "prod")
    assert unknown.code == 2
    assert "did you mean 'production'" in unknown.err


GEMINI_WITHOUT_KEY = """
providers:
  - name: google
    kind: gemini
    credentials: {api_key: QG_TEST_UNSET_GEMINI_KEY}
models:
  - {id: flash, provider: google, name: gemini-1.5-flash}
environments:
  production:
    aliases: {current: flash}
"""


def test_a_provider_whose_key_variable_is_unset_names_it_and_exits_2(
    run_cli_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "quality-gates.yaml").write_text("version: 1\n" + GEMINI_WITHOUT_KEY)
    health = run_cli_env("status", "--provider", "google", "--health-only", cwd=tmp_path)
    assert health.returncode == 2
    assert "QG_TEST_UNSET_GEMINI_KEY is not set" in health.stderr
    assert "google" in health.stderr
    assert "Traceback" not in health.stderr
    validate = run_cli_env("validate", "--json", cwd=tmp_path)
    rows = {r["check"]: r for r in json.loads(validate.stdout)["results"]}
    assert validate.returncode == 1
    assert rows["credentials"]["evidence"]["missing"] == {"google": ["QG_TEST_UNSET_GEMINI_KEY"]}
    assert rows["providers:google"]["evidence"]["error_class"] == "credentials"


@pytest.fixture
def run_cli_env():  # type: ignore[no-untyped-def]
    from tests.conftest import run_cli

    def invoke(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=cwd, env={"QG_TEST_UNSET_GEMINI_KEY": ""})

    return invoke


@pytest.mark.e2e
def test_simulate_runs_until_sigterm_and_reports_the_bound_port(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quality_gates",
            "simulate",
            "--protocol",
            "anthropic",
            "--port",
            "0",
            "--seed",
            "5",
            "--latency-p50",
            "0",
            "--json",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text += proc.stdout.readline()
            try:
                announced = json.loads(text)
                break
            except ValueError:
                continue
        simulator = announced["simulators"][0]
        assert simulator["protocol"] == "anthropic"
        assert simulator["port"] > 0
        with urllib.request.urlopen(simulator["base_url"] + "/_sim/faults", timeout=5) as reply:
            assert json.loads(reply.read())["seed"] == 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_simulator_status_shows_running_simulators_and_a_drill(sim_workspace) -> None:  # type: ignore[no-untyped-def]
    from quality_gates.simulator.control import simulator_status

    config, sims = sim_workspace
    providers = load_config(config).config.providers
    sims["bedrock"].app.behaviour.update({"outage": True})
    rows = {row["provider"]: row for row in simulator_status(providers)}
    assert rows["bedrock"]["running"]
    assert rows["bedrock"]["outage"] is True
    assert rows["meta"]["outage"] is False
    assert rows["meta"]["error_rate"] == 0
    stopped = [p.model_copy(update={"port": free_ports(1)[0]}) for p in providers[:1]]
    assert simulator_status(stopped)[0]["running"] is False


def test_the_cli_offers_exactly_the_configs_protocols_and_profiles() -> None:
    from typing import get_args

    from quality_gates.cli import simulate_cmd
    from quality_gates.config._providers import SIMULATOR_PROFILES, Protocol

    assert set(simulate_cmd.PROTOCOLS) == set(get_args(Protocol))
    assert simulate_cmd.PROFILES == SIMULATOR_PROFILES
