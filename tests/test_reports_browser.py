"""The HTML report in a real browser (headless chromium through Playwright): it renders,
every chart is a decoded image, nothing is fetched from anywhere. The screenshot goes to
test-artifacts/report-detailed.png (gitignored)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_workspace
from tests.report_data import fill
from tests.test_web_browser import browser, laptop_page, screenshot_path

from quality_gates.config import load_config
from quality_gates.reports import write_report

pytestmark = [pytest.mark.integration, pytest.mark.browser]
__all__ = ["browser"]  # the fixture, shared with the web tests


@pytest.fixture
def report_html(tmp_path: Path) -> Path:
    """The detailed report of a store with a history, as HTML (written outside the event
    loop: the history is written through the gateway's own telemetry writer)."""
    ws = make_workspace(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}")
    try:
        config = load_config(ws.config_path).config
        history = fill(ws.conn, config, time.time())
        return write_report(
            ws.conn, config, type="detailed", output=tmp_path / "report.html", now=history.now
        )
    finally:
        ws.database.close_shared()


async def test_the_detailed_html_report_renders_with_its_charts(
    report_html: Path, browser: Any
) -> None:
    path = report_html
    page = await laptop_page(browser)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await page.goto(path.as_uri())
    images = await page.eval_on_selector_all(
        "img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth, e.naturalHeight])"
    )
    assert [alt for alt, *_ in images] == [
        "Latency percentiles",
        "Error budget spent",
        "Cost and tokens",
    ]
    for alt, complete, width, height in images:
        assert complete, alt
        assert width > 0, alt
        assert height > 0, alt
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    headings = await page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
    assert "Compliance with the runbook's key metrics" in headings
    fails = await page.eval_on_selector_all("strong.fail", "els => els.length")
    passes = await page.eval_on_selector_all("strong.pass", "els => els.length")
    assert fails > 0
    assert passes > 0
    await page.screenshot(path=screenshot_path("report-detailed.png"), full_page=True)
