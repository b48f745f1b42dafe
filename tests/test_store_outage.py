"""Long-lived processes survive a store outage: PostgreSQL cut by a TCP proxy in front of it,
then restored. Held connections reopen with backoff, each state change is logged once,
`qg_store_up` says it, the watch resumes within seconds and the dashboard stops answering 500."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from starlette.testclient import TestClient
from tests.conftest import Workspace, make_workspace
from tests.gateway_support import (
    FAST_GATEWAY,
    chat_body,
    fakes,
    post_chat,
    running_gateway,
    wait_until,
)
from tests.receivers import Receiver
from tests.tcp_proxy import TcpProxy
from tests.telemetry_rows import put_traffic
from tests.watch_setup import PD_KEY, PD_KEY_VARIABLE, watch_config
from tests.web_support import web_settings

from quality_gates.config import render_starter
from quality_gates.errors import StoreUnavailable
from quality_gates.incidents import list_incidents
from quality_gates.store import Database, StoreURL
from quality_gates.watch._service import CycleReport, WatchService

pytestmark = pytest.mark.postgres
PG_PORT = 5432


@pytest.fixture
def proxied(tmp_path: Path, pg_schema_url: str) -> Iterator[tuple[Workspace, TcpProxy]]:
    """A PostgreSQL workspace whose db_url goes through a proxy the test can cut."""
    ws = make_workspace(tmp_path / "ws", pg_schema_url, render_starter("outage") + FAST_GATEWAY)
    with TcpProxy.for_url(pg_schema_url, PG_PORT) as proxy:
        yield dataclasses.replace(ws, db_url=proxy.rewrite(pg_schema_url)), proxy
    ws.database.close_shared()


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _poll(fn: object, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while True:
        try:
            fn()  # type: ignore[operator]
            return time.monotonic() - started
        except StoreUnavailable:
            if time.monotonic() - started > timeout:
                raise
            time.sleep(0.05)


def test_a_held_connection_reopens_after_a_cut_and_each_change_is_logged_once(
    proxied: tuple[Workspace, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    ws, proxy = proxied
    caplog.set_level(logging.INFO, logger="quality_gates.store")
    database = Database(StoreURL.parse(ws.db_url))
    conn = database.connect()
    assert conn.scalar("SELECT COUNT(*) FROM aliases") > 0
    proxy.cut()
    for _ in range(20):  # many callers, many failures: one line
        with pytest.raises(StoreUnavailable):
            conn.scalar("SELECT 1")
        with pytest.raises(StoreUnavailable), conn.write():
            conn.execute("UPDATE leases SET holder = holder")
    assert not database.health.up
    # Connecting again fails fast inside the backoff instead of waiting for a timeout.
    with pytest.raises(StoreUnavailable, match="next reconnect in"):
        database.connect()
    proxy.restore()
    _poll(lambda: conn.scalar("SELECT 1"))
    with conn.write():  # the same Connection object writes again
        conn.execute("UPDATE leases SET holder = holder")
    assert database.health.up
    assert len(_lines(caplog, "store lost")) == 1
    (back,) = _lines(caplog, "store back after")
    assert "s (" in back


def test_connections_opened_before_an_outage_that_is_over_reconnect_silently(
    proxied: tuple[Workspace, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    ws, proxy = proxied
    caplog.set_level(logging.INFO, logger="quality_gates.store")
    database = Database(StoreURL.parse(ws.db_url))
    first, idle = database.connect(), database.connect()
    proxy.cut()
    with pytest.raises(StoreUnavailable):
        first.scalar("SELECT 1")
    proxy.restore()
    _poll(lambda: first.scalar("SELECT 1"))
    # `idle` died in the outage without being used: its next read and write just work,
    # without a second "store lost" for an outage already over.
    assert idle.scalar("SELECT 1") == 1
    with idle.write():
        idle.execute("UPDATE leases SET holder = holder")
    assert len(_lines(caplog, "store lost")) == 1
    assert len(_lines(caplog, "store back")) == 1


async def test_the_watch_pauses_during_a_cut_and_resumes_within_seconds_of_the_return(
    proxied: tuple[Workspace, TcpProxy],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, proxy = proxied
    monkeypatch.setenv(PD_KEY_VARIABLE, PD_KEY)
    caplog.set_level(logging.INFO)
    receiver = Receiver()
    await receiver.start()
    config = watch_config(ws, receiver.base)
    database = Database(StoreURL.parse(ws.db_url))
    reports: list[tuple[float, CycleReport]] = []
    service = WatchService(
        database,
        config,
        interval=5.0,  # the default evaluation interval
        on_cycle=lambda report: reports.append((time.monotonic(), report)),
    )
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(service.run(stop))
    try:
        await wait_until(lambda: any(r.evaluation is not None for _, r in reports), 10)
        proxy.cut()
        await wait_until(lambda: any(r.store_down for _, r in reports), 10)
        await asyncio.sleep(6)  # a cut longer than the evaluation interval
        put_traffic(ws.database.shared(), ts=time.time(), error_rate=0.5)
        restored = time.monotonic()
        proxy.restore()
        await wait_until(
            lambda: any(at > restored and r.evaluation is not None for at, r in reports), 5
        )
        # It evaluates what happened meanwhile: an incident, and its page goes out.
        await wait_until(lambda: len(list_incidents(ws.database.shared())) == 1, 10)
        await wait_until(lambda: receiver.on("/pagerduty/v2/enqueue"), 10)
    finally:
        stop.set()
        await task
        await receiver.stop()
    assert len(_lines(caplog, "watch paused: the store is unreachable")) == 1
    assert len(_lines(caplog, "watch resumed after")) == 1
    assert not _lines(caplog, "watch cycle failed")
    assert len(_lines(caplog, "store lost")) == 1


def test_the_dashboard_answers_503_while_the_store_is_cut_and_recovers(
    proxied: tuple[Workspace, TcpProxy],
) -> None:
    ws, proxy = proxied
    from quality_gates.web.app import create_web_app

    settings = web_settings(ws)
    settings = dataclasses.replace(settings, store_url=StoreURL.parse(ws.db_url))
    config = settings.config.model_copy(deep=True)
    config.web.status_page.cache = 0.0
    settings = dataclasses.replace(settings, config=config)
    with TestClient(create_web_app(settings)) as client:
        assert client.get("/status.json").status_code == 200
        proxy.cut()
        # The status page keeps its last read; the operator's page says what is wrong.
        assert client.get("/status.json").status_code == 200
        login = client.get("/login")
        assert login.status_code in (200, 503)
        proxy.restore()
        deadline = time.monotonic() + 10
        while client.get("/dashboard.json").status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/dashboard.json").status_code in (401, 303)  # not signed in: no 500


async def test_the_gateway_serves_through_a_cut_and_reports_qg_store_up(
    proxied: tuple[Workspace, TcpProxy],
) -> None:
    ws, proxy = proxied
    async with running_gateway(ws, fakes()) as (url, app), aiohttp.ClientSession() as session:

        async def store_up() -> str:
            async with session.get(f"{url}/metrics") as resp:
                text = await resp.text()
            (line,) = [x for x in text.splitlines() if x.startswith("qg_store_up ")]
            return line.split()[1]

        assert await store_up() == "1.0"
        proxy.cut()
        for _ in range(20):
            status, _, _ = await post_chat(session, url, chat_body())
            assert status == 200
        await wait_until(_async_eq(store_up, "0.0"), 5)
        proxy.restore()
        await wait_until(_async_eq(store_up, "1.0"), 10)
        telemetry = app.state.gateway.services.telemetry
        await wait_until(lambda: telemetry.written_requests >= 20, 15)
    rows = ws.database.shared().scalar("SELECT COUNT(*) FROM requests")
    assert rows >= 20  # the requests answered during the cut were recorded once it was back


def _async_eq(fn: object, value: str) -> object:
    async def check() -> bool:
        return await fn() == value  # type: ignore[operator, no-any-return]

    return check


def test_serve_judges_its_own_figures_while_the_store_is_cut(
    tmp_path: Path, pg_schema_url: str
) -> None:
    """Issue 17: while the store is down the watch inside `serve` still evaluates what it can
    from the gateway's in-memory figures and says the store is down. A provider that fails
    during the cut is reported (one log line, /metrics), nothing is stored or sent, and the
    resume line names what held meanwhile."""
    from tests.test_e2e_serve import NO_PROBES, chat, serve, simulators

    from quality_gates.simulator.control import put_faults

    with TcpProxy.for_url(pg_schema_url, PG_PORT) as proxy:
        db_url = proxy.rewrite(pg_schema_url)
        with simulators(tmp_path / "ws", db_url, NO_PROBES) as (ws, sims):
            text = ws.config_path.read_text(encoding="utf-8")
            fast = text.replace("evaluation_interval: 5s", "evaluation_interval: 0.5s").replace(
                'expr: "provider_availability < 95%",',
                'expr: "provider_availability < 95%", window: 6s, min_requests: 5,',
            )
            # probes: a provider traffic left is still judged on them (as in production)
            fast = fast.replace("probe_interval: 0,", "probe_interval: 0.5s,")
            assert fast.count("window: 6s") == 1
            assert "probe_interval: 0.5s" in fast
            ws.config_path.write_text(fast, encoding="utf-8")
            with serve(ws) as url:
                n = 0

                def traffic(seconds: float, pause: float) -> None:
                    nonlocal n
                    until = time.monotonic() + seconds
                    while time.monotonic() < until:
                        n += 1
                        status, _ = chat(url, f"store outage {n}")
                        assert status == 200
                        time.sleep(pause)

                traffic(8.0, 0.5)  # the watch's in-memory figures now cover the 6 s window
                proxy.cut()
                put_faults(sims["bedrock"].base_url, {"outage": True}, provider="bedrock")
                traffic(2.0, 0.1)  # bedrock fails, its breaker opens, google answers

                def breaches() -> str:
                    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
                        lines = resp.read().decode().splitlines()
                    return "\n".join(x for x in lines if x.startswith("qg_watch_store_down_"))

                wait_for_sync(lambda: "provider-availability-critical" in breaches(), 10)
                assert "qg_store_up 0.0" in _metrics_text(url)
                put_faults(sims["bedrock"].base_url, {"reset": True}, provider="bedrock")
                proxy.restore()
                log = next(ws.root.glob("serve-*.log"))
                wait_for_sync(lambda: "watch resumed after" in log.read_text(), 20)
                assert breaches() == ""  # the store is back: nothing judged on memory alone
            output = log.read_text()
    held = [x for x in output.splitlines() if "store down: provider-availability-critical" in x]
    assert len([x for x in held if "holds on this gateway's own figures" in x]) == 1, held
    assert "Bedrock availability" in held[0]
    assert "judging 1 of" in next(x for x in output.splitlines() if "watch paused" in x)
    resumed = next(x for x in output.splitlines() if "watch resumed after" in x)
    assert "provider-availability-critical" in resumed


def _metrics_text(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def wait_for_sync(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
