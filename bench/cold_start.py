"""Cold start of `quality-gates --help` and `quality-gates status` (median of N runs).

Peers in the same run: the bare interpreter (`python -c pass`) and `python -c "import click"`,
so the figure can be read as a ratio on a noisy machine. Target: under 400 ms each.

    python bench/cold_start.py [--runs 10] [--record]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

TARGET_MS = 400.0


def timed(argv: list[str], cwd: Path, runs: int) -> list[float]:
    """Wall time in ms of `runs` fresh processes (after one unmeasured warm-up)."""
    subprocess.run(argv, cwd=cwd, capture_output=True, check=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, capture_output=True, check=True)
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--record", action="store_true", help="write BENCHMARKS.md")
    args = parser.parse_args()
    qg = str(Path(sys.executable).with_name("quality-gates"))
    with tempfile.TemporaryDirectory() as folder:
        workspace = Path(folder)
        subprocess.run([qg, "init"], cwd=workspace, capture_output=True, check=True)
        cases = {
            "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
            "python -c 'import click' (CLI framework alone)": [
                sys.executable,
                "-c",
                "import click",
            ],
            "quality-gates --help": [qg, "--help"],
            "quality-gates status": [qg, "status"],
        }
        results = {name: timed(argv, workspace, args.runs) for name, argv in cases.items()}
    lines = [
        "| command | median ms | min ms | max ms | vs interpreter |",
        "|---|---:|---:|---:|---:|",
    ]
    base = statistics.median(results["python -c pass (interpreter alone)"])
    verdicts = []
    for name, samples in results.items():
        median = statistics.median(samples)
        lines.append(
            f"| `{name}` | {median:.0f} | {min(samples):.0f} | {max(samples):.0f} | "
            f"{median / base:.1f}x |"
        )
        if name.startswith("quality-gates"):
            verdicts.append(
                f"{name}: {median:.0f} ms median, target < {TARGET_MS:.0f} ms: "
                f"{'met' if median < TARGET_MS else 'MISSED'}"
            )
    body = "\n".join(lines) + "\n\n" + "\n".join(f"- {v}" for v in verdicts)
    command = f"python bench/cold_start.py --runs {args.runs}"
    print(f"$ {command}\n\n{body}")
    if args.record:
        record("cold_start", f"CLI cold start (median of {args.runs})", command, body)


if __name__ == "__main__":
    main()
