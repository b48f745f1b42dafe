"""What the gate commands share: -o outputs, the verdict banner, a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run a gate on uvloop when it is installed (it comes with uvicorn[standard]): the load
    generator and the engine spend their time in the event loop."""
    import asyncio
    import contextlib

    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def output_option(func: F) -> F:
    """`-o FILE`, repeatable; the format follows the extension."""
    return click.option(
        "--output",
        "-o",
        "outputs",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write a report: .json, .jsonl, .md, .html or .junit.xml (repeatable).",
    )(func)


PLAIN_PROGRESS_EVERY_S = 10.0  # without a terminal: one line this often, not a bar


class _Phase:
    def __init__(self, label: str, total: int | None, unit: str, seconds: float | None) -> None:
        import time

        self.label, self.total, self.unit, self.seconds = label, total, unit, seconds
        self.started = time.monotonic()
        self.done = 0
        self.failed = 0

    def eta_s(self) -> float | None:
        import time

        elapsed = time.monotonic() - self.started
        if self.seconds is not None:
            return max(0.0, self.seconds - elapsed)
        if self.total and self.done:
            return elapsed / self.done * max(0, self.total - self.done)
        return None

    def line(self, *, final: bool = False) -> str:
        import time

        elapsed = time.monotonic() - self.started
        count = f"{self.done:,}" + (f"/{self.total:,}" if self.total else "")
        if final:
            return f"{self.label}: {count} {self.unit}, {self.failed:,} failed, in {elapsed:.1f} s"
        eta = self.eta_s()
        return (
            f"{self.label}: {count} {self.unit}, {self.failed:,} failed, {elapsed:.0f} s elapsed"
            + (f", about {eta:.0f} s left" if eta is not None else "")
        )


class GateProgress:
    """Progress of a long gate on stderr: a rich bar on a terminal (items done, failed calls,
    time left), a plain line every 10 s elsewhere, nothing when disabled (--json)."""

    def __init__(self, *, enabled: bool) -> None:
        import sys

        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._phase: _Phase | None = None
        self._bar: Any = None
        self._task: Any = None
        self._last_line = 0.0

    def start(
        self, label: str, total: int | None, *, unit: str = "answers", seconds: float | None = None
    ) -> None:
        """A new phase: a new bar (or a first plain line)."""
        if not self.enabled:
            return
        self._end_phase()
        self._phase = _Phase(label, total, unit, seconds)
        if self.tty:
            self._open_bar(self._phase)
        else:
            self._emit()

    def update(self, done: int, failed: int) -> None:
        """Move the bar, or print a line when the last one is 10 s old."""
        import time

        phase = self._phase
        if phase is None:
            return
        phase.done, phase.failed = done, failed
        if self._bar is not None:
            self._bar.update(self._task, completed=done, failed=failed)
        elif time.monotonic() - self._last_line >= PLAIN_PROGRESS_EVERY_S:
            self._emit()

    def close(self) -> None:
        """End the last phase."""
        self._end_phase()

    def _end_phase(self) -> None:
        """Without a terminal, a last line with the phase's final counts; close its bar."""
        if self._phase is not None and not self.tty and self.enabled:
            self._emit(final=True)
        self._close_bar()
        self._phase = None

    def _emit(self, *, final: bool = False) -> None:
        import time

        from quality_gates.cli._output import err_console

        if self._phase is not None:
            err_console().print(self._phase.line(final=final), markup=False, highlight=False)
            self._last_line = time.monotonic()

    def _open_bar(self, phase: _Phase) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from quality_gates.cli._output import err_console

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(f"{phase.unit}, " + "{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console(),
            transient=True,
        )
        self._bar.start()
        total = phase.total
        self._task = self._bar.add_task(phase.label, total=total, failed=0)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def gate_progress(*, enabled: bool) -> Iterator[GateProgress]:
    """A GateProgress that is always closed."""
    progress = GateProgress(enabled=enabled)
    try:
        yield progress
    finally:
        progress.close()


def finish(
    ctx: click.Context,
    summary: dict[str, Any],
    outputs: tuple[Path, ...],
    *,
    json_output: bool,
    records: Path | None = None,
    render: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Write -o files, print the result, and exit with the verdict's code."""
    from quality_gates.cli import _context
    from quality_gates.cli._output import console, emit_json, info
    from quality_gates.gates.outputs import write_all
    from quality_gates.gates.verdict import GateVerdict

    write_all(summary, list(outputs), records)
    if _context.wants_json(ctx, json_output):
        emit_json(summary)
    else:
        (render or render_summary)(summary)
        for path in outputs:
            info(f"wrote {path}")
    verdict = GateVerdict(summary["verdict"])
    if verdict is not GateVerdict.APPROVE:
        console().file.flush()
        raise click.exceptions.Exit(verdict.exit_code)


def render_summary(summary: dict[str, Any]) -> None:
    """The verdict, the checks and the reasons, for a terminal."""
    from quality_gates.cli._output import console, table
    from quality_gates.gates.verdict import GateVerdict

    out = console()
    verdict = GateVerdict(summary["verdict"])
    headline = str(summary.get("headline", ""))
    headline = headline.removeprefix(f"{verdict.value}: ")
    out.print(f"[{verdict.style}]{verdict.value}[/]  {_plain(headline)}")
    checks = summary.get("checks", [])
    if checks:
        view = table("check", "verdict", "detail")
        for check in checks:
            style = "dim" if check.get("informational") else GateVerdict(check["verdict"]).style
            label = check["verdict"] + (" (info)" if check.get("informational") else "")
            view.add_row(check["name"], f"[{style}]{label}[/]", _plain(check["detail"]))
        out.print(view)
    for reason in summary.get("reasons", []):
        out.print(f"  - {_plain(reason)}")
    for note in summary.get("notes", []):
        out.print(f"  [dim]{_plain(note)}[/dim]")
    if summary.get("run_id"):
        out.print(f"  run {summary['run_id']}")


def _plain(text: str) -> str:
    from rich.markup import escape

    return escape(str(text))
