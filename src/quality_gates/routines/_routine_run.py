"""One run of a routine: `python -m quality_gates <command>` as a subprocess, to its end or
its timeout, and what became of it (status, exit code, duration, the tail of its output).

A run gets the watch's config and store as QG_CONFIG and QG_DATABASE_URL (never on the
command line) and acts as its routine (QG_ACTOR); it runs in the config's folder and in a
process group of its own, so a timeout kills whatever it started too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from quality_gates.routines._schedule import slot_values

if TYPE_CHECKING:
    from quality_gates.config._routines import RoutineJob

PASSED, FAILED, ERROR = "passed", "failed", "error"
FAILED_EXIT_CODES = (1, 3)  # failed / REJECT, CONDITIONAL
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def status_of(exit_code: int | None, timed_out: bool) -> str:
    """passed for 0, failed for 1 and 3, error for anything else or a timeout."""
    if timed_out or exit_code is None:
        return ERROR
    if exit_code == 0:
        return PASSED
    return FAILED if exit_code in FAILED_EXIT_CODES else ERROR


@dataclass
class Outcome:
    """How one run of a command ended."""

    status: str
    exit_code: int | None
    duration: float
    output: str
    timed_out: bool = False

    @property
    def summary(self) -> str:
        """One line: `exit 1 (failed) in 2.3 s: FAIL: 5 passed, 6 failed`."""
        from quality_gates.units import format_duration

        how = "timed out" if self.timed_out else f"exit {self.exit_code}"
        line = f"{how} ({self.status}) in {format_duration(self.duration)}"
        last = last_line(self.output)
        return f"{line}: {last}" if last else line


def last_line(output: str) -> str:
    """The last non-empty line of the output, trimmed to a sensible length."""
    for raw in reversed(output.splitlines()):
        line = " ".join(_ANSI.sub("", raw).split())
        if line:
            return line if len(line) <= 200 else line[:197] + "..."
    return ""


def command_line(job: RoutineJob, slot: float) -> list[str]:
    """The job's command as words, `{date}` and `{month}` filled in for `slot`."""
    from quality_gates.config._routines import command_words

    return command_words(job.command.format(**slot_values(slot, job.timezone)))


def child_environment(config_path: Path, store_url: str, actor: str) -> dict[str, str]:
    """The environment of a run: ours, pointed at the same config and store, acting as
    `actor` (what the command changes is audited under that name), plain output."""
    env = dict(os.environ)
    env.update(
        {
            "QG_CONFIG": str(config_path),
            "QG_DATABASE_URL": store_url,
            "QG_ACTOR": actor,
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "160",
        }
    )
    return env


async def execute(
    words: list[str],
    *,
    config_path: Path,
    store_url: str,
    timeout: float,
    output_limit: int,
    actor: str,
) -> Outcome:
    """Run `quality-gates <words>` to completion or `timeout` (then kill it and its children)."""
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "quality_gates",
            *words,
            cwd=str(config_path.parent),
            env=child_environment(config_path, store_url, actor),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills what it started
        )
    except OSError as exc:
        return Outcome(ERROR, None, time.monotonic() - started, f"could not start: {exc}")
    tail = bytearray()

    async def finish() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            tail.extend(chunk)
            if len(tail) > output_limit * 4:  # bytes; a margin for multi-byte characters
                del tail[: len(tail) - output_limit * 4]
        await proc.wait()

    timed_out = False
    try:
        await asyncio.wait_for(finish(), timeout=timeout)
    except TimeoutError:
        timed_out = True
        _kill(proc)
        await proc.wait()
    except asyncio.CancelledError:
        _kill(proc)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), timeout=5)
        raise
    text = tail.decode("utf-8", errors="replace")[-output_limit:]
    code = None if timed_out else proc.returncode
    if timed_out:
        text += f"\n[killed after the timeout of {timeout:g} s]"
    return Outcome(status_of(code, timed_out), code, time.monotonic() - started, text, timed_out)


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
