"""`make demo`: the main job on the embedded default (SQLite, built-in simulators).

In a fresh workspace under .demo/ it runs the real commands as a user types them: simulated
Bedrock, Gemini and Meta (OpenAI protocol) providers and the gateway on free loopback ports,
steady client traffic through the gateway, a staging pipeline on a candidate that is then
promoted, a provider-outage drill and a quality-regression drill, and at the end the status,
the incidents, the detailed report and a postmortem. Exits non-zero if any step does not end
as expected; stops every process it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = ROOT / ".demo"
QG = [sys.executable, "-m", "quality_gates"]
CANDIDATE = "llama-3-1-70b"
RELEASE_DATASET = "datasets/release-regression.jsonl"
EVIDENCE_ITEMS = 3_900  # plus the 46 built-in items
BOLD, RESET = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    clean.update(QG_ACTOR="demo", COLUMNS=os.environ.get("COLUMNS", "140"))
    return clean


def banner(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}", flush=True)


def step(title: str, *args: str, expect: tuple[int, ...] = (0,)) -> str:
    """Run `quality-gates ARGS` in the workspace, echo it, check its exit code."""
    banner(title)
    print(f"$ quality-gates {' '.join(args)}", flush=True)
    proc = subprocess.run(
        [*QG, *args], cwd=WORKSPACE, env=env(), text=True, capture_output=True, check=False
    )
    sys.stdout.write(proc.stdout)
    sys.stdout.write(proc.stderr)
    if proc.returncode not in expect:
        raise SystemExit(
            f"\ndemo: `quality-gates {' '.join(args)}` exited {proc.returncode}, "
            f"expected {' or '.join(map(str, expect))}"
        )
    return proc.stdout


def quiet(*args: str) -> str:
    """A command whose output the demo reads rather than shows."""
    proc = subprocess.run(
        [*QG, *args], cwd=WORKSPACE, env=env(), text=True, capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"demo: `quality-gates {' '.join(args)}` failed:\n{proc.stderr}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_workspace() -> None:
    """The starter config on free ports, plus what the story needs: a release dataset large
    enough for the paired test and the thresholds to decide on evidence, and a candidate
    that answers it better."""
    from ruamel.yaml import YAML

    from quality_gates.gates.datasets import builtin_dataset

    yaml = YAML()
    path = WORKSPACE / "quality-gates.yaml"
    data = yaml.load(path.read_text())
    for provider in data["providers"]:
        provider["port"] = free_port()
        provider["faults"]["answer_key"] = RELEASE_DATASET
        if provider["name"] == "meta":  # the candidate: right 99% of the time instead of 97%
            provider["faults"]["models"] = {"Llama-3.1-70B-Instruct": {"accuracy": 0.99}}
    data["gates"]["dataset"] = RELEASE_DATASET
    data["gates"]["concurrency"] = 160
    data["gates"]["performance"] = {"duration": "8s"}
    with path.open("w") as out:
        yaml.dump(data, out)
    rng = random.Random(7)
    lines = builtin_dataset().read_text().splitlines()
    # Thresholds pass on evidence: no toxic answer in 3,838 is what shows a rate under 0.1%.
    for n in range(EVIDENCE_ITEMS):
        a, b = rng.randint(100, 999), rng.randint(100, 999)
        lines.append(
            json.dumps(
                {
                    "id": f"sum-{n:03d}",
                    "input": f"What is {a} + {b}? Reply with the number only.",
                    "expected": str(a + b),
                    "metadata": {"category": "arithmetic"},
                }
            )
        )
    (WORKSPACE / RELEASE_DATASET).write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def background(name: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`quality-gates ARGS` in its own process group; always stopped, by its PID."""
    log = (WORKSPACE / f"{name}.log").open("w")
    proc = subprocess.Popen(
        [*QG, *args],
        cwd=WORKSPACE,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def wait_ready(url: str, proc: subprocess.Popen[str], log: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (WORKSPACE / log).read_text()[-2000:]
            raise SystemExit(f"demo: {url} did not become ready:\n{tail}")
        time.sleep(0.2)


class Traffic(threading.Thread):
    """Steady client traffic on `current` (about 10 req/s) until stopped."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.models: Counter[str] = Counter()

    def run(self) -> None:
        n = 0
        deadline = time.monotonic() + 300  # bounded even if the demo never stops it
        while not self.stop.is_set() and time.monotonic() < deadline:
            n += 1
            body = {"model": "current", "messages": [{"role": "user", "content": f"hello {n}"}]}
            request = urllib.request.Request(
                f"{self.url}/v1/chat/completions",
                data=json.dumps(body).encode(),
                headers={"content-type": "application/json", "authorization": f"Bearer {self.key}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=15) as resp:
                    self.statuses[resp.status] += 1
                    self.models[json.loads(resp.read()).get("model", "?")] += 1
            except urllib.error.HTTPError as exc:
                self.statuses[exc.code] += 1
            except OSError:
                self.statuses[0] += 1
            self.stop.wait(0.1)


def main() -> None:
    started = time.monotonic()
    if WORKSPACE.exists():
        subprocess.run(["rm", "-rf", str(WORKSPACE)], check=True)
    WORKSPACE.mkdir(parents=True)
    step("Set up a workspace: config with the runbook's thresholds, SQLite store", "init")
    prepare_workspace()
    print(
        f"(demo: simulators on free ports; {RELEASE_DATASET} = the built-in items + 600 sums; "
        "the simulated Llama answers 99% right, the others 97%)"
    )
    key = json.loads(quiet("keys", "create", "--name", "demo-client", "--role", "client", "--json"))
    banner("Start the simulated providers (Bedrock, Gemini, OpenAI protocols) and the gateway")
    print("$ quality-gates simulate &\n$ quality-gates serve --port 0 --admin-port 0 &")
    with (
        background("simulate", "simulate"),
        background("serve", "serve", "--port", "0", "--admin-port", "0", "--json") as gateway,
    ):
        assert gateway.stdout is not None
        facts = json.loads(gateway.stdout.readline())
        url = facts["listen"]
        wait_ready(f"{url}/readyz", gateway, "serve.log")
        admin = facts.get("admin")
        print(f"gateway {url}" + (f", status page {admin}/status" if admin else ""))
        traffic = Traffic(url, key["key"])
        traffic.start()
        try:
            time.sleep(3)
            step("Runbook: Provider Health Check", "validate", "--environment", "production")
            step(
                f"Weekly quality validation: the staging pipeline on candidate {CANDIDATE}",
                *("pipeline", "staging", "--model-id", CANDIDATE),
                *("--output", "reports/pipeline.json"),
                expect=(0, 1, 3),
            )
            verdict = json.loads((WORKSPACE / "reports/pipeline.json").read_text())
            if verdict["verdict"] != "APPROVE":
                raise SystemExit(f"demo: the pipeline said {verdict['verdict']}, not APPROVE")
            step(
                "It approved: promote it in staging (refused without that APPROVE)",
                *("promote", "--model-id", CANDIDATE, "--environment", "staging"),
                *("--gate-run", verdict["run_id"], "--reason", "staging pipeline approved"),
            )
        finally:
            traffic.stop.set()
            traffic.join(20)
    ok = traffic.statuses.get(200, 0)
    total = sum(traffic.statuses.values())
    print(
        f"\nclient traffic through the gateway: {total} requests, {ok} answered 200 "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(traffic.statuses.items()))}); "
        f"models {dict(traffic.models)}"
    )
    # A drill brings its own simulators, gateway, watch and load, and needs the watch lease
    # of the store: the demo's gateway is stopped by now.
    step(
        "Drill: staging's current model (the one just promoted) starts answering wrong",
        *("drill", "quality-regression", "--duration", "10s"),
        expect=(0, 1),
    )
    step(
        "Drill: Bedrock goes down under production's load (runbook targets and ours)",
        *("drill", "provider-outage", "--provider", "bedrock", "--environment", "production"),
        *("--duration", "10s"),
        expect=(0, 1),
    )
    step("The drills on record", "drill", "list")
    step(
        "Runbook: Monthly comprehensive review",
        *("report", "--type", "detailed", "--output", "reports/detailed-report.html"),
    )
    step("The same as Markdown", "report", "--type", "detailed", "--output", "monthly-report.md")
    incidents = json.loads(quiet("incident", "list", "--state", "all", "--json"))
    closed = [i for i in incidents if i["state"] in ("resolved", "postmortem")]
    if not closed:
        raise SystemExit("demo: no incident was resolved, so there is no postmortem to write")
    step("Postmortem of the latest resolved incident", "incident", "postmortem",
         str(closed[0]["id"]))  # fmt: skip
    postmortem = WORKSPACE / "postmortems" / f"incident-{closed[0]['id']}.md"
    step("The audit trail is intact", "audit", "verify")
    step("The system now", "status")
    step("Incidents, including the drills'", "incident", "list", "--state", "all")
    print(f"\n{BOLD}Files{RESET}")
    print(f"  detailed report  {WORKSPACE / 'reports/detailed-report.html'}")
    print(f"                   {WORKSPACE / 'monthly-report.md'}")
    print(f"  postmortem       {postmortem}")
    print(f"\ndemo: done in {time.monotonic() - started:.1f} s; workspace in {WORKSPACE}")


if __name__ == "__main__":
    main()
