"""Embeddings over each protocol: the request and answer shapes, translated both ways.

- OpenAI-compatible: `POST {base}/v1/embeddings` `{model, input: [...], dimensions}` ->
  `data[].embedding`, `usage.prompt_tokens`.
- Gemini: `POST models/{m}:batchEmbedContents` `{requests: [{model, content: {parts:
  [{text}]}, outputDimensionality}]}` -> `embeddings[].values` (no token count: estimated).
- Bedrock: `POST /model/{id}/invoke`; Titan text embeddings take one `inputText` per call
  (`dimensions`, `normalize`) -> `embedding`, `inputTextTokenCount`; Cohere embed takes
  `texts` with an `input_type` -> `embeddings`. Titan's several inputs are several calls.
- Anthropic has no embeddings API: refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from quality_gates.providers._types import Usage


@dataclass(frozen=True)
class EmbedRequest:
    """Texts to embed with one provider model."""

    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    timeout: float | None = None


@dataclass
class EmbedResponse:
    """One vector per input, in order, with what it cost and how long it took."""

    vectors: list[list[float]]
    usage: Usage
    latency_ms: float
    provider: str
    model: str


def openai_body(request: EmbedRequest) -> dict[str, Any]:
    """The OpenAI embeddings request (floats: the gateway encodes base64 itself)."""
    body: dict[str, Any] = {
        "model": request.model,
        "input": list(request.inputs),
        "encoding_format": "float",
    }
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    return body


def openai_vectors(data: Any) -> tuple[list[list[float]], Usage | None]:
    """Vectors in input order and the usage of an OpenAI embeddings answer."""
    items = sorted(data["data"], key=lambda d: d.get("index", 0))
    usage = data.get("usage")
    tokens = int(usage.get("prompt_tokens") or 0) if isinstance(usage, dict) else 0
    return [list(map(float, d["embedding"])) for d in items], Usage(tokens, 0) if tokens else None


def gemini_body(request: EmbedRequest, name: str) -> dict[str, Any]:
    """`batchEmbedContents` for every input."""
    requests = []
    for text in request.inputs:
        item: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if request.dimensions is not None:
            item["outputDimensionality"] = request.dimensions
        requests.append(item)
    return {"requests": requests}


def gemini_vectors(data: Any) -> list[list[float]]:
    """`embeddings[].values`."""
    return [list(map(float, e["values"])) for e in data["embeddings"]]


def bedrock_family(model: str) -> str:
    """`titan` or `cohere` from a Bedrock model id (inference-profile prefixes allowed)."""
    name = model.rsplit("/", 1)[-1].lower()
    return "cohere" if "cohere.embed" in name else "titan"


def bedrock_bodies(request: EmbedRequest) -> list[dict[str, Any]]:
    """One InvokeModel body per call: Titan takes one text, Cohere all of them."""
    if bedrock_family(request.model) == "cohere":
        return [{"texts": list(request.inputs), "input_type": "search_document"}]
    bodies = []
    for text in request.inputs:
        body: dict[str, Any] = {"inputText": text, "normalize": True}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        bodies.append(body)
    return bodies


def bedrock_vectors(data: Any) -> tuple[list[list[float]], int]:
    """Vectors and input tokens of one InvokeModel answer (Titan or Cohere)."""
    if "embeddings" in data:
        embeddings = data["embeddings"]
        if isinstance(embeddings, dict):  # Cohere with embedding_types
            embeddings = embeddings.get("float") or []
        return [list(map(float, e)) for e in embeddings], 0
    return [list(map(float, data["embedding"]))], int(data.get("inputTextTokenCount") or 0)


def bedrock_path(model: str) -> str:
    """`/model/{id}/invoke` with the id percent-encoded."""
    return f"/model/{quote(model, safe='')}/invoke"
