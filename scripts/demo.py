"""`make demo`: the main job on the embedded default (SQLite, built-in simulators).

Runs the real commands in a fresh workspace under .demo/ and shows each one as a user would
type it. Exits non-zero if any step does not end as expected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
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


def main() -> None:
    started = time.monotonic()
    shutil.rmtree(WORKSPACE, ignore_errors=True)
    WORKSPACE.mkdir(parents=True)
    step("Set up a workspace: config with the runbook's thresholds, SQLite store", "init")
    step("What is current in production", "status", "--environment", "production")
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
    step("Every alias move, newest first", "history", "--environment", "production", "-n", "6")
    step("The audit trail is intact", "audit", "verify")
    print(f"\ndemo: done in {time.monotonic() - started:.1f} s; workspace in {WORKSPACE}")


if __name__ == "__main__":
    main()
