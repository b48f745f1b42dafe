"""The items of a server-sent event stream, pulled (`async for`) or pushed.

A protocol whose events can be read one at a time by a small object (`EventReader`: the
OpenAI-compatible one) has its stream read here, in one of two modes that share every byte of
state: pulled item by item (the first chunk, which failover waits for, and any consumer), or,
once the consumer offers a sink, pushed: the events are split and read in the upstream
connection's own callback and each item handed to the sink there, with no task wake-up and
no async generator between the socket and the client (about two thirds of the gateway's
Python time per relayed chunk went to those layers; bench/gateway_stream.py).

Most of a pushed stream is plain text chunks that differ in their text alone. Once the reader
has read one whole (`EventReader.plain_text`) and proved where its text sits (`shape`), a
piece that is those bytes around another JSON string is read by decoding that string and
handed to the sink here, one Python call per chunk below the connection's own
(bench/stream_relay.py); anything else, or anything while the decoder holds part of an
event, takes the general reader.
"""

from __future__ import annotations

import abc
import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

import orjson

from quality_gates.providers._h1 import StreamReply
from quality_gates.providers._sse import ServerSentEvent, SseDecoder
from quality_gates.providers._types import ToolCallDelta

if TYPE_CHECKING:
    from quality_gates.providers._base import StreamEnd
    from quality_gates.providers._types import StreamSink

# What a consumer's `deliver` returns: None, or a future to wait for (it is full).
Held = asyncio.Future[None] | None


class EventReader(abc.ABC):
    """A protocol's reading of its stream's events, one at a time (the state between them
    kept on the object, so the pull and the push modes can hand over)."""

    done = False  # the protocol's last event was read: nothing after it is
    # The bytes before and after the text of the last event `plain_text` read, when its data
    # is JSON and the text one JSON string in it: an event whose data is those bytes around
    # another JSON string is the same event with that text (the reader proves the place by
    # parsing the event with another string in it).
    shape: tuple[bytes, bytes] | None = None

    @abc.abstractmethod
    def read(self, event: ServerSentEvent) -> Iterable[str | ToolCallDelta]:
        """The text and tool-call deltas of one event; raises ProviderError for an error
        event and ValueError (or a shape error) for one it cannot read."""

    @abc.abstractmethod
    def end(self) -> StreamEnd | None:
        """How the stream ended, once its events are read (None: it said nothing)."""

    def plain_text(self, data: bytes) -> str | None:
        """The text of an event whose data (raw bytes) is nothing but a text delta, the bulk
        of a stream, read as `read` would read it but without its general path; None: the
        event is something else (or this protocol has no such shortcut), `read` it."""
        return None


class Delivery:
    """What a pushed stream does with each item, what the pull does before yielding it: a
    text kept in `parts` and handed to the sink; a tool call too, past the first one
    dropped under `one_call`. Called with each item; the relay's plain-text lane uses
    `parts` and `text` itself."""

    __slots__ = ("one_call", "parts", "text", "tool_call")

    def __init__(self, sink: StreamSink, parts: list[str], one_call: bool) -> None:
        self.text, self.tool_call = sink.text, sink.tool_call
        self.parts, self.one_call = parts, one_call

    def __call__(self, item: str | ToolCallDelta) -> Held:
        if item.__class__ is str:
            if not item:
                return None
            self.parts.append(item)
            return self.text(item)
        assert isinstance(item, ToolCallDelta)
        if self.one_call and item.index > 0:
            return None
        self.parts.append(item.arguments)
        return self.tool_call(item)


class SseItems:
    """The items of `reply`'s events read by `reader`: text and tool-call deltas, then the
    StreamEnd if the stream said how it ended."""

    __slots__ = (
        "_decoder",
        "_ended",
        "_error",
        "_pending",
        "_shape",
        "deliver",
        "reader",
        "reply",
    )

    def __init__(self, reply: AsyncIterator[bytes], reader: EventReader) -> None:
        self.reply = reply
        self.reader = reader
        self._decoder = SseDecoder()
        self._pending: deque[str | ToolCallDelta] = deque()
        self._ended = False
        self._error: BaseException | None = None
        self.deliver: Delivery | None = None
        # The reader's shape with the SSE framing around it, while the decoder holds no
        # part of an event (a piece that matches it is one whole plain event).
        self._shape: tuple[bytes, bytes] | None = None

    def __aiter__(self) -> SseItems:
        return self

    async def __anext__(self) -> str | ToolCallDelta | StreamEnd:
        pending = self._pending
        while not pending:
            if self._error is not None:
                error, self._error = self._error, None
                self._ended = True
                raise error
            if self._ended:
                raise StopAsyncIteration
            if self.reader.done:
                return self._end()
            try:
                data = await self.reply.__anext__()
            except StopAsyncIteration:
                self._take(self._decoder.flush())
                if not pending:
                    return self._end()
                break
            self._take(self._decoder.feed(data))
        return pending.popleft()

    def _end(self) -> StreamEnd:
        self._ended = True
        end = self.reader.end()
        if end is None:
            raise StopAsyncIteration
        return end

    def _take(self, events: Iterable[ServerSentEvent]) -> None:
        """Read `events` into the pending items; an error waits until the items read
        before it are taken, as it would in a chain of generators."""
        reader = self.reader
        try:
            for event in events:
                self._pending.extend(reader.read(event))
                if reader.done:
                    return
        except Exception as exc:
            self._error = exc

    async def push(self, deliver: Delivery) -> StreamEnd | None:
        """Hand every remaining item to `deliver` as it arrives, from the connection's
        callback (reading paused while `deliver` says its consumer is full); returns how the
        stream ended, or raises what reading it raised, as the pull would have."""
        reply = self.reply
        if not isinstance(reply, StreamReply):
            raise TypeError("only a lean client's reply is pushed")
        self.deliver = deliver
        while self._pending:
            self._hold(deliver(self._pending.popleft()))
        if self._error is not None:  # read with those items, raised after them
            raise self._error
        if not self.reader.done:
            await reply.relay(self._on_data)
            if self._error is not None:
                raise self._error
            if not self.reader.done:
                for event in self._decoder.flush():
                    for item in self.reader.read(event):
                        self._hold(deliver(item))
                    if self.reader.done:
                        break
        self._ended = True
        return self.reader.end()

    def _on_data(self, data: bytes) -> bool:
        shape = self._shape
        if shape is not None and data.startswith(shape[0]) and data.endswith(shape[1]):
            # The last plain event again with another text, most of a stream: only its JSON
            # string is decoded and the text goes straight to the sink, with no call per
            # layer (each cost ~0.1 us hot, several times that between socket reads).
            literal = data[len(shape[0]) : len(data) - len(shape[1])]
            text: object = None
            if literal[:1] == b'"':
                try:
                    text = orjson.loads(literal)
                except orjson.JSONDecodeError:
                    text = None
            if text.__class__ is str and text:
                deliver = self.deliver
                assert deliver is not None
                deliver.parts.append(text)
                held = deliver.text(text)
                if held is not None:
                    self._hold(held)
                return True
        return self._read_piece(data)

    def _read_piece(self, data: bytes) -> bool:
        reader, deliver = self.reader, self.deliver
        assert deliver is not None
        whole = self._decoder.whole_data(data)
        if whole is not None:
            # One whole event in one read and the decoder holding nothing: a plain text
            # delta is read without a generator per event and per item.
            text = reader.plain_text(whole)
            if text is not None:
                shape = reader.shape
                self._shape = shape and (b"data: " + shape[0], shape[1] + b"\n\n")
                held = deliver(text)
                if held is not None:
                    self._hold(held)
                return True
        self._shape = None  # the decoder may keep part of an event from here
        try:
            for event in self._decoder.feed(data):
                for item in reader.read(event):
                    held = deliver(item)
                    if held is not None:
                        self._hold(held)
                if reader.done:
                    return False
        except Exception as exc:  # raised from push(), where the pull would have raised it
            self._error = exc
            return False
        return True

    def _hold(self, held: Held) -> None:
        if held is not None and not held.done():
            assert isinstance(self.reply, StreamReply)  # only a pushed reply is held
            self.reply.hold(held)
