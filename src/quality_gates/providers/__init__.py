"""Provider adapters: one async chat interface over Bedrock, Gemini, OpenAI-compatible and
Anthropic wire protocols, with one error taxonomy (see quality_gates.errors)."""

from quality_gates.providers._types import (
    ChatProvider,
    ChatRequest,
    ChatResponse,
    FinishReason,
    Message,
    ProbeResult,
    Role,
    StreamChunk,
    Usage,
)

__all__ = [
    "ChatProvider",
    "ChatRequest",
    "ChatResponse",
    "FinishReason",
    "Message",
    "ProbeResult",
    "Role",
    "StreamChunk",
    "Usage",
]
