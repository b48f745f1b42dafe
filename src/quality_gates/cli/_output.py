"""Printing: rich tables on a terminal, plain text in pipes, JSON on stdout with `--json`."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_consoles: dict[str, Console] = {}
PIPE_WIDTH = 200


def console() -> Console:
    """stdout."""
    if "out" not in _consoles:
        from rich.console import Console

        # In a pipe rich would wrap at 80 columns; tables read better unwrapped.
        width = None if sys.stdout.isatty() else PIPE_WIDTH
        _consoles["out"] = Console(highlight=False, soft_wrap=True, width=width)
    return _consoles["out"]


def err_console() -> Console:
    """stderr: logs, warnings, errors."""
    if "err" not in _consoles:
        from rich.console import Console

        width = None if sys.stderr.isatty() else PIPE_WIDTH
        _consoles["err"] = Console(stderr=True, highlight=False, soft_wrap=True, width=width)
    return _consoles["err"]


def emit_json(data: Any) -> None:
    """Machine output: one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """A warning line on stderr."""
    err_console().print(f"[yellow]{_escape(message)}[/yellow]")


def info(message: str) -> None:
    """A progress or log line on stderr (keeps stdout clean for --json)."""
    err_console().print(_escape(message), style="dim")


def error(message: str) -> None:
    """An error line on stderr."""
    err_console().print(f"[bold red]error:[/bold red] {_escape(message)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def local_time(ts: float | None, *, seconds: bool = True) -> str:
    """UTC epoch seconds as local time for display."""
    if ts is None:
        return "-"
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(ts).strftime(fmt)


def iso_utc(ts: float | None) -> str | None:
    """UTC epoch seconds as ISO 8601 with Z, for JSON."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ago(ts: float | None, now: float | None = None) -> str:
    """`3m ago`."""
    if ts is None:
        return "-"
    from quality_gates.units import format_duration

    delta = max(0.0, (now or time.time()) - ts)
    return f"{format_duration(delta)} ago" if delta >= 1 else "just now"


def table(*columns: str, title: str | None = None) -> Any:
    """A borderless table with a rule under the header: dense enough for a 3 a.m. terminal."""
    from rich import box
    from rich.table import Table

    result = Table(
        box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, title_style="bold"
    )
    for column in columns:
        result.add_column(column, overflow="fold")
    return result


def compact(details: dict[str, Any], limit: int = 110) -> str:
    """`from=a to=b reason="..."` for the non-empty fields of a details mapping."""
    parts = []
    for key, value in details.items():
        if value in (None, "", [], {}):
            continue
        text = (
            json.dumps(value, default=str)
            if not isinstance(value, str)
            else (f'"{value}"' if " " in value else value)
        )
        parts.append(f"{key}={text}")
    line = " ".join(parts)
    return line if len(line) <= limit else line[: limit - 3] + "..."
