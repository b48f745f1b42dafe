"""Size and power of the offline gate's paired pass/fail test (Tango's score test at the
non-inferiority margin), by simulation.

Size: the candidate is exactly `margin` worse than the baseline (the null's boundary), so
every approval is a false one; nominal 5%, acceptance at most 6.5%. Power: the candidate is
as good as the baseline, so every approval is a right one. Rows: n items, columns: the share
of items on which the two models disagree (discordance). The conditional McNemar test it
replaced is shown beside it in the same run.

    python bench/paired_test.py [--runs 40000] [--record]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import record

from quality_gates.gates import stats

SIZES = (200, 500, 1000, 2000, 5000)
DISCORDANCE = (0.03, 0.06, 0.10, 0.20, 0.30)
ALPHA = 0.05


def conditional_mcnemar_p(n: int, worse: int, better: int, margin: float) -> float:
    """The test replaced in issue 15: exact binomial on the discordant pairs at the margin."""
    d = worse + better
    if d == 0:
        return 0.0
    pi0 = (1 - margin * n / d) / 2
    if pi0 <= 0:
        return 0.0
    return float(sps.binomtest(better, d, pi0, alternative="greater").pvalue)


def approvals(n: int, p_worse: float, p_better: float, margin: float, runs: int, seed: int,
              test: str) -> float:  # fmt: skip
    rng = np.random.default_rng(seed)
    tables = rng.multinomial(n, [p_worse, p_better, 1 - p_worse - p_better], size=runs)
    keys, counts = np.unique(tables[:, :2], axis=0, return_counts=True)
    approved = 0
    for (worse, better), count in zip(keys, counts, strict=True):
        if test == "tango":
            p = stats.paired_binary_noninferiority(n, int(worse), int(better), margin)[0]
        else:
            p = conditional_mcnemar_p(n, int(worse), int(better), margin)
        approved += int(count) * (p < ALPHA)
    return approved / runs


def table(title: str, cell: Callable[[int, float], str]) -> str:
    lines = [f"**{title}**", "", "| n | " + " | ".join(f"{d:.0%}" for d in DISCORDANCE) + " |"]
    lines.append("|---:|" + "---:|" * len(DISCORDANCE))
    for n in SIZES:
        lines.append(f"| {n:,} | " + " | ".join(cell(n, d) for d in DISCORDANCE) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40_000)
    parser.add_argument("--margin", type=float, default=0.02)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    margin = args.margin
    started = time.perf_counter()
    worst = {"tango": 0.0, "mcnemar": 0.0}

    def size(test: str) -> Callable[[int, float], str]:
        def cell(n: int, d: float) -> str:
            rate = approvals(n, (d + margin) / 2, (d - margin) / 2, margin, args.runs,
                             seed=n * 1000 + int(d * 100), test=test)  # fmt: skip
            worst[test] = max(worst[test], rate)
            return f"{rate:.2%}"

        return cell

    def power(n: int, d: float) -> str:
        rate = approvals(n, d / 2, d / 2, margin, args.runs, seed=n * 7 + int(d * 100),
                         test="tango")  # fmt: skip
        return f"{rate:.1%}"

    body = "\n\n".join(
        [
            table("False approvals at the margin, Tango's score test (nominal 5%)", size("tango")),
            table(
                "False approvals at the margin, conditional McNemar (the test it replaced)",
                size("mcnemar"),
            ),
            table("Power: approvals of a candidate exactly as good as the baseline", power),
        ]
    )
    command = f"python bench/paired_test.py --runs {args.runs} --margin {margin:g}"
    verdict = "met" if worst["tango"] <= 0.065 else "NOT met"
    body += (
        f"\n\n- margin {margin:.0%} absolute, {args.runs:,} simulated runs per cell, one-sided "
        f"alpha {ALPHA:.0%}\n- worst false approval: Tango {worst['tango']:.2%} (target <= 6.5%: "
        f"{verdict}); conditional McNemar {worst['mcnemar']:.2%}\n"
        f"- simulation took {time.perf_counter() - started:.0f} s"
    )
    print(command)
    print(body)
    if args.record:
        record("paired_test", "Offline gate: size and power of the paired pass/fail test",
               command, body)  # fmt: skip


if __name__ == "__main__":
    main()
