"""`POST /v1/embeddings` and `GET /v1/models/{id}` through the gateway to the simulators,
with the official openai SDK unmodified: each provider's embeddings protocol (Bedrock
Titan and Cohere, Gemini batchEmbedContents, OpenAI-compatible), aliases and failover
chains, and answers valid against the OpenAI OpenAPI schemas."""

from __future__ import annotations

import math
from pathlib import Path

import aiohttp
import openai
import pytest
from tests.gateway_support import running_gateway
from tests.openai_schema import validate
from tests.test_gateway_simulator import fault, simulated

pytestmark = pytest.mark.integration

EMBEDDING_MODELS = """
  - id: titan-embed
    provider: bedrock
    name: amazon.titan-embed-text-v2:0
  - id: cohere-embed
    provider: bedrock
    name: cohere.embed-english-v3
  - id: gemini-embed
    provider: google
    name: text-embedding-004
  - id: llama-embed
    provider: meta
    name: text-embedding-3-small
"""


def with_embedding_models(text: str) -> str:
    """The starter with embedding models, an `embed` alias and its failover chain."""
    text = text.replace("\nenvironments:", EMBEDDING_MODELS + "\nenvironments:", 1)
    text = text.replace(
        "      backup: gemini-1-5-flash\n",
        "      backup: gemini-1-5-flash\n      embed: titan-embed\n",
        1,
    )
    return text.replace(
        "    failover_chains:\n",
        "    failover_chains:\n"
        "      - {primary: titan-embed, secondary: gemini-embed, tertiary: llama-embed}\n",
        1,
    )


@pytest.mark.parametrize("model", ["titan-embed", "cohere-embed", "gemini-embed", "llama-embed"])
async def test_embeddings_on_each_provider(tmp_path: Path, model: str) -> None:
    async with (
        simulated(tmp_path / "ws", edit=with_embedding_models) as (ws, _),
        running_gateway(ws) as (url, _),
    ):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        reply = await client.embeddings.create(model=model, input=["first text", "second"])
        assert [d.index for d in reply.data] == [0, 1]
        assert len(reply.data[0].embedding) == 256  # the simulator's fixed dimension
        assert math.isclose(sum(v * v for v in reply.data[0].embedding), 1.0, rel_tol=1e-3)
        assert reply.data[0].embedding != reply.data[1].embedding
        assert reply.usage.prompt_tokens > 0
        again = await client.embeddings.create(model=model, input="first text")
        assert again.data[0].embedding == pytest.approx(reply.data[0].embedding, abs=1e-6)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{url}/v1/embeddings", json={"model": model, "input": "x", "dimensions": 8}
            ) as response,
        ):
            body = await response.json()
        validate("CreateEmbeddingResponse", body)
        if model != "cohere-embed":  # Cohere embed v3 has a fixed size
            assert len(body["data"][0]["embedding"]) == 8
        await client.close()


async def test_embeddings_fail_over_along_the_chain_and_models_retrieve(tmp_path: Path) -> None:
    async with (
        simulated(tmp_path / "ws", edit=with_embedding_models) as (ws, sims),
        running_gateway(ws) as (url, _),
    ):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        fault(sims["bedrock"], outage=True)
        raw = await client.embeddings.with_raw_response.create(model="embed", input="hello")
        assert raw.headers["x-qg-provider"] == "google"
        assert raw.headers["x-qg-failover-hops"] == "1"
        assert raw.parse().model == "gemini-embed"
        model = await client.models.retrieve("current")
        assert model.id == "current"
        assert model.owned_by == "bedrock"
        validate("Model", model.model_dump())
        validate("ListModelsResponse", (await client.models.list()).model_dump())
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("gpt-9")
        assert "gpt-9" in str(missing.value)
        with pytest.raises(openai.BadRequestError, match="token arrays"):
            await client.embeddings.create(model="current", input=[[1, 2, 3]])  # type: ignore[list-item]
        await client.close()
