"""Test support: a `quality-gates` command running in the background as a user starts it,
in its own process group, its stderr in a log file, always stopped (by its PID) on exit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

STOP_WAIT = 40.0  # a gateway drains in-flight requests and flushes telemetry on SIGTERM


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this machine's QG_ settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    env.update(extra)
    return env


@contextlib.contextmanager
def cli_process(
    args: list[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`python -m quality_gates ARGS` with stdout piped; SIGTERM then SIGKILL on exit."""
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quality_gates", *args],
            cwd=cwd,
            env=clean_env() if env is None else env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def ready(url: str) -> bool:
    """Whether the gateway at `url` answers /readyz with 200."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
