"""Reports from the store: summary, detailed, comparison, incident, quota usage,
performance impact and failover effectiveness, as Markdown, HTML or JSON.

    from quality_gates.reports import write_report
    write_report(conn, config, type="detailed", output=Path("monthly-report.md"))

Every figure is read from the store (roll-ups, requests, incidents, remediations, gate and
drill runs); a section without data says so. The JSON form follows `schema()`
(`data/report.schema.json`), which carries `schema_version`.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from quality_gates.reports._build import SCHEMA_VERSION, build_report
from quality_gates.reports._request import REPORT_TYPES, ReportRequest, make_request
from quality_gates.reports._write import output_format, render_file, to_json, write_report

__all__ = [
    "REPORT_TYPES",
    "SCHEMA_VERSION",
    "ReportRequest",
    "build_report",
    "make_request",
    "output_format",
    "render_file",
    "schema",
    "schema_text",
    "to_json",
    "write_report",
]


def schema_text() -> str:
    """The JSON Schema of the JSON report, as shipped."""
    return resources.files("quality_gates").joinpath("data/report.schema.json").read_text("utf-8")


def schema() -> dict[str, Any]:
    """The JSON Schema of the JSON report."""
    data: dict[str, Any] = json.loads(schema_text())
    return data
