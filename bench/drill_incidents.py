"""The incidents each drill's fault opens: how many, at which severity, and how soon the
fault's alerts resolved after it was cleared. Each drill runs in a fresh `quality-gates init`
workspace (as `bench/drills.py` does) and its incidents are read back with `incident list`.
Prints a table and records it in BENCHMARKS.md (section `drill_incidents`).

    python bench/drill_incidents.py [--runs 1] [--duration 10s] [--no-record]

Expected, by the runbook's severity table: one incident per fault; provider outage P2 (a
single provider), latency spike P2 (degradation, a single provider), quality regression P2,
two of three providers down P1, every provider down P0. Alerts resolve within 10 s of the
clear on the drills' timescale.
"""

from __future__ import annotations

import argparse
from typing import Any

from _record import record
from drills import SCENARIOS, drill

EXPECTED = {
    "provider-outage": "P2",
    "latency-spike": "P2",
    "quality-regression": "P2",
    "two-provider-outage": "P1",
    "multi-provider-outage": "P0",
}
PLAN = SCENARIOS


def run(scenario: str, duration: str, extra: tuple[str, ...]) -> dict[str, Any]:
    """One drill in a fresh workspace, and every incident its store holds afterwards."""
    return drill(scenario, duration, extra, incidents=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of each drill")
    parser.add_argument("--duration", default="10s", help="how long each fault lasts")
    parser.add_argument("--no-record", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args()
    rows = [
        "| scenario | incidents | severity | expected | alerts resolved after the clear | "
        "notifications | each alert resolved (after the clear) | title |",
        "|---|---|---|---|---|---|---|---|",
    ]
    failures = 0
    for _ in range(args.runs):
        for scenario, extra in PLAN:
            result = run(scenario, args.duration, extra)
            incidents = result["incidents"]
            severities = ", ".join(str(i.get("severity")) for i in incidents) or "-"
            timeline = (result.get("details") or {}).get("timeline_s") or {}
            parts = timeline.get("recovery_parts_s") or {}
            resolved = parts.get("alerts_resolved")
            cleared = timeline.get("cleared_s")
            after = (
                f"{resolved - cleared:.1f} s"
                if isinstance(resolved, float | int) and isinstance(cleared, float | int)
                else "-"
            )
            good = len(incidents) == 1 and incidents[0].get("severity") == EXPECTED[scenario]
            failures += not good
            title = str(incidents[0].get("title")) if incidents else "-"
            events = ((result.get("incident") or {}).get("timeline")) or []
            clear_at = float(timeline.get("injected_at") or 0.0) + float(cleared or 0.0)
            ended: dict[str, float] = {}
            for event in events:
                message = str(event.get("message", ""))
                if event.get("kind") == "alert" and "-> resolved" in message:
                    ended[message.split(" ", 1)[0]] = float(event["ts"]) - clear_at
            fired = ", ".join(f"{rule} {ended[rule]:+.1f} s" for rule in sorted(ended)) or "-"
            row = (
                f"| {scenario} | {len(incidents)} | {severities} | {EXPECTED[scenario]} | "
                f"{after} | {(result.get('figures') or {}).get('notifications', '-')} | "
                f"{fired} | {title.replace('|', '/')} |"
            )
            print(row, flush=True)
            rows.append(row)
    body = (
        "\n".join(rows)
        + "\n\nEach drill in a fresh `quality-gates init` workspace (the starter's simulators, "
        "15 req/s, the fault for the duration above), its incidents read back with "
        "`incident list --state all --json`; each of its alerts with when it resolved, from "
        "the incident's timeline. Expected: exactly one incident per fault, at the "
        "runbook's severity; the fault's alerts resolved within 10 s of the clear (the "
        "drills' timescale: rule windows 10 s, keep_firing_for 1 s, probes every 1 s; the "
        f"production bound is 85.5 s). {failures} run(s) off the expectation.\n"
    )
    command = f"python bench/drill_incidents.py --runs {args.runs} --duration {args.duration}"
    print(f"\n{command}")
    if not args.no_record:
        record("drill_incidents", "Drill incidents", command, body)


if __name__ == "__main__":
    main()
