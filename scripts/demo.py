"""`make demo`: the main job on the embedded default (SQLite, built-in simulators).

Runs the real commands in a fresh workspace under .demo/ and shows each one as a user would
type it. Exits non-zero if any step does not end as expected.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = ROOT / ".demo"
QG = [sys.executable, "-m", "quality_gates"]


def step(title: str, *args: str, expect: int = 0) -> str:
    """Run `quality-gates ARGS` in the workspace, echo it, check its exit code."""
    print(f"\n\033[1m== {title}\033[0m\n$ quality-gates {' '.join(args)}", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    env["QG_ACTOR"] = "demo"
    proc = subprocess.run(
        [*QG, *args], cwd=WORKSPACE, env=env, text=True, capture_output=True, check=False
    )
    sys.stdout.write(proc.stdout)
    sys.stdout.write(proc.stderr)
    if proc.returncode != expect:
        print(
            f"\ndemo: `quality-gates {' '.join(args)}` exited {proc.returncode}, expected {expect}",
            file=sys.stderr,
        )
        sys.exit(1)
    return proc.stdout


@contextlib.contextmanager
def simulators() -> Iterator[None]:
    """`quality-gates simulate` in the background, on free ports written into the config
    first, so the demo never collides with anything already listening on 9101-9103."""
    config = WORKSPACE / "quality-gates.yaml"
    text = config.read_text()
    ports = []
    for default in (9101, 9102, 9103):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        text = text.replace(f"port: {default}", f"port: {ports[-1]}")
    config.write_text(text)
    print("\n\033[1m== Start the simulated providers (Bedrock, Gemini, OpenAI protocols)\033[0m")
    print("$ quality-gates simulate &", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    proc = subprocess.Popen([*QG, "simulate"], cwd=WORKSPACE, env=env)
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("demo: the simulators did not start")
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def main() -> None:
    started = time.monotonic()
    shutil.rmtree(WORKSPACE, ignore_errors=True)
    WORKSPACE.mkdir(parents=True)
    step("Set up a workspace: config with the runbook's thresholds, SQLite store", "init")
    step("What is current in production", "status", "--environment", "production")
    with simulators():
        step(
            "Is Bedrock healthy? (a live probe)", "status", "--provider", "bedrock", "--health-only"
        )
        step("Runbook: Provider Health Check", "validate", "--environment", "production")
        step(
            "Drill: Bedrock goes down",
            "simulate",
            "fault",
            "--provider",
            "bedrock",
            "--outage",
            "on",
        )
        step(
            "The probe sees it (exit 1)",
            "status",
            "--provider",
            "bedrock",
            "--health-only",
            expect=1,
        )
        step("Bedrock recovers", "simulate", "fault", "--provider", "bedrock", "--reset")
    step(
        "Roll back as the runbook says (Automated Rollback)",
        "rollback",
        "--model-id",
        "current-model",
        "--previous-model",
        "previous-stable",
        "--reason",
        "Incident response rollback",
    )
    step(
        "A rollback of a model that is no longer current is refused",
        "rollback",
        "--model-id",
        "claude-3-5-haiku",
        "--previous-model",
        "previous-stable",
        "--reason",
        "stale runbook step",
        expect=1,
    )
    step(
        "Disaster-recovery drill: Bedrock down under load, measured against the runbook",
        "drill",
        "provider-outage",
        "--duration",
        "10s",
    )
    step(
        "Disaster-recovery drill: the current model's quality drops, `current` rolls back",
        "drill",
        "quality-regression",
        "--duration",
        "10s",
    )
    step("The drills on record", "drill", "list")
    step("Every alias move, newest first", "history", "--environment", "production", "-n", "6")
    step("The audit trail is intact", "audit", "verify")
    print(f"\ndemo: done in {time.monotonic() - started:.1f} s; workspace in {WORKSPACE}")


if __name__ == "__main__":
    main()
