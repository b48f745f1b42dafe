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


@contextmanager
def progress_bar(
    label: str, total: int | None, *, enabled: bool
) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on a terminal (stderr); a no-op elsewhere or with --json."""
    import sys

    if not enabled or not sys.stderr.isatty():
        yield lambda done, _total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from quality_gates.cli._output import err_console

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, _total: int | None) -> None:
            bar.update(task, completed=done)

        yield update


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
    out.print(f"[{verdict.style}]{verdict.value}[/]  {_plain(summary.get('headline', ''))}")
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
