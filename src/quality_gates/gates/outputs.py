"""CI outputs of a gate run, the format chosen by the file's extension.

.json        the whole summary
.jsonl       one record per answer (offline) or per check
.md          a Markdown report (GitHub job summaries render it)
.html        a self-contained HTML report
.junit.xml   one test case per check: REJECT is a failure, CONDITIONAL is skipped
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from quality_gates.errors import UsageError

FORMATS = (".junit.xml", ".jsonl", ".json", ".md", ".html")


def format_of(path: Path) -> str:
    """The output format named by `path`'s extension; UsageError if unknown."""
    name = path.name.lower()
    for suffix in FORMATS:
        if name.endswith(suffix):
            return suffix
    raise UsageError(f"-o {path}: unknown output format", hint=f"use one of {', '.join(FORMATS)}")


def check_paths(paths: list[Path]) -> None:
    """Refuse unknown extensions before any work is done."""
    for path in paths:
        format_of(path)


def write_all(summary: dict[str, Any], paths: list[Path], records: Path | None = None) -> None:
    """Write every requested output."""
    for path in paths:
        write(summary, path, records)


def write(summary: dict[str, Any], path: Path, records: Path | None = None) -> None:
    """One output file."""
    kind = format_of(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".json":
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    elif kind == ".jsonl":
        if records is not None and records.exists():
            shutil.copyfile(records, path)
        else:
            with path.open("w", encoding="utf-8") as handle:
                for check in summary.get("checks", []):
                    handle.write(json.dumps(check, default=str) + "\n")
    elif kind == ".md":
        path.write_text(markdown(summary), encoding="utf-8")
    elif kind == ".html":
        path.write_text(html(summary), encoding="utf-8")
    else:
        path.write_text(junit(summary), encoding="utf-8")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def markdown(summary: dict[str, Any]) -> str:
    """The report as Markdown."""
    lines = [
        f"# {summary.get('kind', 'gate')} gate: {summary.get('verdict')}",
        "",
        str(summary.get("headline", "")),
        "",
    ]
    if summary.get("reasons"):
        lines += ["## Why", ""] + [f"- {r}" for r in summary["reasons"]] + [""]
    checks = summary.get("checks", [])
    if checks:
        lines += ["## Checks", "", "| check | verdict | detail |", "|---|---|---|"]
        lines += [
            f"| {c['name']} | {c['verdict']}{' (info)' if c.get('informational') else ''} | "
            f"{str(c.get('detail', '')).replace('|', '/')} |"
            for c in checks
        ]
        lines.append("")
    metrics = summary.get("metrics", {})
    if metrics:
        roles = list(metrics)
        names = list(metrics[roles[0]])
        lines += ["## Metrics", "", "| metric | " + " | ".join(roles) + " |"]
        lines.append("|---|" + "---:|" * len(roles))
        for name in names:
            cells = []
            for role in roles:
                m = metrics[role].get(name, {})
                cell = _fmt(m.get("value"))
                if m.get("low") is not None and m.get("high") is not None:
                    cell += f" [{_fmt(m['low'])}, {_fmt(m['high'])}]"
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    for note in summary.get("notes", []):
        lines.append(f"> {note}")
    if summary.get("run_id"):
        lines += ["", f"Run `{summary['run_id']}`."]
    return "\n".join(lines) + "\n"


def html(summary: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    from jinja2 import Environment

    template = Environment(autoescape=True).from_string(_HTML)
    return template.render(s=summary, fmt=_fmt, metrics=summary.get("metrics", {}))


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ s.kind }} gate: {{ s.verdict }}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}
.APPROVE{color:#1a7f37}.REJECT{color:#cf222e}.CONDITIONAL{color:#9a6700}.ERROR{color:#8250df}
</style></head><body>
<h1>{{ s.kind }} gate: <span class="{{ s.verdict }}">{{ s.verdict }}</span></h1>
<p>{{ s.headline }}</p>
{% if s.reasons %}<h2>Why</h2><ul>{% for r in s.reasons %}<li>{{ r }}</li>{% endfor %}</ul>
{% endif %}
{% if s.checks %}<h2>Checks</h2><table><tr><th>check</th><th>verdict</th><th>detail</th></tr>
{% for c in s.checks %}<tr><td>{{ c.name }}</td><td class="{{ c.verdict }}">{{ c.verdict }}</td>
<td>{{ c.detail }}{% if c.informational %} (information only){% endif %}</td></tr>
{% endfor %}</table>{% endif %}
{% if metrics %}<h2>Metrics</h2><table><tr><th>metric</th>
{% for role in metrics %}<th>{{ role }}</th>{% endfor %}</tr>
{% for name in metrics[metrics|first] %}<tr><td>{{ name }}</td>
{% for role in metrics %}{% set m = metrics[role].get(name, {}) %}<td>{{ fmt(m.get("value")) }}
{% if m.get("low") is not none %} [{{ fmt(m.low) }}, {{ fmt(m.high) }}]{% endif %}</td>
{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% for n in s.notes or [] %}<p><em>{{ n }}</em></p>{% endfor %}
{% if s.run_id %}<p>Run <code>{{ s.run_id }}</code></p>{% endif %}
</body></html>
"""


def junit(summary: dict[str, Any]) -> str:
    """JUnit XML: one test case per check."""
    checks = summary.get("checks", [])
    gating = [c for c in checks if not c.get("informational")]
    failures = sum(1 for c in gating if c["verdict"] in ("REJECT", "ERROR"))
    skipped = sum(1 for c in gating if c["verdict"] == "CONDITIONAL")
    suite = f"quality-gates {summary.get('kind', 'gate')}"
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name={quoteattr(suite)} tests="{len(checks)}" '
        f'failures="{failures}" skipped="{skipped}">',
        f"  <testsuite name={quoteattr(suite + ' ' + str(summary.get('model', '')))} "
        f'tests="{len(checks)}" failures="{failures}" skipped="{skipped}">',
    ]
    for check in checks:
        name = quoteattr(str(check["name"]))
        detail = str(check.get("detail", ""))
        out.append(f"    <testcase classname={quoteattr(suite)} name={name}>")
        if check.get("informational"):
            out.append(f"      <system-out>{escape(check['verdict'] + ': ' + detail)}</system-out>")
        elif check["verdict"] in ("REJECT", "ERROR"):
            out.append(
                f"      <failure message={quoteattr(detail)} type={quoteattr(check['verdict'])}>"
                f"{escape(detail)}</failure>"
            )
        elif check["verdict"] == "CONDITIONAL":
            out.append(f"      <skipped message={quoteattr('CONDITIONAL: ' + detail)}/>")
        out.append("    </testcase>")
    out += [
        f"    <system-out>{escape(str(summary.get('headline', '')))}</system-out>",
        "  </testsuite>",
        "</testsuites>",
    ]
    return "\n".join(out) + "\n"


def checks_of(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Offline comparisons and threshold checks as uniform checks (name, verdict, detail)."""
    checks = []
    for c in summary.get("comparisons", []):
        direction = "higher" if c["higher_is_better"] else "lower"
        checks.append(
            {
                "name": f"{c['metric']} vs baseline",
                "verdict": c["verdict"],
                "critical": c["critical"],
                "informational": not c.get("decides", True),
                "detail": (
                    f"candidate {_fmt(c['candidate'])} vs baseline {_fmt(c['baseline'])} "
                    f"({direction} is better); improvement {c['improvement']:+.4g} in "
                    f"[{c['low']:+.4g}, {c['high']:+.4g}], margin -{c['margin']:.4g}; "
                    f"{c['test']}; Holm p(non-inferior) {c['p_noninferior_adj']:.3g}"
                    + (f"; {c['note']}" if c.get("note") else "")
                    + ("" if c.get("decides", True) else " (reported only)")
                ),
            }
        )
    for t in summary.get("thresholds", []):
        checks.append(
            {
                "name": f"{t['metric']} {t['operator']} {t['threshold']:g}",
                "verdict": t["verdict"],
                "critical": t["critical"],
                "detail": f"{_fmt(t['value'])} [{_fmt(t['low'])}, {_fmt(t['high'])}]"
                + (f" on {t['n']}" if t.get("n") else "")
                + (f"; {t['note']}" if t.get("note") else ""),
            }
        )
    return checks
