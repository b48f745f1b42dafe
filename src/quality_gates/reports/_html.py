"""The report as one self-contained HTML page: the Markdown rendering turned into HTML, a
small stylesheet, charts embedded as data: URIs. No script, no external resource."""

from __future__ import annotations

import base64
import html
import re
from typing import Any

from quality_gates.errors import ConfigError
from quality_gates.reports._charts import Chart
from quality_gates.reports._markdown import render as render_markdown

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --head: #f6f8fa;
        --pass: #1a7f37; --fail: #cf222e; --none: #9a6700; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       max-width: 1100px; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.7rem; border-bottom: 2px solid var(--line); padding-bottom: .4rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid var(--line);
     padding-bottom: .25rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
p em { color: var(--muted); }
table { border-collapse: collapse; margin: .6rem 0; font-size: 13.5px; display: block;
        overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid var(--line); padding: .3rem .6rem; text-align: left;
         vertical-align: top; }
th { background: var(--head); font-weight: 600; }
tr:nth-child(even) td { background: #fbfcfd; }
strong.pass { color: var(--pass); } strong.fail { color: var(--fail); }
strong.nodata { color: var(--none); }
img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px;
      margin: .5rem 0; }
code { background: var(--head); padding: .1rem .3rem; border-radius: 4px; }
footer { margin-top: 3rem; color: var(--muted); font-size: 12.5px; }
"""
CLASSES = {
    "PASS": "pass",
    "OK": "pass",
    "passed": "pass",
    "APPROVE": "pass",
    "restored": "pass",
    "FAIL": "fail",
    "OVER": "fail",
    "failed": "fail",
    "missed": "fail",
    "REJECT": "fail",
    "error": "fail",
    "NO DATA": "nodata",
    "HIGH": "nodata",
    "CONDITIONAL": "nodata",
}
_STRONG = re.compile(r"<strong>([^<]+)</strong>")


def data_uri(png: bytes) -> str:
    """PNG bytes as a data: URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _mark(match: re.Match[str]) -> str:
    text = match.group(1)
    css = CLASSES.get(text)
    return f'<strong class="{css}">{text}</strong>' if css else match.group(0)


def render(document: dict[str, Any], charts: list[Chart], note: str | None = None) -> str:
    """The page; `charts` are embedded where their sections are."""
    try:
        import markdown
    except ImportError:
        raise ConfigError(
            "an HTML report needs the markdown package",
            hint="pip install 'quality-gates[reports]'",
        ) from None
    images = {c.section: (c.title, data_uri(c.png)) for c in charts}
    body = markdown.markdown(render_markdown(document, images, note), extensions=["tables"])
    body = _STRONG.sub(_mark, body)
    title = html.escape(f"{document['title']}: {document['project']}")
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
        f"<footer>quality-gates report, schema version {document['schema_version']}.</footer>\n"
        "</body>\n</html>\n"
    )
