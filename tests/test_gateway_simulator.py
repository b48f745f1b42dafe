"""The gateway with the real provider adapters against the fault-injecting simulators, over
real HTTP: failover for every error class the simulator injects, cut streams, breakers fed by
probes, and the OpenAI SDK through the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from tests.conftest import Workspace, make_workspace
from tests.gateway_support import FAST_GATEWAY, chat_body, post_chat, running_gateway, wait_until

from quality_gates.config import parse_config_text, render_starter
from quality_gates.simulator import RunningSimulator, SimulatorThread, spec_from_provider
from quality_gates.simulator.control import put_faults

pytestmark = pytest.mark.integration

INSTANT = {
    "latency_p50_ms": 0,
    "latency_p95_ms": 0,
    "ttft_p50_ms": 0,
    "ttft_p95_ms": 0,
    "token_delay_ms": 0,
    "answer_tokens_p50": 12,
    "answer_tokens_p95": 20,
}


@contextlib.asynccontextmanager
async def simulated(
    root: Path,
    extra: str = FAST_GATEWAY,
    db_url: str | None = None,
    edit: Callable[[str], str] | None = None,
    anthropic: bool = False,
) -> AsyncIterator[tuple[Workspace, dict[str, RunningSimulator]]]:
    """The starter's three simulators on free ports (in their own thread, so that the
    synchronous fault control cannot block the gateway's loop), instant, and a workspace
    pointing at them; `anthropic` adds a fourth speaking the Anthropic protocol (provider
    `claude`, model `claude-sonnet`); `edit` changes the config text last."""
    base = render_starter("sim")
    base = with_anthropic(base, 9104) if anthropic else base
    config = parse_config_text(base, "quality-gates.yaml").config
    specs = [spec_from_provider(p, config.models, port=0) for p in config.providers]
    with SimulatorThread(specs) as thread:
        sims = thread.running
        for sim in sims.values():
            put_faults(sim.base_url, {"reset": True, **INSTANT}, provider=sim.name)
        ports = {
            f"port_{n}": sims[p].port
            for n, p in (("bedrock", "bedrock"), ("google", "google"), ("meta", "meta"))
        }
        text = render_starter("sim", ports) + extra
        text = with_anthropic(text, sims["claude"].port) if anthropic else text
        text = edit(text) if edit is not None else text
        ws = make_workspace(root, db_url or f"sqlite:///{root / 'state.db'}", text)
        try:
            yield ws, sims
        finally:
            ws.database.close_shared()


def with_anthropic(text: str, port: int) -> str:
    """The config text with an Anthropic-protocol simulator and a model on it."""
    provider = (
        "providers:\n  - name: claude\n    kind: simulator\n    protocol: anthropic\n"
        f"    port: {port}\n    seed: 4\n"
    )
    model = "models:\n  - id: claude-sonnet\n    provider: claude\n    name: claude-sonnet-4-5\n"
    chain = "    failover_chains:\n      - {primary: claude-sonnet, secondary: gemini-1-5-flash}\n"
    text = text.replace("providers:\n", provider, 1).replace("models:\n", model, 1)
    return text.replace("    failover_chains:\n", chain, 1)


def fault(sim: RunningSimulator, **changes: Any) -> None:
    put_faults(sim.base_url, changes, provider=sim.name)


@pytest.mark.parametrize(
    ("changes", "error_class"),
    [
        ({"server_error_rate": 1.0}, "server_error"),
        ({"overloaded_rate": 1.0}, "overloaded"),
        ({"rate_limit_rate": 1.0, "retry_after": "30s"}, "rate_limited"),
        ({"reset_rate": 1.0}, "connection"),
        ({"hang_rate": 1.0, "hang_for": "30s"}, "timeout"),
        ({"outage": True}, None),
        ({"outage": True, "outage_mode": "reset"}, "connection"),
    ],
    ids=["5xx", "overloaded", "429", "reset", "hang", "outage-503", "outage-reset"],
)
async def test_every_injected_error_class_fails_over(
    tmp_path: Path, changes: dict[str, Any], error_class: str | None
) -> None:
    extra = FAST_GATEWAY + "  attempt_timeout: 400ms\n"
    async with simulated(tmp_path / "ws", extra) as (ws, sims):
        fault(sims["bedrock"], **changes)
        async with running_gateway(ws) as (url, _), aiohttp.ClientSession() as s:
            status, headers, body = await post_chat(s, url, chat_body(text="failover please"))
            assert status == 200, body
            assert headers["x-qg-provider"] == "google"
            assert headers["x-qg-failover-hops"] == "1"
            await wait_until(lambda: ws.conn.scalar("SELECT COUNT(*) FROM attempts") >= 2)
        first = ws.conn.one("SELECT * FROM attempts WHERE attempt = 1")
        assert first["provider"] == "bedrock"
        assert first["status"] == "error"
        if error_class is not None:
            assert first["error_class"] == error_class


async def test_a_content_filter_refusal_is_not_failed_over(tmp_path: Path) -> None:
    async with simulated(tmp_path / "ws") as (ws, sims):
        fault(sims["bedrock"], content_filter_rate=1.0)
        async with running_gateway(ws) as (url, _), aiohttp.ClientSession() as s:
            status, _, body = await post_chat(s, url, chat_body())
    assert status == 400
    assert body["error"]["code"] == "content_filtered"


@pytest.mark.parametrize("mode", ["drop", "error"])
async def test_a_stream_cut_by_the_provider_ends_with_an_sse_error(
    tmp_path: Path, mode: str
) -> None:
    async with simulated(tmp_path / "ws") as (ws, sims):
        fault(
            sims["bedrock"],
            stream_cut_rate=1.0,
            stream_cut_mode=mode,
            answer_tokens_p50=200,
            answer_tokens_p95=300,
            token_delay_ms=1,
        )
        async with running_gateway(ws) as (url, _), aiohttp.ClientSession() as s:
            status, _, events = await post_chat(s, url, chat_body(stream=True))
            await wait_until(lambda: ws.conn.scalar("SELECT COUNT(*) FROM requests") == 1)
    assert status == 200
    assert "[DONE]" not in events
    assert "error" in events[-1]
    assert ws.conn.scalar("SELECT status FROM requests") == "error"


async def test_probes_open_the_breaker_of_a_provider_in_outage_and_close_it_after(
    tmp_path: Path,
) -> None:
    extra = FAST_GATEWAY.replace(
        "probe_interval: 0, open_for: 60s",
        "probe_interval: 100ms, open_for: 300ms, consecutive_failures: 2",
    )
    async with (
        simulated(tmp_path / "ws", extra) as (ws, sims),
        running_gateway(ws) as (url, app),
        aiohttp.ClientSession() as s,
    ):
        board = app.state.gateway.services.breakers
        fault(sims["google"], outage=True)
        await wait_until(lambda: board.is_open("google/gemini-1-5-flash", time.time()), 5)
        async with s.get(f"{url}/metrics") as resp:
            assert 'deployment="google/gemini-1-5-flash"' in await resp.text()
        fault(sims["google"], outage=False)
        await wait_until(
            lambda: board.get("google/gemini-1-5-flash").current(time.time()) == "closed", 5
        )


async def test_the_openai_sdk_through_the_gateway_to_the_simulators(tmp_path: Path) -> None:
    async with simulated(tmp_path / "ws") as (ws, sims):
        fault(sims["bedrock"], outage=True)  # the answer must come from the failover target
        async with running_gateway(ws) as (url, _):
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
            reply = await client.chat.completions.create(
                model="current", messages=[{"role": "user", "content": "What is 6 x 7?"}]
            )
            assert reply.choices[0].message.content
            assert reply.model == "gemini-1-5-flash"
            assert reply.usage is not None
            assert reply.usage.completion_tokens > 0
            stream = await client.chat.completions.create(
                model="current",
                messages=[{"role": "user", "content": "Stream it"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            text = ""
            usage = None
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                usage = chunk.usage or usage
            assert text
            assert usage is not None
            await client.close()


async def test_with_errors_on_every_provider_the_route_panics_instead_of_refusing(
    tmp_path: Path,
) -> None:
    """30% 5xx on all three providers opens every breaker (3 failures in a row suffice);
    refusing them all would answer 503 to nearly everyone. Panic routing keeps trying them,
    within the deadline and the retry budget, so at least 90% are answered."""
    extra = FAST_GATEWAY.replace(
        "probe_interval: 0, open_for: 60s",
        "probe_interval: 0, open_for: 60s, consecutive_failures: 3",
    )
    async with simulated(tmp_path / "ws", extra) as (ws, sims):
        for sim in sims.values():
            fault(sim, server_error_rate=0.3)
        async with running_gateway(ws) as (url, app), aiohttp.ClientSession() as s:
            semaphore = asyncio.Semaphore(8)

            async def one(i: int) -> int:
                async with semaphore:
                    status, _, _ = await post_chat(s, url, chat_body(text=f"q{i}"))
                    return status

            statuses = await asyncio.gather(*(one(i) for i in range(240)))
            board = app.state.gateway.services.breakers
            opened = [d for d in board.views(time.time()) if d.state != "closed"]
            async with s.get(f"{url}/metrics") as resp:
                exposition = await resp.text()
    answered = statuses.count(200)
    assert answered >= 0.9 * len(statuses), {c: statuses.count(c) for c in set(statuses)}
    assert opened, "the breakers never opened: the test did not reach panic routing"
    assert "qg_gateway_panic_attempts_total{" in exposition
