"""The one chat-completion interface every adapter implements and every caller uses.

Callers (the gateway, the gates, the drills) never know which wire protocol is behind a
provider; adapters know nothing of them. Errors are the provider part of
`quality_gates.errors` (ProviderTimeout, RateLimited, ...), never a library's own.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar, Literal

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "content_filter", "error", "other"]


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: Role
    content: str


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Usage:
    """Tokens the provider counted (or, if it counts none, an estimate marked as such)."""

    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False

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


@dataclass
class StreamChunk:
    """One piece of a streamed answer: a text delta, or the final chunk with usage."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost_usd: float | None = None

    @property
    def is_final(self) -> bool:
        """True for the last chunk (it carries the finish reason and usage)."""
        return self.finish_reason is not None


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

    @abc.abstractmethod
    async def probe(self) -> ProbeResult:
        """A cheap live check of reachability and credentials."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""
