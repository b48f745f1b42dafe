"""Relaying a live upstream stream to the client as OpenAI SSE chunks.

The first chunk has already arrived (failover is only possible before it). From here on a
broken upstream ends the client's stream with an explicit `error` event and is recorded as a
failed request and attempt; only a final chunk with a finish reason ends it with
`data: [DONE]`. Clean-up (breaker, telemetry, the admission slot, the upstream iterator) runs
exactly once, whether the stream finished, broke, or the client left before it began.

After the first chunk, a stream served by the lean server from a protocol that can push
(OpenAI-compatible, see providers/_relay.py) is pushed: its deltas are framed and written to
the client from the upstream connection's callback (`_ClientSink`) until its final chunk,
which comes back through the same `_next` as a pulled one, so the ending, the error event,
the deadline, the client leaving and the record are the pull's own. The bytes on the wire
are the pull's (tests/test_gateway_stream_push.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import orjson

from quality_gates.errors import ProviderError, ProviderTimeout, StreamInterrupted
from quality_gates.gateway._cache import CachedAnswer
from quality_gates.gateway._chat_answers import tool_chunk_event, usage_chunk_event
from quality_gates.gateway._output_check import (
    answer_with_calls,
    check_output,
    streamed_calls,
    wants_check,
)
from quality_gates.gateway._redact import redact
from quality_gates.gateway._routing import Deployment
from quality_gates.gateway._server import watch_disconnect
from quality_gates.gateway._telemetry import RequestRecord
from quality_gates.gateway._wire import (
    DONE_EVENT,
    CompletionRequest,
    chunk_event,
    content_event_frame,
    error_event,
)
from quality_gates.providers import StreamChunk, ToolCallDelta

if TYPE_CHECKING:
    from quality_gates.gateway._dispatch import Trip
    from quality_gates.gateway._gateway import Gateway

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
SSE_MEDIA_TYPE = b"text/event-stream; charset=utf-8"
# How a request the client left is recorded: status, HTTP status (nginx's 499), error class.
CLIENT_DISCONNECTED = ("cancelled", 499, "client_disconnected")
# A send that waited longer than this was held by the client's flow control.
CLIENT_WAIT_S = 0.05


class LiveStream:
    """An ASGI response that relays one upstream stream."""

    def __init__(
        self,
        gateway: Gateway,
        request: CompletionRequest,
        rec: RequestRecord,
        deployment: Deployment,
        trip: Trip,
        iterator: AsyncIterator[StreamChunk],
        started: float,
        deadline: float,
        key_hash: str | None,
    ) -> None:
        self.gateway = gateway
        self.request, self.rec, self.deployment, self.trip = request, rec, deployment, trip
        self.iterator = iterator
        self.started, self.deadline, self.key_hash = started, deadline, key_hash
        self.attempt_started = time.perf_counter() - trip.attempts[-1].latency_ms / 1000.0
        self.parts: list[str] = []
        self.error: ProviderError | None = None
        self.final: StreamChunk | None = None
        self.tool_calls = False
        # Tool-call deltas kept only when the request asks for structured output (checked
        # at the end); a plain stream keeps nothing.
        self.deltas: list[ToolCallDelta] | None = [] if wants_check(request.extras) else None
        self.client_gone = False  # the client disconnected (or was cut for not reading)
        self._done = False
        # The deadline is kept by one timer per stream (`_watch`), not a timeout context per
        # chunk: that cost a timer handle, a task lookup and a cancel for every chunk, about
        # a seventh of the relay's CPU.
        self._watchdog: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None  # the task that relays
        self._waiting = False  # it awaits the upstream's next chunk
        self._expired = False
        # The lean server's answer in progress, when the rest of the stream may be pushed
        # to it from the upstream's callback (see _ClientSink).
        self._cycle: Any = None
        self.held = False  # a pushed stream waits for the client to read

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Relay in this task while the server watches for the client to leave (then the
        relay is cancelled): no task group and no extra task hop before the first byte."""
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in {**SSE_HEADERS, **self.gateway.headers(self.rec)}.items()
        ]
        headers.append((b"content-type", SSE_MEDIA_TYPE))
        loop = asyncio.get_running_loop()
        relay = asyncio.current_task()
        if relay is None:
            raise RuntimeError("a live stream is relayed from a task")

        def client_left() -> None:
            self.client_gone = True
            relay.cancel()

        cycle = getattr(send, "__self__", None)
        if hasattr(cycle, "write_chunk") and hasattr(self.iterator, "asend"):
            self._cycle = cycle
        stop_watching = watch_disconnect(receive, client_left)
        events = self._relay()
        ended = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for event in events:
                # The ending (last chunk, usage, [DONE]) goes out with the body's own end in
                # one write; what the relay does after it (the cache) is not waited for.
                ended = event.endswith(DONE_EVENT)
                # Time the client makes us wait (it stopped reading) is not the provider's:
                # the deadline moves by it, so only the server's cut of that client ends it.
                before = loop.time()
                await send({"type": "http.response.body", "body": event, "more_body": not ended})
                waited = loop.time() - before
                if waited > CLIENT_WAIT_S:
                    self.deadline += waited
            if not ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not (self.client_gone and relay.uncancel() == 0):
                raise  # not the client leaving: the server is stopping
        finally:
            stop_watching()
            await events.aclose()
            await self._finish()

    def _watch(self) -> None:
        """At the deadline (which a client's slow reading moves): cut the wait for the
        upstream's next chunk, or let the next wait see the deadline passed."""
        loop = asyncio.get_running_loop()
        if loop.time() < self.deadline or self.held:
            # A client that does not read holds a pushed stream: its time, not the
            # provider's (the deadline moves by it once it reads again).
            at = max(self.deadline, loop.time() + CLIENT_WAIT_S)
            self._watchdog = loop.call_at(at, self._watch)
            return
        self._watchdog = None
        self._expired = True
        if self._waiting and self._task is not None:
            self._task.cancel()

    async def _next(
        self, loop: asyncio.AbstractEventLoop, sink: _ClientSink | None = None
    ) -> StreamChunk | None:
        """The next upstream chunk, or None with `self.error` set; with a `sink`, the
        stream may push its deltas to it and answer with its final chunk."""
        provider = self.deployment.provider
        try:
            if self._expired or loop.time() >= self.deadline:
                raise TimeoutError
            if self._task is None:
                self._task = asyncio.current_task()
                self._watchdog = loop.call_at(self.deadline, self._watch)
            self._waiting = True
            try:
                if sink is not None:
                    return await self.iterator.asend(sink)  # type: ignore[attr-defined,no-any-return]
                return await self.iterator.__anext__()
            except asyncio.CancelledError:
                # Ours when the watchdog fired and nobody else cancelled the task too.
                task = self._task
                if not self._expired or task is None or task.uncancel() > 0:
                    raise
                raise TimeoutError from None
            finally:
                self._waiting = False
        except StopAsyncIteration:
            self.error = StreamInterrupted(
                f"{provider}: the stream ended without a finish reason", provider=provider
            )
        except TimeoutError:
            self.error = ProviderTimeout(
                f"the request deadline ({self.gateway.s.settings.deadline:g} s) ran out mid-stream",
                provider=provider,
            )
        except ProviderError as exc:
            self.error = exc
        except Exception as exc:
            self.error = StreamInterrupted(
                f"{provider}: {type(exc).__name__}: {exc}", provider=provider
            )
        return None

    async def _relay(self) -> AsyncGenerator[bytes, None]:
        rec, model = self.rec, self.deployment.model_id
        created = int(rec.ts)
        loop = asyncio.get_running_loop()
        head, tail = content_event_frame(rec.id, created, model)
        dumps = orjson.dumps
        try:
            # The role chunk goes out with the first text in one write.
            opening: bytes | None = chunk_event(rec.id, created, model, role=True, content="")
            chunk = self.trip.first
            while chunk is not None:
                if chunk.text:
                    self.parts.append(chunk.text)
                    event = head + dumps(chunk.text) + tail
                    if opening is not None:
                        event, opening = opening + event, None
                    yield event
                elif opening is not None:
                    yield opening
                    opening = None
                if chunk.tool_calls:
                    self.tool_calls = True
                    if self.deltas is not None:
                        self.deltas.extend(chunk.tool_calls)
                    yield tool_chunk_event(rec.id, created, model, chunk.tool_calls)
                if chunk.is_final:
                    self.final = chunk
                    break
                sink = None
                if opening is None and self._cycle is not None and self._cycle.pushable:
                    sink = _ClientSink(self, self._cycle.write_chunk, head, tail)
                    self._cycle = None  # offered once: a stream that cannot push is pulled
                chunk = await self._next(loop, sink)
            if self.error is not None or self.final is None:
                error = self.error or StreamInterrupted("the stream ended without data")
                self.error = error
                if not self.client_gone:
                    self.gateway.s.metrics.stream_interrupted.labels(
                        rec.environment, self.deployment.provider
                    ).inc()
                yield error_event(
                    f"the upstream stream from {self.deployment.provider} broke after "
                    f"{len(self.parts)} chunks: {error.message}",
                    error.error_class,
                )
                return
            async for event in self._ending(self.final):
                yield event
        except BaseException:
            if self.error is None and self.final is None:
                self.client_gone = True
            raise
        finally:
            await self._finish()

    async def _ending(self, final: StreamChunk) -> AsyncIterator[bytes]:
        rec, deployment = self.rec, self.deployment
        created, model = int(rec.ts), deployment.model_id
        finish = "tool_calls" if self.tool_calls else final.finish_reason or "stop"
        ending = [chunk_event(rec.id, created, model, finish=finish)]
        usage = final.usage
        if usage is not None:
            rec.input_tokens, rec.output_tokens = usage.input_tokens, usage.output_tokens
            rec.cost = deployment.cost(usage)
            if self.request.include_usage and (usage.cached_tokens or usage.reasoning_tokens):
                ending.append(usage_chunk_event(rec.id, created, model, usage))
            elif self.request.include_usage:
                ending.append(
                    chunk_event(
                        rec.id, created, model, usage=(usage.input_tokens, usage.output_tokens)
                    )
                )
        rec.finish_reason = final.finish_reason
        ending.append(DONE_EVENT)
        yield b"".join(ending)
        cache = self.gateway.s.cache
        if self.key_hash is not None and cache is not None and not self.tool_calls:
            await cache.put(
                self.key_hash,
                CachedAnswer(
                    "".join(self.parts),
                    final.finish_reason or "stop",
                    rec.input_tokens,
                    rec.output_tokens,
                    deployment.model_id,
                    deployment.provider,
                    deployment.id,
                    time.time(),
                ),
            )

    async def _finish(self) -> None:
        """Record the outcome and release everything, once."""
        if self._done:
            return
        self._done = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        s, rec = self.gateway.s, self.rec
        if self.final is None and (self.error is None or self.client_gone):
            # The client left before the end: its fault, whatever the upstream did after
            # (a deadline that ran out while it held the stream, a cut iterator), so never
            # the provider's error, breaker trip or SLO burn.
            rec.status, rec.http_status, rec.error_class = CLIENT_DISCONNECTED
        cancelled = rec.status == "cancelled"
        elapsed = (time.perf_counter() - self.attempt_started) * 1000.0
        s.dispatcher.record_stream_end(
            self.trip, elapsed, None if cancelled else self.error, client_left=cancelled
        )
        if self.error is not None and not cancelled:
            rec.status, rec.http_status = "error", 502
            rec.error_class = self.error.error_class
        calls = streamed_calls(self.deltas) if self.deltas else []
        if self.deltas is not None and rec.status == "ok" and self.final is not None:
            rec.output_check = check_output(
                self.request.extras, "".join(self.parts), calls, self.final.finish_reason
            )
        if s.settings.telemetry.store_text:
            rec.answer = redact("".join(self.parts), s.settings.telemetry.max_text_chars)
        close = getattr(self.iterator, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        self.gateway.finish(rec, self.started)
        s.admission.release()
        if s.answer_tap is not None and rec.status == "ok":
            s.answer_tap(
                rec, self.request.prompt_text(), answer_with_calls("".join(self.parts), calls)
            )


class _ClientSink:
    """The client's end of a pushed stream: each delta framed as the pull frames it and
    written to the client's connection from the upstream's callback; while the client does
    not read, the upstream is not read either, and the deadline moves by the time it held
    the stream (as a slow send does for the pull)."""

    __slots__ = ("head", "holding", "live", "parts", "tail", "write")

    def __init__(
        self,
        live: LiveStream,
        write: Callable[[bytes], asyncio.Future[None] | None],
        head: bytes,
        tail: bytes,
    ) -> None:
        self.live, self.write, self.head, self.tail = live, write, head, tail
        self.parts = live.parts
        self.holding: asyncio.Future[None] | None = None

    def text(self, text: str) -> asyncio.Future[None] | None:
        """A text delta, written as a content chunk."""
        self.parts.append(text)
        held = self.write(self.head + orjson.dumps(text) + self.tail)
        if held is not None and held is not self.holding:
            self._hold(held)
        return held

    def tool_call(self, delta: ToolCallDelta) -> asyncio.Future[None] | None:
        """A tool-call delta, written as a tool-call chunk."""
        live, rec = self.live, self.live.rec
        live.tool_calls = True
        if live.deltas is not None:
            live.deltas.append(delta)
        event = tool_chunk_event(rec.id, int(rec.ts), live.deployment.model_id, (delta,))
        held = self.write(event)
        if held is not None and held is not self.holding:
            self._hold(held)
        return held

    def _hold(self, held: asyncio.Future[None]) -> None:
        self.holding = held
        live = self.live
        live.held = True
        loop = asyncio.get_running_loop()
        since = loop.time()

        def resumed(_: asyncio.Future[None]) -> None:
            live.held = False
            waited = loop.time() - since
            if waited > CLIENT_WAIT_S:
                live.deadline += waited

        held.add_done_callback(resumed)
