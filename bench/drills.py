"""Disaster-recovery drills, measured: each scenario in a fresh `init` workspace, each run
`--runs` times so the spread between runs shows. Prints a table and records it in
BENCHMARKS.md (section `drills`).

    python bench/drills.py [--runs 2] [--duration 10s] [--no-record]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _record import record

FIGURES = (
    ("detection_s", "detection"),
    ("failover_s", "failover"),
    ("rollback_s", "rollback"),
    ("recovery_s", "recovery"),
    ("total_recovery_s", "total"),
)


def qg(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    env["QG_ACTOR"] = "bench"
    return subprocess.run(
        [sys.executable, "-m", "quality_gates", *args],
        cwd=root,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


SCENARIOS: list[tuple[str, tuple[str, ...]]] = [
    ("provider-outage", ("--provider", "bedrock", "-e", "production")),
    ("latency-spike", ("--provider", "bedrock", "-e", "production")),
    ("quality-regression", ("-e", "production")),
    ("two-provider-outage", ("--provider", "bedrock", "-e", "production")),
    ("multi-provider-outage", ("-e", "production")),
]


def drill(
    scenario: str, duration: str, extra: tuple[str, ...], *, incidents: bool = False
) -> dict[str, Any]:
    """One drill in a fresh workspace (so no earlier fault is in its roll-ups); with
    `incidents`, every incident its store holds afterwards under `incidents`."""
    with tempfile.TemporaryDirectory(prefix="qg-drill-bench-") as folder:
        root = Path(folder)
        made = qg(root, "init")
        if made.returncode != 0:
            raise SystemExit(f"init failed: {made.stderr}")
        done = qg(root, "drill", scenario, "--duration", duration, "--json", *extra)
        if done.returncode not in (0, 1):
            raise SystemExit(f"drill {scenario} exited {done.returncode}: {done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout)
        result["exit"] = done.returncode
        if incidents:
            listed = qg(root, "incident", "list", "--state", "all", "--json")
            if listed.returncode != 0:
                raise SystemExit(f"incident list failed: {listed.stderr}")
            result["incidents"] = json.loads(listed.stdout)
        return result


def cell(value: object, unit: str = " s") -> str:
    if value is None:
        return "-"
    return f"{value:.2f}{unit}" if isinstance(value, (float, int)) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="runs of each scenario")
    parser.add_argument("--duration", default="10s", help="how long each fault lasts")
    parser.add_argument("--no-record", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args()
    plan = [s for s in SCENARIOS for _ in range(args.runs)]
    header = "| scenario | " + " | ".join(t for _, t in FIGURES) + " | lost | runbook | missed |"
    rows = [header, "|" + "---|" * (len(FIGURES) + 4)]
    for scenario, extra in plan:
        result = drill(scenario, args.duration, extra)
        figures = result.get("figures") or {}
        assert isinstance(figures, dict)
        missed_runbook = list(result.get("missed_runbook") or [])  # type: ignore[call-overload]
        missed_project = list(result.get("missed_project") or [])  # type: ignore[call-overload]
        runbook = "met" if not missed_runbook else "MISSED " + ", ".join(missed_runbook)
        lost = f"{figures.get('requests_failed')}/{figures.get('requests_sent')}"
        row = (
            f"| {scenario} | "
            + " | ".join(cell(figures.get(name)) for name, _ in FIGURES)
            + f" | {lost} | {runbook}"
            + f" | {', '.join(missed_project) or '-'} |"
        )
        print(row, flush=True)
        rows.append(row)
    body = (
        "\n".join(rows)
        + "\n\nEach drill in a fresh `quality-gates init` workspace: the starter's simulators, "
        "15 req/s of steady load, the fault for the duration above. Runbook targets: detection "
        "< 30 s, failover < 60 s, restoration < 120 s, total recovery < 300 s, request loss "
        "< 1%, automatic rollback < 30 s. The `missed` column lists the project's own targets "
        "missed (detection <= 2 s, no request lost, recovery <= 10 s; latency spike: detection "
        "<= 5 s and traffic moved <= 10 s, no recovery target; quality regression: rollback "
        "<= 5 s, no detection target). Drill timescale: rule windows <= 10 s, `for` <= 1 s, "
        "evaluation every 0.5 s, failback after 1.5 s healthy in three steps 0.5 s apart and "
        "a last check 0.5 s later, its first step once the provider's alerts have ended (about "
        "4 s after the clear with 1 s probes; docs/drills.md).\n"
    )
    command = f"python bench/drills.py --runs {args.runs} --duration {args.duration}"
    print(f"\n{command}")
    if not args.no_record:
        record("drills", "Disaster-recovery drills", command, body)


if __name__ == "__main__":
    main()
