"""The one chat-completion interface every adapter implements and every caller uses.

Callers (the gateway, the gates, the drills) never know which wire protocol is behind a
provider; adapters know nothing of them. Errors are the provider part of
`quality_gates.errors` (ProviderTimeout, RateLimited, ...), never a library's own.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from quality_gates.providers._embeddings import EmbedRequest, EmbedResponse

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "error", "other"]


@dataclass(frozen=True)
class Image:
    """An image input: inline bytes (base64 `data` with its `media_type`) or a URL."""

    media_type: str = ""
    data: str = ""
    url: str = ""
    detail: str | None = None


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for; `arguments` is the JSON text it produced."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class MessageParts:
    """What a message carries beyond its text (see Message)."""

    images: tuple[Image, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


NO_PARTS = MessageParts()


@dataclass(frozen=True)
class Message:
    """One chat message. `content` is its text; `images` follow the text of a user turn;
    an assistant turn may carry `tool_calls`, and a `tool` turn answers `tool_call_id`.
    Those live in `parts` (None for plain text, the common case, which stays as cheap to
    build as before)."""

    role: Role
    content: str
    parts: MessageParts | None = None

    @property
    def images(self) -> tuple[Image, ...]:
        """Image inputs (user turns)."""
        return (self.parts or NO_PARTS).images

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The function calls an assistant turn made."""
        return (self.parts or NO_PARTS).tool_calls

    @property
    def tool_call_id(self) -> str | None:
        """The call a tool turn answers."""
        return (self.parts or NO_PARTS).tool_call_id

    @property
    def name(self) -> str | None:
        """The participant's name, if given."""
        return (self.parts or NO_PARTS).name


@dataclass(frozen=True)
class Tool:
    """A function the model may call, with the JSON Schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None
    strict: bool = False


@dataclass(frozen=True)
class ResponseFormat:
    """`json_object` (any JSON object) or `json_schema` (`schema`, named `name`)."""

    type: Literal["json_object", "json_schema"]
    name: str = "response"
    schema: dict[str, Any] | None = None
    strict: bool = False


@dataclass(frozen=True)
class RequestExtras:
    """Everything beyond messages and the basic sampling settings (None on a plain request,
    so the common path carries nothing). `lenient` names fields an adapter that cannot
    honour them may drop instead of refusing the request (`gateway.lenient_fields`)."""

    tools: tuple[Tool, ...] = ()
    # "auto" | "none" | "required" | the name of one function
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    n: int = 1
    seed: int | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    lenient: frozenset[str] = frozenset()


@dataclass(slots=True)  # built on every request: slots cost less than frozen
class ChatRequest:
    """What to ask: messages and sampling settings, in the provider's model name.

    `timeout` is the time left (seconds) under the caller's end-to-end deadline; an adapter
    raises ProviderTimeout rather than run past it.
    """

    model: str
    messages: tuple[Message, ...]
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    timeout: float | None = None
    request_id: str | None = None
    extras: RequestExtras | None = None


@dataclass(slots=True)  # built on every request: slots cost less than frozen
class Usage:
    """Tokens the provider counted (or, if it counts none, an estimate marked as such).
    `cached_tokens` are input tokens read from the provider's prompt cache and
    `reasoning_tokens` output tokens spent thinking, where the provider reports them."""

    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass
class ChatResponse:
    """A complete answer with what it cost and how long it took upstream."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    latency_ms: float
    ttft_ms: float
    provider: str
    model: str
    response_id: str | None = None
    cost_usd: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Any = None
    more: tuple[Choice, ...] = ()  # choices 1.. when n > 1


@dataclass(frozen=True)
class Choice:
    """One more answer of an n > 1 request."""

    text: str
    finish_reason: FinishReason
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Any = None


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call: the first piece of call `index` has its id and
    name, the rest add to its arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class StreamChunk:
    """One piece of a streamed answer: a text delta, tool-call deltas, or the final chunk
    with usage."""

    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost_usd: float | None = None

    @property
    def is_final(self) -> bool:
        """True for the last chunk (it carries the finish reason and usage)."""
        return self.finish_reason is not None


class StreamSink(Protocol):
    """Where a pushed stream's deltas go, from the upstream connection's callback; each
    returns None, or a future while the consumer is full (reading pauses until it is done)."""

    def text(self, text: str) -> asyncio.Future[None] | None:
        """A text delta."""

    def tool_call(self, delta: ToolCallDelta) -> asyncio.Future[None] | None:
        """A tool-call delta."""


@dataclass
class ProbeResult:
    """A live health probe of a provider."""

    provider: str
    healthy: bool
    latency_ms: float
    error_class: str | None = None
    detail: str = ""
    checked: list[str] = field(default_factory=list)


class ChatProvider(abc.ABC):
    """A provider account reached over one wire protocol."""

    name: str
    protocol: str
    # complete() gives up by `request.timeout` on its own (raising ProviderTimeout), so a
    # caller needs no timer of its own around it (the gateway's dispatcher sets none).
    keeps_deadline: ClassVar[bool] = False

    @abc.abstractmethod
    async def complete(self, request: ChatRequest) -> ChatResponse:
        """The whole answer; raises a ProviderError subclass on failure."""

    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Text deltas, ending with a final chunk that carries the finish reason and usage.

        Errors before the first chunk raise a ProviderError; a stream that breaks after it
        raises StreamInterrupted (or another ProviderError), never a clean end.
        """

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        """Embeddings of `request.inputs`; a provider without an embeddings API refuses."""
        from quality_gates.providers._features import refusal

        raise refusal(self.name, "embeddings", "this provider has no embeddings API")

    @abc.abstractmethod
    async def probe(self) -> ProbeResult:
        """A cheap live check of reachability and credentials."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""
