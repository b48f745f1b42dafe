"""Provider adapters: one async chat interface over Bedrock, Gemini, OpenAI-compatible and
Anthropic wire protocols, with one error taxonomy (see quality_gates.errors).

    adapter = build_provider(config.provider("google"), config.models)
    async with adapter:
        answer = await adapter.complete(ChatRequest(model="gemini-1.5-flash", messages=...))

Adapter classes load on first use (PEP 562): they import aiohttp, which the CLI's fast
commands must not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from quality_gates.providers._embeddings import EmbedRequest, EmbedResponse
from quality_gates.providers._factory import (
    SIMULATOR_KEY,
    build_provider,
    cost_of,
    probe_provider,
    probe_providers,
    probe_to_dict,
    provider_health,
)
from quality_gates.providers._types import (
    ChatProvider,
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    Image,
    Message,
    MessageParts,
    ProbeResult,
    RequestExtras,
    ResponseFormat,
    Role,
    StreamChunk,
    StreamSink,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from quality_gates.providers._anthropic import AnthropicProvider
    from quality_gates.providers._base import HttpChatProvider
    from quality_gates.providers._bedrock import BedrockProvider
    from quality_gates.providers._gemini import GeminiProvider
    from quality_gates.providers._openai import OpenAIProvider

_LAZY = {
    "AnthropicProvider": "_anthropic",
    "BedrockProvider": "_bedrock",
    "GeminiProvider": "_gemini",
    "HttpChatProvider": "_base",
    "OpenAIProvider": "_openai",
}

__all__ = [
    "SIMULATOR_KEY",
    "AnthropicProvider",
    "BedrockProvider",
    "ChatProvider",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "EmbedRequest",
    "EmbedResponse",
    "FinishReason",
    "GeminiProvider",
    "HttpChatProvider",
    "Image",
    "Message",
    "MessageParts",
    "OpenAIProvider",
    "ProbeResult",
    "RequestExtras",
    "ResponseFormat",
    "Role",
    "StreamChunk",
    "StreamSink",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "build_provider",
    "cost_of",
    "probe_provider",
    "probe_providers",
    "probe_to_dict",
    "provider_health",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'quality_gates.providers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"quality_gates.providers.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
