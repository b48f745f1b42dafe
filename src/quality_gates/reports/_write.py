"""Write a report: build the document, draw its charts, render it by the file's extension."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality_gates.errors import UsageError
from quality_gates.reports import _charts, _html, _markdown
from quality_gates.reports._build import build_report
from quality_gates.reports._request import make_request
from quality_gates.store.db import Connection

if TYPE_CHECKING:
    from quality_gates.config import QualityGatesConfig

FORMATS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".json": "json",
}
NO_MATPLOTLIB = (
    "Charts left out: matplotlib is not installed (pip install 'quality-gates[reports]')."
)


def output_format(path: Path) -> str:
    """markdown, html or json from the file's extension; UsageError names the accepted ones."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"--output {path}: cannot tell the format from {path.suffix or 'no extension'!r}",
            hint="end the name in .md, .html or .json",
        )
    return fmt


def charts_dir(path: Path) -> Path:
    """Where a Markdown report's chart images go: `<stem>_files/` beside it."""
    return path.with_name(f"{path.stem}_files")


def to_json(document: dict[str, Any]) -> str:
    """The document as JSON text."""
    return json.dumps(document, indent=2, default=str) + "\n"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, renamed over it:
    a reader never sees half a report, and a symlink at `path` is replaced, never followed
    (a shared folder could point it at another file of the user's)."""
    import os
    import tempfile

    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def render_file(document: dict[str, Any], path: Path) -> Path:
    """Render `document` into `path` in the format its extension names; an unwritable path
    is a UsageError naming it."""
    try:
        return _render_file(document, path)
    except OSError as exc:
        raise UsageError(
            f"cannot write the report to {path}: {exc.strerror or exc}",
            hint="pass --output a path in a folder you can write to",
        ) from None


def _render_file(document: dict[str, Any], path: Path) -> Path:
    fmt = output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        _write_atomic(path, to_json(document).encode())
        return path
    charts = _charts.draw(document) if _charts.available() else []
    note = None if _charts.available() else NO_MATPLOTLIB
    if fmt == "html":
        _write_atomic(path, _html.render(document, charts, note).encode())
        return path
    images: dict[str, tuple[str, str]] = {}
    if charts:
        folder = charts_dir(path)
        folder.mkdir(exist_ok=True)
        for chart in charts:
            _write_atomic(folder / f"{chart.id}.png", chart.png)
            images[chart.section] = (chart.title, f"{folder.name}/{chart.id}.png")
    _write_atomic(path, _markdown.render(document, images, note).encode())
    return path


def write_report(
    conn: Connection,
    config: QualityGatesConfig,
    *,
    type: str,
    output: Path,
    period: str | None = None,
    environment: str | None = None,
    model_id: str | None = None,
    baseline_model: str | None = None,
    incident_id: int | None = None,
    at: str | float | None = None,
    now: float | None = None,
) -> Path:
    """Build the `type` report over `period` (default per type) and write it to `output`
    (.md with charts in `<stem>_files/`, .html self-contained, or .json); returns the path."""
    output_format(output)  # refuse a bad name before reading anything
    now = time.time() if now is None else now
    request = make_request(
        type,
        period=period,
        environment=environment,
        model_id=model_id,
        baseline_model=baseline_model,
        incident_id=incident_id,
        at=at,
        now=now,
    )
    return render_file(build_report(conn, config, request, now=now), output)
