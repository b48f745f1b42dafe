"""What every HTTP adapter shares: the call, the stream loop, timing, cost, probes and the
classification of everything that can go wrong. A protocol supplies four small pieces:
how to build the request, read an answer, read an error and read stream events."""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp
import orjson

from quality_gates.errors import ContentFiltered, ProviderError, ServerError, StreamInterrupted
from quality_gates.providers._embeddings import EmbedRequest, EmbedResponse
from quality_gates.providers._features import refusal
from quality_gates.providers._h1 import H1Client
from quality_gates.providers._http import (
    MAX_BODY_BYTES,
    TRANSPORT_ERRORS,
    acquire_session,
    client_timeout,
    lean_client,
    loads_or_none,
    parse_json_body,
    release_session,
    transport_error,
)
from quality_gates.providers._relay import Delivery, EventReader, SseItems
from quality_gates.providers._sse import ServerSentEvent, SseDecoder
from quality_gates.providers._types import (
    ChatProvider,
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    Message,
    ProbeResult,
    StreamChunk,
    StreamSink,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from quality_gates.config import Model

DEFAULT_TIMEOUT = 60.0
DEFAULT_PROBE_TIMEOUT = 10.0
MAX_ERROR_BODY = 64 * 1024
# Shape errors in a parsed answer: the upstream sent JSON we cannot read.
SHAPE_ERRORS = (KeyError, TypeError, IndexError, AttributeError, ValueError)


@dataclass(frozen=True)
class Wire:
    """One HTTP request, ready to send."""

    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Answer:
    """A parsed complete answer (built once per request: slots, not frozen, cost less)."""

    text: str
    finish_reason: FinishReason
    usage: Usage | None = None
    response_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Any = None
    more: tuple[Choice, ...] = ()


@dataclass
class StreamEnd:
    """What a stream said about how it ended (usage may come in a later event)."""

    finish_reason: FinishReason
    usage: Usage | None = None


def _one_call(request: ChatRequest) -> bool:
    """`parallel_tool_calls: false`: protocols that cannot forbid parallel calls (Converse,
    Gemini) are held to it by keeping the first call only (the others honour it already)."""
    extras = request.extras
    return extras is not None and extras.parallel_tool_calls is False


def estimate_tokens(text: str) -> int:
    """About four characters per token: the usual rule when a provider counts nothing."""
    return max(1, (len(text) + 3) // 4) if text else 0


def estimated_usage(messages: tuple[Message, ...], output: str) -> Usage:
    """Usage estimated from the text, marked as such."""
    prompt = sum(estimate_tokens(m.content) + 4 for m in messages)
    return Usage(prompt, estimate_tokens(output), estimated=True)


def dumps(payload: Any) -> bytes:
    """Compact JSON bytes."""
    return orjson.dumps(payload)


class HttpChatProvider(ChatProvider):
    """A ChatProvider over HTTP with the event loop's shared lean client (and aiohttp
    session, for the model-listing probe)."""

    stream_content_type: ClassVar[str] = "text/event-stream"
    keeps_deadline: ClassVar[bool] = True  # the lean client's deadline; prepare() bounded

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = 256,
        models: Mapping[str, Model] | None = None,
        probe_model: str | None = None,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.models: dict[str, Model] = dict(models or {})
        self.probe_model = probe_model
        self.probe_timeout = probe_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._session: aiohttp.ClientSession | None = None
        self._h1: H1Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prepared = False  # prepare() has succeeded once

    # -- what a protocol supplies -------------------------------------------------------

    @abc.abstractmethod
    def build(self, request: ChatRequest, *, stream: bool) -> Wire:
        """The HTTP request for `request`."""

    @abc.abstractmethod
    def read_answer(self, data: Any, request: ChatRequest) -> Answer:
        """A complete answer from the decoded JSON body (may raise ContentFiltered)."""

    @abc.abstractmethod
    def read_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The taxonomy's error for an HTTP error answer."""

    @abc.abstractmethod
    def read_stream(
        self, body: AsyncIterator[bytes]
    ) -> AsyncIterator[str | ToolCallDelta | StreamEnd]:
        """Text deltas, tool-call deltas and StreamEnd markers from the stream's body bytes
        as they arrive; raises ProviderError for in-stream errors."""

    def read_stream_of(
        self, body: AsyncIterator[bytes], request: ChatRequest
    ) -> AsyncIterator[str | ToolCallDelta | StreamEnd]:
        """read_stream for `request` (protocols whose reading depends on the request
        override this)."""
        return self.read_stream(body)

    def stream_reader(self, request: ChatRequest) -> EventReader | None:
        """A reader of the stream's events one at a time, for protocols whose streams may
        be pushed to a consumer (None: read_stream_of reads it, pulled only)."""
        return None

    async def prepare(self) -> None:
        """Work before the first request (e.g. resolving credentials)."""

    def models_wire(self) -> Wire | None:
        """A cheap authenticated request for probes when no model is known (list models)."""
        return None

    def embed_wires(self, request: EmbedRequest) -> list[Wire]:
        """The HTTP requests that embed `request.inputs` (in order); refused by default."""
        raise refusal(self.name, "embeddings", f"the {self.protocol} protocol has no embeddings")

    def read_embeddings(self, data: Any, request: EmbedRequest) -> tuple[list[list[float]], int]:
        """Vectors and input tokens (0 when not counted) from one decoded answer; an adapter
        that gives `embed_wires` gives this too (the default refuses like `embed_wires`)."""
        raise refusal(self.name, "embeddings", f"the {self.protocol} protocol has no embeddings")

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        """Every input's vector, under `request.timeout`; raises a ProviderError."""
        timeout = request.timeout if request.timeout is not None else self.timeout
        started = time.perf_counter()
        if not self._prepared:
            async with asyncio.timeout(timeout):
                await self.prepare()
            self._prepared = True
        vectors: list[list[float]] = []
        tokens = 0
        client = self.lean()
        for wire in self.embed_wires(request):
            left = timeout - (time.perf_counter() - started)
            try:
                async with self._slots:
                    reply = await client.post(
                        wire.url, wire.headers, wire.body, timeout=left, limit=MAX_BODY_BYTES
                    )
            except TRANSPORT_ERRORS as exc:
                raise transport_error(exc, self.name, timeout=timeout) from None
            if reply.status >= 400:
                raise self.read_error(reply.status, reply.headers, reply.body[:MAX_ERROR_BODY])
            data = parse_json_body(reply.body, reply.headers.get("content-type", ""), self.name)
            try:
                found, counted = self.read_embeddings(data, request)
            except SHAPE_ERRORS as exc:
                raise ServerError(
                    f"{self.name}: unexpected embeddings shape ({type(exc).__name__}: {exc})",
                    provider=self.name,
                ) from None
            vectors += found
            tokens += counted
        if len(vectors) != len(request.inputs):
            raise ServerError(
                f"{self.name}: {len(vectors)} embeddings for {len(request.inputs)} inputs",
                provider=self.name,
            )
        estimated = not tokens
        if estimated:
            tokens = sum(estimate_tokens(text) for text in request.inputs)
        return EmbedResponse(
            vectors,
            Usage(tokens, 0, estimated=estimated),
            (time.perf_counter() - started) * 1000.0,
            self.name,
            request.model,
        )

    # -- the shared machinery -------------------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        """This loop's shared session."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            self._session = acquire_session()
            self._h1 = lean_client(self._session)
            self._loop = loop
        return self._session

    def lean(self) -> H1Client:
        """This loop's lean client for answers and streams (it goes with the session)."""
        self.session()
        assert self._h1 is not None
        return self._h1

    async def close(self) -> None:
        """Give the shared session back (the last adapter on the loop closes it)."""
        session, self._session = self._session, None
        if session is not None and self._loop is asyncio.get_running_loop():
            await release_session(session)

    async def __aenter__(self) -> HttpChatProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def cost(self, model: str, usage: Usage) -> float | None:
        """USD for `usage` at the configured prices of provider model `model`, if known."""
        known = self.models.get(model)
        return known.cost(usage.input_tokens, usage.output_tokens) if known else None

    def _timeout(self, request: ChatRequest) -> float:
        return request.timeout if request.timeout is not None else self.timeout

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """The whole answer; raises a ProviderError subclass on failure."""
        timeout = self._timeout(request)
        started = time.perf_counter()
        if not self._prepared:
            try:
                async with asyncio.timeout(timeout):
                    await self.prepare()
            except TimeoutError:
                raise transport_error(TimeoutError(), self.name, timeout=timeout) from None
            self._prepared = True
        wire = self.build(request, stream=False)
        client = self.lean()
        try:
            if self._slots.locked():  # every connection of this adapter is busy: wait
                async with asyncio.timeout(timeout):
                    await self._slots.acquire()
            else:
                await self._slots.acquire()
            try:
                reply = await client.post(
                    wire.url,
                    wire.headers,
                    wire.body,
                    timeout=timeout - (time.perf_counter() - started),
                    limit=MAX_BODY_BYTES,
                )
            finally:
                self._slots.release()
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, self.name, timeout=timeout) from None
        latency_ms = (time.perf_counter() - started) * 1000.0
        first_byte = reply.headers_at or started
        status, headers, raw = reply.status, reply.headers, reply.body
        if status >= 400:
            raise self.read_error(status, headers, raw[:MAX_ERROR_BODY])
        if len(raw) > MAX_BODY_BYTES:
            raise ServerError(
                f"{self.name}: answer larger than {MAX_BODY_BYTES} bytes", provider=self.name
            )
        data = parse_json_body(raw, headers.get("content-type", ""), self.name)
        try:
            answer = self.read_answer(data, request)
        except ProviderError:
            raise
        except SHAPE_ERRORS as exc:
            raise ServerError(
                f"{self.name}: unexpected answer shape ({type(exc).__name__}: {exc})",
                provider=self.name,
            ) from None
        usage = answer.usage or estimated_usage(request.messages, answer.text)
        calls = answer.tool_calls[:1] if _one_call(request) else answer.tool_calls
        return ChatResponse(
            text=answer.text,
            finish_reason=answer.finish_reason,
            usage=usage,
            latency_ms=latency_ms,
            ttft_ms=(first_byte - started) * 1000.0,
            provider=self.name,
            model=request.model,
            response_id=answer.response_id,
            cost_usd=self.cost(request.model, usage),
            tool_calls=calls,
            logprobs=answer.logprobs,
            more=answer.more,
        )

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        limit = MAX_BODY_BYTES if response.status < 400 else MAX_ERROR_BODY
        raw = await response.content.read(limit + 1)
        if len(raw) > limit:
            if response.status >= 400:
                return raw[:limit]
            raise ServerError(f"{self.name}: answer larger than {limit} bytes", provider=self.name)
        return raw

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, StreamSink | None]:
        """Text deltas, then a final chunk with finish reason, usage, timing and cost.

        A consumer may `asend` a StreamSink instead of asking for the next chunk: where the
        protocol allows, the rest of the deltas then go to the sink from the connection's
        callback as they arrive, and `asend` returns the final chunk (or raises what the
        stream raised, as the pull would have); elsewhere it returns the next chunk."""
        await self.prepare()
        wire = self.build(request, stream=True)
        timeout = self._timeout(request)
        started = time.perf_counter()
        ttft: float | None = None
        parts: list[str] = []
        end: StreamEnd | None = None
        one_call = _one_call(request)
        client = self.lean()
        try:
            async with self._slots:
                reply = await client.stream(wire.url, wire.headers, wire.body, timeout=timeout)
                try:
                    if reply.status >= 400:
                        raw = await reply.read(MAX_ERROR_BODY)
                        raise self.read_error(reply.status, reply.headers, raw)
                    content_type = reply.headers.get("content-type", "")
                    if self.stream_content_type not in content_type:
                        raise self._not_a_stream(reply.status, reply.headers, content_type)
                    reader = self.stream_reader(request)
                    items = (
                        SseItems(reply, reader)
                        if reader is not None
                        else self.read_stream_of(reply, request)
                    )
                    async for item in items:
                        if isinstance(item, StreamEnd):
                            end = item
                            continue
                        if not item:
                            continue
                        if ttft is None:
                            ttft = (time.perf_counter() - started) * 1000.0
                        if isinstance(item, ToolCallDelta):
                            if one_call and item.index > 0:
                                continue
                            parts.append(item.arguments)
                            sink = yield StreamChunk(tool_calls=(item,))
                        else:
                            parts.append(item)
                            sink = yield StreamChunk(text=item)
                        if sink is not None and isinstance(items, SseItems):
                            end = await items.push(Delivery(sink, parts, one_call))
                            break
                    reply.close(finished=True)  # what may follow is the body's end
                finally:
                    reply.close()  # a stream left before its end closes its connection
        except ProviderError as exc:
            if ttft is None or isinstance(exc, StreamInterrupted):
                raise
            # The provider reported an error inside a stream already under way.
            raise StreamInterrupted(
                f"{exc.message} (after the stream started; {exc.error_class})",
                provider=self.name,
                status=exc.status,
            ) from None
        except TRANSPORT_ERRORS as exc:
            raise transport_error(
                exc, self.name, timeout=timeout, streaming=ttft is not None
            ) from None
        except SHAPE_ERRORS as exc:
            cls = StreamInterrupted if ttft is not None else ServerError
            raise cls(
                f"{self.name}: malformed stream ({type(exc).__name__}: {exc})", provider=self.name
            ) from None
        if end is None:
            cls = StreamInterrupted if ttft is not None else ServerError
            raise cls(f"{self.name}: stream ended before its final event", provider=self.name)
        if end.finish_reason == "content_filter" and ttft is None:
            raise ContentFiltered(f"{self.name}: the answer was filtered", provider=self.name)
        latency_ms = (time.perf_counter() - started) * 1000.0
        text = "".join(parts)
        usage = end.usage or estimated_usage(request.messages, text)
        yield StreamChunk(
            finish_reason=end.finish_reason,
            usage=usage,
            latency_ms=latency_ms,
            ttft_ms=ttft if ttft is not None else latency_ms,
            cost_usd=self.cost(request.model, usage),
        )

    def _not_a_stream(
        self, status: int, headers: Mapping[str, str], content_type: str
    ) -> ProviderError:
        shown = content_type or "no content type"
        return ServerError(
            f"{self.name}: expected {self.stream_content_type}, got {shown} (HTTP {status})",
            provider=self.name,
            status=status,
        )

    async def sse_events(self, body: AsyncIterator[bytes]) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events from the body's bytes as they arrive."""
        decoder = SseDecoder()
        async for chunk in body:
            for event in decoder.feed(chunk):
                yield event
        for event in decoder.flush():
            yield event

    async def probe(self) -> ProbeResult:
        """A one-token completion on the probe model, or a model listing when none is known."""
        started = time.perf_counter()
        checked: list[str] = []
        try:
            if self.probe_model:
                checked.append(f"chat {self.probe_model}")
                await self.complete(
                    ChatRequest(
                        model=self.probe_model,
                        messages=(Message("user", "ping"),),
                        max_tokens=1,
                        timeout=self.probe_timeout,
                    )
                )
            else:
                wire = self.models_wire()
                if wire is None:
                    return ProbeResult(
                        self.name,
                        False,
                        0.0,
                        "bad_request",
                        "no model of this provider is configured to probe",
                    )
                checked.append("list models")
                await self._get(wire)
        except ProviderError as exc:
            latency = (time.perf_counter() - started) * 1000.0
            return ProbeResult(self.name, False, latency, exc.error_class, str(exc), checked)
        latency = (time.perf_counter() - started) * 1000.0
        return ProbeResult(self.name, True, latency, None, "answered", checked)

    async def _get(self, wire: Wire) -> Any:
        await self.prepare()
        try:
            async with self.session().get(
                wire.url, headers=wire.headers, timeout=client_timeout(self.probe_timeout)
            ) as response:
                raw = await self._read_body(response)
                status, headers = response.status, response.headers
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc, self.name, timeout=self.probe_timeout) from None
        if status >= 400:
            raise self.read_error(status, headers, raw)
        return loads_or_none(raw)
