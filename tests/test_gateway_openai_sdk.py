"""The official OpenAI Python SDK as a client of the gateway, streaming and not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
from tests.gateway_support import Cut, fakes, gateway_workspace, running_gateway

from quality_gates.errors import ServerError
from quality_gates.gateway import keys as api_keys

pytestmark = pytest.mark.integration


async def test_sdk_completes_streams_and_sees_usage(tmp_path: Path) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    providers = fakes()
    providers["bedrock"].then(
        ServerError("down", provider="bedrock"), ServerError("down", provider="bedrock")
    )
    async with running_gateway(ws, providers) as (url, _):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="not-checked", max_retries=0)
        reply = await client.chat.completions.create(
            model="current", messages=[{"role": "user", "content": "Hello"}], temperature=0.2
        )
        assert reply.choices[0].message.content == "answer from google"
        assert reply.choices[0].finish_reason == "stop"
        assert reply.usage is not None
        assert reply.usage.total_tokens == 15
        assert reply.model == "gemini-1-5-flash"

        stream = await client.chat.completions.create(
            model="current",
            messages=[{"role": "user", "content": "Stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage, finish = "", None, None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage is not None:
                usage = chunk.usage
        assert text.strip() == "answer from bedrock"
        assert finish == "stop"
        assert usage is not None
        assert usage.completion_tokens == 5

        models = await client.models.list()
        assert "current" in [m.id for m in models.data]
        await client.close()


async def test_sdk_raises_on_a_cut_stream_and_on_refusals(tmp_path: Path) -> None:
    ws = gateway_workspace(tmp_path / "ws")
    providers = fakes()
    providers["bedrock"].then(Cut(after=1))
    async with running_gateway(ws, providers) as (url, _):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        stream = await client.chat.completions.create(
            model="current", messages=[{"role": "user", "content": "cut"}], stream=True
        )
        received: list[str] = []

        async def drain() -> None:
            async for chunk in stream:
                if chunk.choices:
                    received.append(chunk.choices[0].delta.content or "")

        with pytest.raises(openai.APIError, match="broke after"):
            await drain()
        assert "".join(received)  # the first chunk arrived before the break
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="gpt-9", messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(
                model="current", messages=[{"role": "user", "content": "x"}], temperature=7
            )
        await client.close()
        _, secret = api_keys.create_key(ws.conn, name="sdk", role="client", actor="t")
        locked = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
        await asyncio.sleep(0.3)  # the key table reloads within a poll
        with pytest.raises(openai.AuthenticationError):
            await locked.chat.completions.create(
                model="current", messages=[{"role": "user", "content": "x"}]
            )
        await locked.close()
        good = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        reply = await good.chat.completions.create(
            model="current", messages=[{"role": "user", "content": "x"}]
        )
        assert reply.choices[0].message.content
        await good.close()
