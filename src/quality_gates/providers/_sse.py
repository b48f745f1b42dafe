"""Server-sent events: an incremental parser (adapters) and an encoder (simulator)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

MAX_EVENT_BYTES = 4 * 1024 * 1024  # an event this large means the stream is not SSE


class ServerSentEvent(NamedTuple):
    """One event: its `event:` name (empty when absent) and its joined `data:` lines (a
    tuple: one is made per streamed token)."""

    event: str
    data: str


class SseDecoder:
    """Feed raw bytes as they arrive; complete events come out (WHATWG rules, CR/LF/CRLF)."""

    def __init__(self) -> None:
        self._pending = b""
        self._event = ""
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> Iterator[ServerSentEvent]:
        """Events completed by `chunk`; raises ValueError if one grows unreasonably large."""
        whole = self.whole_data(chunk)
        if whole is not None:
            yield ServerSentEvent("", whole.decode("utf-8", "replace"))
            return
        buffer = self._pending + chunk
        lines = buffer.splitlines(keepends=True)
        self._pending = b""
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            self._pending = lines.pop()
        elif lines and lines[-1].endswith(b"\r"):
            # A CR at the end may be the first half of a CRLF split across chunks.
            self._pending = lines.pop()
        for raw in lines:
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            event = self._line(line)
            if event is not None:
                yield event
        if len(self._pending) + self._size > MAX_EVENT_BYTES:
            raise ValueError("server-sent event larger than 4 MiB")

    def whole_data(self, chunk: bytes) -> bytes | None:
        """The data of `chunk` when it is one whole `data:` event and nothing is pending:
        the common case of a streaming API, one event per read (None otherwise; `feed`
        reads it)."""
        if (
            not self._pending
            and not self._data
            and not self._event
            and chunk.startswith(b"data: ")
            and chunk.endswith(b"\n\n")
            and chunk.count(b"\n") == 2
            and b"\r" not in chunk
        ):
            return chunk[6:-2]
        return None

    def flush(self) -> Iterator[ServerSentEvent]:
        """The last event when the stream ends without a blank line."""
        if self._pending:
            event = self._line(self._pending.rstrip(b"\r\n").decode("utf-8", "replace"))
            self._pending = b""
            if event is not None:
                yield event
        if self._data:
            yield ServerSentEvent(self._event, "\n".join(self._data))
            self._event, self._data, self._size = "", [], 0

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            if not self._data and not self._event:
                return None
            event = ServerSentEvent(self._event, "\n".join(self._data))
            self._event, self._data, self._size = "", [], 0
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
            self._size += len(value)
        elif field == "event":
            self._event = value
        return None


def encode_sse(data: str, event: str | None = None) -> bytes:
    """One event on the wire."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()
