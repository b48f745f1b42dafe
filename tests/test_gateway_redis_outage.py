"""Redis is an accelerator, never a dependency of an answer: with Redis cut by a TCP proxy
under bounded load the gateway answers every request on its in-process cache, limiter and
breakers, records every one, logs one line per state change, and goes back to the shared
state (breakers re-read) when Redis returns."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from tests.conftest import REDIS_ENV
from tests.gateway_support import (
    FAST_GATEWAY,
    chat_body,
    fakes,
    gateway_workspace,
    post_chat,
    running_gateway,
    wait_until,
)
from tests.tcp_proxy import TcpProxy

from quality_gates.errors import ServerError

pytestmark = [pytest.mark.redis, pytest.mark.integration]
REDIS_PORT = 6379
LOAD = 400  # requests sent while Redis is cut
CONCURRENCY = 8
CACHED = FAST_GATEWAY + "  cache: {enabled: true, backend: redis}\n"


@pytest.fixture
def redis_proxy() -> Iterator[tuple[str, TcpProxy]]:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"Redis tests need {REDIS_ENV} (set by .ci/run)")
    with TcpProxy.for_url(url, REDIS_PORT) as proxy:
        yield proxy.rewrite(url), proxy


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def _load(session: aiohttp.ClientSession, url: str, count: int) -> list[int]:
    statuses: list[int] = []
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            # Half the questions repeat, so the cache is read and written on both sides.
            status, _, _ = await post_chat(session, url, chat_body(text=f"q{i % (count // 2)}"))
            statuses.append(status)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


async def test_a_redis_cut_under_load_answers_and_records_every_request(
    tmp_path: Path, redis_proxy: tuple[str, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    url_redis, proxy = redis_proxy
    caplog.set_level(logging.INFO, logger="quality_gates.gateway")
    ws = gateway_workspace(tmp_path / "ws", extra=CACHED)
    async with (
        running_gateway(ws, fakes(), redis_url=url_redis) as (url, app),
        aiohttp.ClientSession() as session,
    ):
        state = app.state.gateway
        before = await _load(session, url, 40)
        proxy.cut()
        during = await _load(session, url, LOAD)
        assert not state.redis_link.up
        proxy.restore()
        await wait_until(lambda: state.redis_link.up, 10)
        after = await _load(session, url, 40)
        telemetry = state.services.telemetry
        total = len(before) + len(during) + len(after)
        await wait_until(lambda: telemetry.written_requests >= total, 10)
        metrics = await (await session.get(f"{url}/metrics")).text()
    assert set(before + during + after) == {200}
    assert telemetry.written_requests == total
    assert ws.conn.scalar("SELECT COUNT(*) FROM requests") == total
    counted = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("qg_gateway_requests_total{")
    )
    assert counted == total
    assert len(_lines(caplog, "Redis lost")) == 1
    assert len(_lines(caplog, "Redis back after")) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]


async def test_the_gateway_starts_without_redis_and_uses_it_once_it_answers(
    tmp_path: Path, redis_proxy: tuple[str, TcpProxy]
) -> None:
    url_redis, proxy = redis_proxy
    proxy.cut()
    ws = gateway_workspace(tmp_path / "ws", extra=CACHED)
    async with (
        running_gateway(ws, fakes(), redis_url=url_redis) as (url, app),
        aiohttp.ClientSession() as session,
    ):
        state = app.state.gateway
        assert not state.redis_link.up
        status, _, _ = await post_chat(session, url, chat_body(text="early"))
        assert status == 200
        proxy.restore()
        await wait_until(lambda: state.redis_link.up, 10)
        first = await post_chat(session, url, chat_body(text="shared now"))
        assert first[1]["x-qg-cache"] == "record"  # answered fresh, recorded in Redis
    # The entry made after the return is in Redis, where another replica would find it.
    import redis

    client = redis.Redis.from_url(url_redis)
    try:
        assert any(True for _ in client.scan_iter(match="qg:*cache:*", count=1000))
    finally:
        client.close()


async def test_breakers_opened_elsewhere_during_the_cut_are_adopted_when_redis_returns(
    tmp_path: Path, redis_proxy: tuple[str, TcpProxy]
) -> None:
    url_redis, proxy = redis_proxy
    direct = os.environ[REDIS_ENV]
    ws = gateway_workspace(tmp_path / "ws")
    a, b = fakes(), fakes()
    b["bedrock"].then(*[ServerError("down", provider="bedrock")] * 10)
    async with (
        running_gateway(ws, a, redis_url=url_redis) as (url_a, app_a),
        running_gateway(ws, b, redis_url=direct) as (url_b, app_b),
        aiohttp.ClientSession() as session,
    ):
        proxy.cut()
        await post_chat(session, url_a, chat_body(text="notice the cut"))
        await wait_until(lambda: not app_a.state.gateway.redis_link.up, 5)
        for i in range(3):  # B opens bedrock's breaker and shares it; A cannot hear it
            await post_chat(session, url_b, chat_body(text=f"b{i}"))
        assert app_b.state.gateway.services.breakers.is_open(
            "bedrock/claude-3-5-haiku", time.time()
        )
        proxy.restore()
        await wait_until(
            lambda: app_a.state.gateway.services.breakers.is_open(
                "bedrock/claude-3-5-haiku", time.time()
            ),
            10,
        )
