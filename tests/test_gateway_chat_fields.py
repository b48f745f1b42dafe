"""The whole Chat Completions request through the gateway to the simulators, with the
official openai SDK unmodified: tools (whole and streamed), structured outputs, images and
n, on each simulated provider; fields a route cannot honour refused by name; every answer
valid against the OpenAI OpenAPI schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pydantic
import pytest
from tests.gateway_support import FAST_GATEWAY, chat_body, running_gateway
from tests.openai_schema import validate, validate_stream
from tests.test_gateway_simulator import fault, simulated

pytestmark = pytest.mark.integration

# Model ids of the starter, one per simulated protocol.
MODELS = {
    "bedrock": "claude-3-5-haiku",
    "gemini": "gemini-1-5-flash",
    "openai": "llama-3-1-70b",
    "anthropic": "claude-sonnet",
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
# A 1x1 PNG.
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class Forecast(pydantic.BaseModel):
    city: str
    high_c: int
    conditions: list[str]


async def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=body) as response,
    ):
        return response.status, await response.read()


@pytest.mark.parametrize("protocol", list(MODELS))
async def test_a_tool_conversation_on_each_provider(tmp_path: Path, protocol: str) -> None:
    model = MODELS[protocol]
    async with (
        simulated(tmp_path / "ws", anthropic=True) as (ws, _),
        running_gateway(ws) as (url, _),
    ):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
        first = await client.chat.completions.create(
            model=model, messages=messages, tools=[WEATHER]
        )
        validate("CreateChatCompletionResponse", first.model_dump(exclude_unset=True))
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        calls = choice.message.tool_calls
        assert calls
        assert calls[0].function.name == "get_weather"
        arguments = json.loads(calls[0].function.arguments)
        assert set(arguments) == {"city", "unit"}
        assert arguments["unit"] in ("celsius", "fahrenheit")
        messages += [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": calls[0].id, "content": '{"high_c": 4}'},
        ]
        second = await client.chat.completions.create(
            model=model, messages=messages, tools=[WEATHER]
        )
        assert second.choices[0].finish_reason == "stop"
        assert second.choices[0].message.content
        assert not second.choices[0].message.tool_calls

        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[WEATHER],
            stream=True,
        )
        ids, names, argument_text, finish = set(), set(), "", None
        async for chunk in stream:
            for delta in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
                assert delta.index == 0
                ids.add(delta.id) if delta.id else None
                if delta.function and delta.function.name:
                    names.add(delta.function.name)
                argument_text += (delta.function.arguments or "") if delta.function else ""
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        assert names == {"get_weather"}
        assert len(ids) == 1
        assert json.loads(argument_text) == arguments  # the same call, fixed by the seed
        assert finish == "tool_calls"
        await client.close()


@pytest.mark.parametrize("protocol", list(MODELS))
async def test_structured_outputs_on_each_provider(tmp_path: Path, protocol: str) -> None:
    model = MODELS[protocol]
    async with (
        simulated(tmp_path / "ws", anthropic=True) as (ws, _),
        running_gateway(ws) as (url, _),
    ):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        parsed = await client.chat.completions.parse(
            model=model,
            messages=[{"role": "user", "content": "Forecast for Oslo"}],
            response_format=Forecast,
        )
        forecast = parsed.choices[0].message.parsed
        assert isinstance(forecast, Forecast)
        assert forecast.conditions
        loose = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Any JSON object"}],
            response_format={"type": "json_object"},
        )
        assert isinstance(json.loads(loose.choices[0].message.content or ""), dict)
        image = await client.chat.completions.create(
            model=model,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": PIXEL}},
                    ],
                }
            ],
        )
        assert image.choices[0].message.content
        await client.close()


async def test_n_choices_where_supported_and_a_named_refusal_elsewhere(tmp_path: Path) -> None:
    async with (
        simulated(tmp_path / "ws", anthropic=True) as (ws, _),
        running_gateway(ws) as (url, _),
    ):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        for model in (MODELS["openai"], MODELS["gemini"]):
            reply = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Two ideas"}], n=2, seed=3
            )
            assert [c.index for c in reply.choices] == [0, 1]
            assert all(c.message.content for c in reply.choices)
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model=MODELS["bedrock"], messages=[{"role": "user", "content": "x"}], n=2
            )
        assert "n is not supported by provider bedrock" in str(refused.value)
        with pytest.raises(openai.BadRequestError, match="n with stream: true"):
            await client.chat.completions.create(
                model=MODELS["openai"],
                messages=[{"role": "user", "content": "x"}],
                n=2,
                stream=True,
            )
        await client.close()


async def test_bodies_and_chunks_match_the_openai_schemas(tmp_path: Path) -> None:
    async with (
        simulated(tmp_path / "ws", anthropic=True) as (ws, _),
        running_gateway(ws) as (url, _),
    ):
        for protocol, model in MODELS.items():
            status, raw = await _post(url, chat_body(model, "Weather?", tools=[WEATHER]))
            assert status == 200, (protocol, raw)
            validate("CreateChatCompletionResponse", json.loads(raw))
            status, raw = await _post(url, chat_body(model, "Plain"))
            validate("CreateChatCompletionResponse", json.loads(raw))
            body = chat_body(
                model,
                "Weather?",
                stream=True,
                tools=[WEATHER],
                stream_options={"include_usage": True},
            )
            status, raw = await _post(url, body)
            events = validate_stream(raw)
            assert any(e.get("usage") for e in events)
        status, raw = await _post(url, chat_body(MODELS["openai"], "x", logit_bias={"1": 2}))
        assert status == 400
        validate("ErrorResponse", json.loads(raw))
        assert "logit_bias" in json.loads(raw)["error"]["message"]
        status, raw = await _post(url, chat_body(MODELS["openai"], "x", frobnicate=1))
        assert status == 400
        assert json.loads(raw)["error"]["param"] == "frobnicate"
        status, raw = await _post(
            url,
            chat_body(
                MODELS["bedrock"],
                "x",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                        ],
                    }
                ],
            ),
        )
        assert status == 400
        assert (
            "image_url is not supported by provider bedrock" in json.loads(raw)["error"]["message"]
        )


async def test_unknown_paths_and_methods_answer_an_openai_error(tmp_path: Path) -> None:
    async with (
        simulated(tmp_path / "ws", anthropic=True) as (ws, _),
        running_gateway(ws) as (url, _),
        aiohttp.ClientSession() as session,
    ):
        for method, path, status in (
            ("POST", "/v1/completions", 404),
            ("GET", "/v1/nothing", 404),
            ("DELETE", "/v1/models", 405),
        ):
            async with session.request(method, f"{url}{path}") as response:
                assert response.status == status
                assert response.content_type == "application/json"
                body = await response.json()
                validate("ErrorResponse", body)
                assert path in body["error"]["message"]


async def test_lenient_fields_are_left_out_where_the_route_cannot_honour_them(
    tmp_path: Path,
) -> None:
    extra = FAST_GATEWAY.replace("gateway:\n", "gateway:\n  lenient_fields: [seed, logit_bias]\n")
    async with simulated(tmp_path / "ws", extra) as (ws, _), running_gateway(ws) as (url, _):
        status, raw = await _post(url, chat_body(MODELS["bedrock"], "x", seed=1, logit_bias={}))
        assert status == 200, raw
        status, raw = await _post(url, chat_body(MODELS["bedrock"], "x", presence_penalty=1))
        assert status == 400
        message = json.loads(raw)["error"]["message"]
        assert "presence_penalty is not supported by provider bedrock" in message
        assert "gateway.lenient_fields" in message


async def test_simulated_quality_faults_break_tool_arguments_and_json(tmp_path: Path) -> None:
    async with simulated(tmp_path / "ws") as (ws, sims), running_gateway(ws) as (url, _):
        fault(sims["meta"], malformed_tool_args_rate=1.0, invalid_json_rate=1.0)
        status, raw = await _post(url, chat_body(MODELS["openai"], "Weather?", tools=[WEATHER]))
        arguments = json.loads(raw)["choices"][0]["message"]["tool_calls"][0]["function"]
        with pytest.raises(ValueError):
            json.loads(arguments["arguments"])
        schema = Forecast.model_json_schema()
        body = chat_body(
            MODELS["openai"],
            "Forecast",
            response_format={"type": "json_schema", "json_schema": {"name": "f", "schema": schema}},
        )
        status, raw = await _post(url, body)
        with pytest.raises(pydantic.ValidationError):
            Forecast.model_validate_json(json.loads(raw)["choices"][0]["message"]["content"])
        fault(sims["meta"], malformed_tool_args_rate=0.0, invalid_json_rate=0.0)
        status, raw = await _post(url, body)
        assert status == 200
        Forecast.model_validate_json(json.loads(raw)["choices"][0]["message"]["content"])


async def test_a_tool_conversation_survives_an_outage_on_another_provider(tmp_path: Path) -> None:
    """Three turns on `current` (Bedrock); the second, during a Bedrock outage, is served by
    Gemini from the translated tool history, whole and streamed; the third by Bedrock again."""
    async with simulated(tmp_path / "ws") as (ws, sims), running_gateway(ws) as (url, _):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
        raw = await client.chat.completions.with_raw_response.create(
            model="current", messages=messages, tools=[WEATHER]
        )
        assert raw.headers["x-qg-provider"] == "bedrock"
        first = raw.parse().choices[0].message
        assert first.tool_calls
        call = first.tool_calls[0]
        messages += [
            first.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"high_c": 4, "sky": "snow"}'},
        ]
        fault(sims["bedrock"], outage=True)
        raw = await client.chat.completions.with_raw_response.create(
            model="current", messages=messages, tools=[WEATHER]
        )
        assert raw.headers["x-qg-provider"] == "google"
        assert raw.headers["x-qg-failover-hops"] == "1"
        second = raw.parse().choices[0]
        assert second.finish_reason == "stop"
        assert second.message.content
        async with client.chat.completions.with_streaming_response.create(
            model="current", messages=messages, tools=[WEATHER], stream=True
        ) as streamed:
            assert streamed.headers["x-qg-provider"] == "google"
            text = ""
            async for chunk in await streamed.parse():
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
        assert text
        fault(sims["bedrock"], outage=False)
        messages += [
            {"role": "assistant", "content": second.message.content},
            {"role": "user", "content": "And in Bergen?"},
        ]
        raw = await client.chat.completions.with_raw_response.create(
            model="current", messages=messages, tools=[WEATHER]
        )
        assert raw.headers["x-qg-provider"] == "bedrock"
        third = raw.parse().choices[0]
        assert third.finish_reason == "tool_calls"
        await client.close()
