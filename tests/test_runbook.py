"""The runbook as a test: every `tsx quality-gates-cli.ts ...` line of the incident-response
runbook runs as `quality-gates ...`, in the runbook's order, against a workspace made by
`quality-gates init` with its simulators and gateway running and steady traffic flowing.

Only durations are shortened, by $QG_MAX_DURATION. Each command must end with 0 or its
documented verdict code (never a usage error, 2, or could-not-complete, 4) and print what a
person can act on. The provider-outage section runs during a real Bedrock outage in the
simulator, with the incident declared as the on-call engineer would.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.processes import clean_env, cli_process

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK = ROOT / "docs/runbook.md"  # the user's runbook, kept in the repo as written
SEED = ROOT.parent / "shared/seed/ai-system-incident-response-runbook.md"  # beside a checkout
PREFIX = "tsx quality-gates-cli.ts "
MAX_DURATION = "3s"
VERDICTS = {0, 1, 3}  # APPROVE / healthy, REJECT / unhealthy / critical alert, CONDITIONAL

# What each command must show for a person to act on it, and the exit codes it may end with.
EXPECTED: dict[str, tuple[str, set[int]]] = {
    "status": (r"production  ", {0, 1}),
    "validate": (r"(PASS|WARN|FAIL): \d+ passed, \d+ warnings?, \d+ failed", {0, 1}),
    "performance": (r"(APPROVE|REJECT|CONDITIONAL)  \S+ in production", VERDICTS),
    "monitor": (r"Summary: \S+ in production over", {0, 1}),
    "rollback": (r"Rolled back production in .* ms", {0}),
    "offline": (r"(APPROVE|REJECT|CONDITIONAL)  \S+ accuracy \d", VERDICTS),
    "pipeline": (r"(APPROVE|REJECT|CONDITIONAL)  staging pipeline for \S+", VERDICTS),
    "report": (r"monthly-report\.md", {0}),
}


@dataclass(frozen=True)
class Step:
    line: int  # where the command starts in the runbook
    section: str  # the nearest heading above it
    args: tuple[str, ...]

    @property
    def command(self) -> str:
        return self.args[0]


def runbook_steps(text: str) -> list[Step]:
    """Every `tsx quality-gates-cli.ts` command, continuation lines joined, in order."""
    steps: list[Step] = []
    section = ""
    in_code = False
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        if stripped.startswith("```"):
            in_code = not in_code
        elif not in_code and stripped.startswith("#"):
            section = stripped.lstrip("#").replace("*", "").strip()
        elif stripped.startswith(PREFIX):
            first, command = index, stripped
            while command.endswith("\\"):
                index += 1
                command = command[:-1].rstrip() + " " + lines[index].strip()
            steps.append(Step(first + 1, section, tuple(shlex.split(command[len(PREFIX) :]))))
        index += 1
    return steps


def test_the_parser_finds_every_command_of_the_runbook() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    steps = runbook_steps(text)
    assert len(steps) == text.count(PREFIX)
    commands = {s.command for s in steps}
    assert commands == set(EXPECTED), commands
    rollback = next(s for s in steps if s.command == "rollback")
    assert rollback.args == (
        "rollback",
        "--model-id",
        "current-model",
        "--previous-model",
        "backup-model",
        "--reason",
        "Provider outage - emergency failover",
    )


def test_the_repo_keeps_the_runbook_as_the_user_wrote_it() -> None:
    if not SEED.is_file():
        pytest.skip(f"the seed runbook is not beside this checkout ({SEED})")
    assert RUNBOOK.read_bytes() == SEED.read_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def qg(root: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quality_gates", *args],
        cwd=root,
        env=clean_env(QG_MAX_DURATION=MAX_DURATION, QG_ACTOR="runbook-test", COLUMNS="160"),
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def background(
    root: Path, name: str, *args: str
) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:
    """A long-running `quality-gates ARGS` in the workspace, stopped on exit."""
    return cli_process(list(args), cwd=root, log=root / f"{name}.log")


class Traffic(threading.Thread):
    """Steady client traffic on `current` (about 8 req/s) until stopped; counts outcomes."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}

    def run(self) -> None:
        n = 0
        deadline = time.monotonic() + 600  # bounded even if the test never stops it
        while not self.stop.is_set() and time.monotonic() < deadline:
            n += 1
            body = json.dumps(
                {"model": "current", "messages": [{"role": "user", "content": f"q {n}"}]}
            ).encode()
            request = urllib.request.Request(
                f"{self.url}/v1/chat/completions",
                data=body,
                headers={"content-type": "application/json", "authorization": f"Bearer {self.key}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=15) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = 0
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.stop.wait(0.12)


@pytest.fixture(scope="module")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Traffic]]:
    """`init`, the simulators and `serve` running, steady traffic flowing."""
    root = tmp_path_factory.mktemp("runbook")
    assert qg(root, "init").returncode == 0
    config = root / "quality-gates.yaml"
    text = config.read_text()
    for default in (9101, 9102, 9103):
        text = text.replace(f"port: {default}", f"port: {free_port()}")
    config.write_text(text)
    created = qg(root, "keys", "create", "--name", "runbook-traffic", "--role", "client", "--json")
    key = json.loads(created.stdout)["key"]
    with (
        background(root, "simulate", "simulate"),
        background(root, "serve", "serve", "--port", "0", "--json") as gateway,
    ):
        assert gateway.stdout is not None
        url = json.loads(gateway.stdout.readline())["listen"]
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (root / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        traffic = Traffic(url, key)
        traffic.start()
        time.sleep(4)  # some telemetry for status, performance and monitor to read
        try:
            yield root, traffic
        finally:
            traffic.stop.set()
            traffic.join(20)


def declare_outage(root: Path) -> None:
    """Declare the Bedrock incident as the on-call would. On a loaded machine the watch may
    already have opened one (slow answers, say): that one is closed first, superseded."""
    for _ in range(3):
        listed = qg(root, "incident", "list", "--environment", "production", "--json")
        for row in json.loads(listed.stdout):
            qg(root, "incident", "resolve", str(row["id"]), "--reason", "superseded")
        declared = qg(
            root,
            *("incident", "open", "--severity", "P1", "--type", "provider"),
            *("--provider", "bedrock", "--title", "Bedrock is failing"),
        )
        if declared.returncode == 0:
            return
        assert "already open" in declared.stderr, declared.stderr
    pytest.fail("an incident kept reopening in production before the outage was declared")


def test_every_runbook_command_works_as_written(
    demo_workspace: tuple[Path, Traffic],
) -> None:
    root, traffic = demo_workspace
    steps = runbook_steps(RUNBOOK.read_text(encoding="utf-8"))
    outage = False
    failures: list[str] = []
    for step in steps:
        if "Provider Outage" in step.section and not outage:
            # The scenario the section answers: Bedrock fails, the on-call declares it.
            down = qg(root, "simulate", "fault", "--provider", "bedrock", "--outage", "on")
            assert down.returncode == 0, down.stderr
            declare_outage(root)
            outage = True
        elif outage and "Provider Outage" not in step.section:
            cleared = qg(root, "simulate", "fault", "--provider", "bedrock", "--reset")
            assert cleared.returncode == 0, cleared.stderr
            outage = False
        started = time.monotonic()
        result = qg(root, *step.args)
        took = time.monotonic() - started
        pattern, codes = EXPECTED[step.command]
        output = result.stdout + result.stderr
        shown = f"line {step.line} ({step.section}): quality-gates {shlex.join(step.args)}"
        print(f"{shown} -> exit {result.returncode} in {took:.1f} s")
        if result.returncode not in codes:
            failures.append(f"{shown}: exit {result.returncode}\n{output[-2000:]}")
        elif not re.search(pattern, output):
            failures.append(f"{shown}: no {pattern!r} in the output\n{output[-2000:]}")
        elif "Traceback" in output:
            failures.append(f"{shown}: a traceback\n{output[-2000:]}")
    assert not failures, "\n\n".join(failures)
    report = root / "monthly-report.md"
    assert report.is_file()
    assert "# " in report.read_text(encoding="utf-8")
    # The gateway kept answering through the outage and the rollbacks.
    served = sum(n for status, n in traffic.statuses.items() if status == 200)
    assert served > 0, traffic.statuses
    assert traffic.statuses.get(0, 0) == 0, traffic.statuses


def test_placeholders_resolve_to_the_models_their_aliases_name(
    demo_workspace: tuple[Path, Traffic],
) -> None:
    root, _ = demo_workspace
    status = qg(root, "status", "--json")
    assert status.returncode in (0, 1), status.stderr
    facts = json.loads(status.stdout)
    text = json.dumps(facts)
    for alias in ("current", "previous-stable", "last-known-good", "backup"):
        assert f'"{alias}"' in text
    shown = qg(root, "status", "--model-id", "current-model", "--environment", "production")
    assert shown.returncode in (0, 1), shown.stderr
    assert re.search(r"current-model -> alias current -> \S+", shown.stdout), shown.stdout
    unknown = qg(root, "status", "--model-id", "no-such-model")
    assert unknown.returncode == 2 or "no-such-model" in unknown.stderr
