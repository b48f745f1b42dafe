"""`POST /v1/messages` (the Anthropic Messages API as a way in) with the official
anthropic SDK unmodified: messages.create and messages.stream, with tools, against each
simulated provider behind the gateway, and a tool turn that fails over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import pytest
from tests.gateway_support import running_gateway
from tests.test_gateway_simulator import fault, simulated

pytestmark = pytest.mark.integration

MODELS = ["claude-3-5-haiku", "gemini-1-5-flash", "llama-3-1-70b", "claude-sonnet"]
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.mark.parametrize("model", MODELS)
async def test_the_anthropic_sdk_creates_and_streams_with_tools(tmp_path: Path, model: str) -> None:
    async with (
        simulated(tmp_path / "ws", anthropic=True) as (ws, _),
        running_gateway(ws) as (url, _),
    ):
        client = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
        plain = await client.messages.create(
            model=model,
            max_tokens=200,
            system="Be brief.",
            messages=[{"role": "user", "content": "Hello"}],
        )
        assert plain.stop_reason == "end_turn"
        assert plain.content[0].type == "text"
        assert plain.content[0].text
        assert plain.usage.input_tokens > 0

        asked: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
        first = await client.messages.create(
            model=model, max_tokens=200, messages=asked, tools=[WEATHER]
        )
        assert first.stop_reason == "tool_use"
        use = next(b for b in first.content if b.type == "tool_use")
        assert use.name == "get_weather"
        assert isinstance(use.input, dict)
        assert "city" in use.input
        history: list[Any] = [
            *asked,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "4 C"}],
            },
        ]
        second = await client.messages.create(
            model=model, max_tokens=200, messages=history, tools=[WEATHER]
        )
        assert second.stop_reason == "end_turn"
        assert second.content[0].type == "text"

        async with client.messages.stream(
            model=model, max_tokens=200, messages=asked, tools=[WEATHER]
        ) as stream:
            streamed = await stream.get_final_message()
        assert streamed.stop_reason == "tool_use"
        call = next(b for b in streamed.content if b.type == "tool_use")
        assert call.name == "get_weather"
        assert call.input == use.input  # the same call, fixed by the seed

        async with client.messages.stream(
            model=model, max_tokens=200, messages=[{"role": "user", "content": "Tell me"}]
        ) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        assert text
        assert final.content[0].type == "text"
        assert final.content[0].text == text
        assert final.usage.output_tokens > 0
        await client.close()


async def test_messages_api_errors_and_failover(tmp_path: Path) -> None:
    async with simulated(tmp_path / "ws") as (ws, sims), running_gateway(ws) as (url, _):
        client = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.create(
                model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(anthropic.BadRequestError, match="top_k"):
            await client.messages.create(
                model="current",
                max_tokens=10,
                messages=[{"role": "user", "content": "x"}],
                extra_body={"top_k": 5},
            )
        fault(sims["bedrock"], outage=True)
        raw = await client.messages.with_raw_response.create(
            model="current",
            max_tokens=200,
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[WEATHER],
        )
        assert raw.headers["x-qg-provider"] == "google"
        assert (await raw.parse()).stop_reason == "tool_use"
        await client.close()
