"""Client libraries built on the OpenAI API, unmodified, against the gateway and the
simulators: langchain-openai (bind_tools, with_structured_output) and LiteLLM as a client
(tools, streaming, embeddings)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pydantic
import pytest
from tests.gateway_support import running_gateway
from tests.test_gateway_chat_fields import MODELS, WEATHER
from tests.test_gateway_embeddings import with_embedding_models
from tests.test_gateway_simulator import simulated

pytestmark = pytest.mark.integration


class Forecast(pydantic.BaseModel):
    city: str
    high_c: int


@pytest.mark.parametrize("protocol", list(MODELS))
async def test_langchain_openai_binds_tools_and_structures_output(
    tmp_path: Path, protocol: str
) -> None:
    chat_openai = pytest.importorskip("langchain_openai").ChatOpenAI
    async with (
        simulated(tmp_path / "ws", anthropic=True) as (ws, _),
        running_gateway(ws) as (url, _),
    ):
        llm = chat_openai(model=MODELS[protocol], base_url=f"{url}/v1", api_key="x", max_retries=0)
        reply = await llm.bind_tools([WEATHER]).ainvoke("Weather in Oslo?")
        assert reply.tool_calls
        assert reply.tool_calls[0]["name"] == "get_weather"
        assert set(reply.tool_calls[0]["args"]) == {"city", "unit"}
        forecast = await llm.with_structured_output(Forecast).ainvoke("Forecast for Oslo")
        assert isinstance(forecast, Forecast)
        called = await llm.with_structured_output(Forecast, method="function_calling").ainvoke(
            "Forecast for Oslo"
        )
        assert isinstance(called, Forecast)


# LiteLLM's import warns about its own types (pydantic ReadOnly TypedDicts).
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
async def test_litellm_as_a_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download at import
    litellm: Any = pytest.importorskip("litellm")
    async with (
        simulated(tmp_path / "ws", edit=with_embedding_models) as (ws, _),
        running_gateway(ws) as (url, _),
    ):
        common = {"api_base": f"{url}/v1", "api_key": "x"}
        reply = await litellm.acompletion(
            model="openai/current",
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[WEATHER],
            **common,
        )
        call = reply.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments)
        stream = await litellm.acompletion(
            model="openai/current",
            messages=[{"role": "user", "content": "Stream please"}],
            stream=True,
            **common,
        )
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
        assert text
        vectors = await litellm.aembedding(model="openai/embed", input=["a", "b"], **common)
        assert len(vectors.data) == 2
        assert len(vectors.data[0]["embedding"]) == 256
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
