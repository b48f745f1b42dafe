"""How a long gate reports progress: items done, failed calls so far, and what is left.

Services call a `ProgressSink`; the command line turns it into a rich bar on a terminal or
a plain line every few seconds elsewhere, and into nothing with --json. Services never
print.
"""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    """Receives a gate's progress; one `start` per phase, then updates."""

    def start(
        self, label: str, total: int | None, *, unit: str = "answers", seconds: float | None = None
    ) -> None:
        """A phase begins: `total` units if known, or a known length in `seconds`."""

    def update(self, done: int, failed: int) -> None:
        """`done` units so far in this phase, `failed` of them failed calls."""


class NoProgress:
    """A sink that shows nothing (library use, tests, --json)."""

    def start(
        self, label: str, total: int | None, *, unit: str = "answers", seconds: float | None = None
    ) -> None:
        """Nothing."""

    def update(self, done: int, failed: int) -> None:
        """Nothing."""
