"""In a real browser (headless chromium through Playwright): the status page shows every
component and flips to a partial outage when a simulated provider goes down behind a real
gateway; sign-in refuses wrong and client keys; an operator acknowledges an incident and
rolls back from the dashboard, and both land in the audit log under the key's name.

Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import ARTIFACTS, Workspace, make_workspace
from tests.gateway_support import serve
from tests.simulators import instant
from tests.web_support import gate_run, make_keys, open_incident, web_settings

from quality_gates import incidents
from quality_gates.config import load_config, parse_config_text, render_starter
from quality_gates.store import audit
from quality_gates.store import settings as runtime_settings
from quality_gates.store.registry import get_alias
from quality_gates.web.app import create_web_app

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {"width": 1366, "height": 768}
PROVIDERS = ("bedrock", "google", "meta")
RATE = 20.0  # requests per second through the gateway, bounded


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if CHROMIUM is None:
        pytest.skip("needs chromium on PATH (apt-get install -y chromium)")
    playwright = pytest.importorskip(
        "playwright.async_api", reason="needs playwright (pip install -e '.[dev]')"
    )
    async with playwright.async_playwright() as driver:
        chromium = await driver.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def laptop_page(browser: Any) -> Any:
    context = await browser.new_context(viewport=LAPTOP)
    return await context.new_page()


def screenshot_path(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / name)


async def component_status(page: Any, component: str) -> str:
    status: str = await page.get_attribute(f'[data-component="{component}"] .state', "data-status")
    return status


# --- the status page, behind a real gateway and simulators ------------------------------


def outage_config(ports: dict[str, int]) -> str:
    data = yaml.safe_load(render_starter("web", {f"port_{n}": ports[n] for n in PROVIDERS}))
    data["environments"]["production"]["traffic"] = {"bedrock": 34, "google": 33, "meta": 33}
    data["gateway"] = {
        "heartbeat": "0.3s",
        "control_poll": 0.1,
        "telemetry": {"flush_interval": "0.2s"},
        "breaker": {"probe_interval": "0s"},
        "cache": {"enabled": False},
    }
    data["web"] = {"status_page": {"window": "20s", "min_requests": 5, "cache": "0s"}}
    return yaml.safe_dump(data, sort_keys=False)


async def steady_load(base: str, key: str, stop: asyncio.Event, outcomes: dict[int, int]) -> None:
    import aiohttp

    counter = itertools.count()
    pending: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession() as session:

        async def one(n: int) -> None:
            body = {"model": "current", "messages": [{"role": "user", "content": f"web {n}"}]}
            try:
                async with session.post(
                    f"{base}/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {key}"},
                ) as response:
                    await response.read()
                    outcomes[response.status] = outcomes.get(response.status, 0) + 1
            except aiohttp.ClientError:
                outcomes[0] = outcomes.get(0, 0) + 1

        while not stop.is_set():
            task = asyncio.create_task(one(next(counter)))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(1.0 / RATE)
        await asyncio.gather(*pending, return_exceptions=True)


async def set_faults(base: str, **faults: Any) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{base}/_sim/faults", json=faults) as response,
    ):
        assert response.status == 200, await response.text()


async def statuses_until(
    page: Any, url: str, wanted: dict[str, tuple[str, ...]], timeout: float
) -> dict[str, str]:
    """Reload the status page until every component named in `wanted` shows one of its
    statuses; returns what each component shows."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        await page.goto(url)
        seen = {c: await component_status(page, c) for c in ("service", *PROVIDERS)}
        if all(seen[c] in statuses for c, statuses in wanted.items()):
            return seen
        await asyncio.sleep(0.5)
    raise AssertionError(f"the page showed {seen} for {timeout:g} s, not {wanted}")


@pytest.mark.slow
async def test_the_status_page_flips_to_partial_outage_when_a_provider_goes_down(
    tmp_path: Path, browser: Any
) -> None:
    from quality_gates.gateway import AppSettings, create_app
    from quality_gates.simulator import run_simulators, spec_from_provider
    from quality_gates.store import StoreURL

    starter = parse_config_text(render_starter("web"), "quality-gates.yaml").config
    specs = [
        dataclasses.replace(
            spec_from_provider(p, starter.models, port=0), profile=None, faults=instant()
        )
        for p in starter.providers
    ]
    async with run_simulators(specs) as sims:
        ws = make_workspace(
            tmp_path / "ws",
            f"sqlite:///{tmp_path / 'ws' / 'state.db'}",
            outage_config({name: sim.port for name, sim in sims.items()}),
        )
        keys = make_keys(ws)
        config = load_config(ws.config_path).config
        gateway = create_app(
            AppSettings(
                config=config,
                store_url=StoreURL.parse(ws.db_url, base_dir=ws.root),
                environment="production",
            )
        )
        stop, outcomes = asyncio.Event(), {}
        async with serve(gateway) as gateway_url, serve(create_web_app(web_settings(ws))) as web:
            load = asyncio.create_task(steady_load(gateway_url, keys.client, stop, outcomes))
            try:
                page = await laptop_page(browser)
                everyone = dict.fromkeys(("service", *PROVIDERS), ("operational",))
                await statuses_until(page, f"{web}/status", everyone, 30)
                names = await page.locator("[data-component] .name").all_inner_texts()
                assert [n.strip() for n in names] == ["AI service", *PROVIDERS]
                assert await page.inner_text("#overall") == "All systems operational"
                await page.screenshot(
                    path=screenshot_path("status-operational.png"), full_page=True
                )

                await set_faults(sims["bedrock"].base_url, outage=True)
                down = {
                    "service": ("partial_outage",),
                    "bedrock": ("major_outage", "partial_outage"),
                }
                seen = await statuses_until(page, f"{web}/status", down, 30)
                assert seen["google"] == seen["meta"] == "operational"
                assert await page.inner_text("#overall") == "Partial outage"
                assert "bedrock" in await page.inner_text("#affected")
                await page.screenshot(
                    path=screenshot_path("status-partial-outage.png"), full_page=True
                )

                await sign_in(page, web, keys.operator)
                assert "open" in await page.inner_text("#traffic .breaker-open")
                assert "bedrock" in await page.inner_text("#metrics")
                await page.screenshot(path=screenshot_path("dashboard-outage.png"), full_page=True)
            finally:
                stop.set()
                await asyncio.wait_for(load, 30)
    assert outcomes.get(200, 0) > RATE * 3  # the load really ran, and failover answered it


# --- signing in and acting from the dashboard -------------------------------------------


@contextlib.asynccontextmanager
async def dashboard(ws: Workspace) -> AsyncIterator[str]:
    async with serve(create_web_app(web_settings(ws))) as url:
        yield url


async def sign_in(page: Any, url: str, key: str) -> None:
    await page.goto(f"{url}/")
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()


async def test_sign_in_refuses_wrong_and_client_keys_and_admits_an_operator(
    sqlite_workspace: Workspace, browser: Any
) -> None:
    keys = make_keys(sqlite_workspace)
    async with dashboard(sqlite_workspace) as url:
        page = await laptop_page(browser)
        await sign_in(page, url, "qg-not-a-key")
        assert "not valid" in await page.inner_text("#login-error")
        await page.screenshot(path=screenshot_path("login-refused.png"))
        await sign_in(page, url, keys.client)
        assert "client role" in await page.inner_text("#login-error")
        await page.goto(f"{url}/")
        assert page.url.endswith("/login")
        await sign_in(page, url, keys.operator)
        assert page.url == f"{url}/"
        assert "operator-key" in await page.inner_text(".who")


async def test_an_operator_acknowledges_and_rolls_back_from_the_dashboard(
    sqlite_workspace: Workspace, browser: Any
) -> None:
    ws = sqlite_workspace
    keys = make_keys(ws)
    incident = open_incident(ws)
    incidents.add_note(ws.conn, incident, "looking at bedrock 5xx", actor="watch")
    gate_run(ws, "offline", "APPROVE", "accuracy 96.1% vs 95.8% (margin 2%)")
    gate_run(ws, "canary", "REJECT", "p95 +41% against the baseline")
    async with dashboard(ws) as url:
        page = await laptop_page(browser)
        await sign_in(page, url, keys.operator)
        gates = await page.inner_text("#gates")
        assert "REJECT" in gates
        assert "APPROVE" in gates
        await page.screenshot(path=screenshot_path("dashboard.png"), full_page=True)

        await page.click(f'[data-incident="{incident}"] [data-action="ack"]')
        assert f"Acknowledge incident #{incident}?" in await page.inner_text("h1")
        await page.screenshot(path=screenshot_path("dashboard-confirm.png"))
        await page.click("#confirm")
        assert "acknowledged" in await page.inner_text("#flash")

        await page.select_option("#rollback-to", "previous-stable")
        await page.fill('input[name="reason"][aria-label="rollback reason"]', "p95 regression")
        await page.click('#rollback-form button[type="submit"]')
        assert "current: claude-3-5-haiku -> claude-3-haiku" in await page.inner_text(".preview")
        await page.click("#confirm")
        assert "Rolled back" in await page.inner_text("#flash")
        assert "claude-3-haiku" in await page.inner_text('[data-alias="current"]')
        await page.screenshot(path=screenshot_path("dashboard-after-actions.png"), full_page=True)

        await page.fill('[data-incident] input[name="text"]', "Traffic moved to a healthy model.")
        await page.check('[data-incident] input[name="public"]')
        await page.click('[data-incident] .note-form button[type="submit"]')
        assert "PUBLIC" in await page.inner_text(".preview")
        await page.click("#confirm")
        with ws.conn.write():
            runtime_settings.put(
                ws.conn,
                "production",
                "emergency",
                {"mode": "degraded", "reason": "drill", "since": time.time(), "actor": "ops"},
                actor="ops",
            )
        await page.goto(f"{url}/status")
        assert "Traffic moved to a healthy model." in await page.inner_text(".incidents")
        assert "Degraded mode." in await page.inner_text(".banner")
        await page.screenshot(path=screenshot_path("status-incident.png"), full_page=True)

    current = get_alias(ws.conn, "production", "current")
    assert current is not None
    assert current.model_id == "claude-3-haiku"
    actors = {e.action: e.actor for e in audit.entries(ws.conn, limit=20)}
    assert actors["incident.ack"] == "operator-key"
    assert actors["alias.rollback"] == "operator-key"


async def test_the_dashboard_refreshes_its_live_panels_but_not_one_being_typed_in(
    sqlite_workspace: Workspace, browser: Any
) -> None:
    from quality_gates.registry import Actor, rollback

    ws = sqlite_workspace
    keys = make_keys(ws)
    first = open_incident(ws)
    config = load_config(ws.config_path).config
    config.web.refresh = 1.0
    async with serve(create_web_app(web_settings(ws, config))) as url:
        page = await laptop_page(browser)
        await sign_in(page, url, keys.operator)
        note = f'[data-incident="{first}"] input[name="text"]'
        await page.fill(note, "half-typed note")
        await page.locator("#aliases h2").click()  # focus leaves the incidents panel
        second = open_incident(ws, title="p95 over 3000 ms")
        rollback(
            ws.conn,
            environment="production",
            model_ref="current",
            previous_ref="previous-stable",
            reason="from the CLI",
            actor=Actor("cli-user"),
        )
        current = page.locator('[data-alias="current"]')
        await current.filter(has_text="claude-3-haiku").wait_for(timeout=10_000)
        assert await page.input_value(note) == "half-typed note"  # left alone while typed in
        assert await page.locator(f'[data-incident="{second}"]').count() == 0
        await page.fill(note, "")
        await page.locator("#aliases h2").click()
        await page.wait_for_selector(f'[data-incident="{second}"]', timeout=10_000)
