"""Shared by the benchmarks: machine facts and writing a dated section into BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"


def machine() -> str:
    """One line describing where the figures were measured."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {platform.machine()}, load {load:.2f}"
    )


def record(name: str, title: str, command: str, body: str) -> None:
    """Replace (or add) the section for benchmark `name` in BENCHMARKS.md."""
    today = datetime.date.today().isoformat()
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\n"
        f"Measured {today} on {machine()}.\n\n```\n{command}\n```\n\n{body.strip()}\n"
        f"<!-- /bench:{name} -->\n"
    )
    text = (
        BENCHMARKS.read_text()
        if BENCHMARKS.exists()
        else (
            "# Benchmarks\n\nFigures from `bench/`; each section names the command that produced "
            "it. The machine is shared and noisy, so compare ratios against the peers measured in "
            "the same run rather than absolute numbers across runs.\n\n"
        )
    )
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n", re.S
    )
    text = (
        pattern.sub(lambda _: section, text)
        if pattern.search(text)
        else (text.rstrip("\n") + "\n\n" + section)
    )
    BENCHMARKS.write_text(text)
