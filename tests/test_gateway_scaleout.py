"""Two gateways on one PostgreSQL store and one Redis: control changes reach both within a
second, a breaker opened by one is open on the other, limits and cache are shared."""

from __future__ import annotations

import os
import time
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

from quality_gates.errors import ServerError
from quality_gates.gateway import keys as api_keys
from quality_gates.registry import Actor, rollback

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.integration]


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"Redis tests need {REDIS_ENV} (set by .ci/run)")
    return url


async def test_rollback_and_breakers_reach_both_gateways(
    tmp_path: Path, pg_schema_url: str, redis_url: str
) -> None:
    ws = gateway_workspace(tmp_path / "ws", pg_schema_url)
    a, b = fakes(), fakes()
    a["bedrock"].then(*[ServerError("down", provider="bedrock")] * 10)
    async with (
        running_gateway(ws, a, redis_url=redis_url) as (url_a, app_a),
        running_gateway(ws, b, redis_url=redis_url) as (url_b, _),
        aiohttp.ClientSession() as s,
    ):
        # A breaker opened by A's traffic is open on B.
        for i in range(3):
            await post_chat(s, url_a, chat_body(text=f"a{i}"))
        assert app_a.state.gateway.services.breakers.is_open(
            "bedrock/claude-3-5-haiku", time.time()
        )
        opened = time.monotonic()

        async def b_avoids_bedrock() -> bool:
            _, h, _ = await post_chat(s, url_b, chat_body(text=str(time.monotonic())))
            return h["x-qg-provider"] == "google"

        await wait_until(b_avoids_bedrock, timeout=2.0, interval=0.01)
        assert time.monotonic() - opened < 1.0
        assert b["bedrock"].calls == []

        # A rollback reaches both within a second.
        rollback(
            ws.conn,
            environment="production",
            model_ref="current-model",
            previous_ref="previous-stable",
            reason="scale-out test",
            actor=Actor("t"),
        )
        changed = time.monotonic()

        async def both_switched() -> bool:
            models = []
            for url in (url_a, url_b):
                _, h, _ = await post_chat(s, url, chat_body(text=str(time.monotonic())))
                models.append(h["x-qg-model"])
            return models == ["claude-3-haiku", "claude-3-haiku"]

        await wait_until(both_switched, timeout=3.0, interval=0.01)
        assert time.monotonic() - changed < 1.0


async def test_key_limits_and_cache_are_shared_through_redis(
    tmp_path: Path, pg_schema_url: str, redis_url: str
) -> None:
    ws = gateway_workspace(
        tmp_path / "ws",
        pg_schema_url,
        extra=FAST_GATEWAY + "  limits: {per_key: {rpm: 3}}\n  cache: {serve: always}\n",
    )
    _, secret = api_keys.create_key(ws.conn, name="shared", role="client", actor="t")
    auth = {"Authorization": f"Bearer {secret}"}
    a, b = fakes(), fakes()
    async with (
        running_gateway(ws, a, redis_url=redis_url) as (url_a, _),
        running_gateway(ws, b, redis_url=redis_url) as (url_b, _),
        aiohttp.ClientSession() as s,
    ):
        first = await post_chat(s, url_a, chat_body(text="shared question"), **auth)
        second = await post_chat(s, url_b, chat_body(text="shared question"), **auth)
        assert (first[1]["x-qg-cache"], second[1]["x-qg-cache"]) == ("miss", "hit")
        assert b["bedrock"].calls == []
        third = await post_chat(s, url_b, chat_body(text="another"), **auth)
        fourth = await post_chat(s, url_a, chat_body(text="more"), **auth)
    assert third[0] == 200
    assert fourth[0] == 429
