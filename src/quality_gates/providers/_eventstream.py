"""AWS event-stream binary framing (`application/vnd.amazon.eventstream`), both directions.

Bedrock's ConverseStream answers with it; the simulator writes it. A message is

    total length (u32) | headers length (u32) | prelude CRC32 (u32)
    headers: name length (u8) | name | type (u8) | value (type 7, string: u16 length + bytes)
    payload | message CRC32 (u32, over everything before it)

all big-endian. Only string headers are written; every header type is read.
"""

from __future__ import annotations

import struct
from binascii import crc32
from collections.abc import Iterator
from dataclasses import dataclass

PRELUDE = struct.Struct(">II")
PRELUDE_LENGTH = 12
MAX_MESSAGE = 16 * 1024 * 1024  # the service's own limit; a larger length is corruption
_STRING = 7
# header type -> fixed value size (None: u16 length prefix follows)
_HEADER_SIZES: dict[int, int | None] = {
    0: 0,
    1: 0,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: None,
    7: None,
    8: 8,
    9: 16,
}


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad length, checksum or header)."""


@dataclass(frozen=True)
class EventMessage:
    """One decoded message: string headers and the raw payload."""

    headers: dict[str, str]
    payload: bytes

    @property
    def message_type(self) -> str:
        """`event`, `exception` or `error`."""
        return self.headers.get(":message-type", "event")

    @property
    def event_type(self) -> str:
        """The event's name (`contentBlockDelta`, ...) or the exception's type."""
        if self.message_type == "exception":
            return self.headers.get(":exception-type", "")
        if self.message_type == "error":
            return self.headers.get(":error-code", "")
        return self.headers.get(":event-type", "")


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One framed message with string headers."""
    encoded = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack(">B", len(raw_name)) + raw_name
        encoded += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    total = PRELUDE_LENGTH + len(encoded) + len(payload) + 4
    prelude = PRELUDE.pack(total, len(encoded))
    head = prelude + struct.pack(">I", crc32(prelude) & 0xFFFFFFFF)
    body = head + bytes(encoded) + payload
    return body + struct.pack(">I", crc32(body) & 0xFFFFFFFF)


def encode_event(event_type: str, payload: bytes) -> bytes:
    """An `event` message as Bedrock sends it (JSON payload)."""
    return encode_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        payload,
    )


def encode_exception(exception_type: str, payload: bytes) -> bytes:
    """An `exception` message (modeled error inside the stream)."""
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        payload,
    )


def _decode_headers(data: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        name_length = data[pos]
        pos += 1
        name = data[pos : pos + name_length].decode("utf-8", "replace")
        pos += name_length
        if pos >= len(data):
            raise EventStreamError("header without a type")
        kind = data[pos]
        pos += 1
        if kind not in _HEADER_SIZES:
            raise EventStreamError(f"unknown header type {kind}")
        size = _HEADER_SIZES[kind]
        if size is None:
            if pos + 2 > len(data):
                raise EventStreamError("truncated header length")
            (size,) = struct.unpack_from(">H", data, pos)
            pos += 2
        value = data[pos : pos + size]
        if len(value) != size:
            raise EventStreamError("truncated header value")
        pos += size
        if kind == _STRING:
            headers[name] = value.decode("utf-8", "replace")
        elif kind in (0, 1):
            headers[name] = "true" if kind == 0 else "false"
        else:
            headers[name] = value.hex()
    return headers


class EventStreamDecoder:
    """Incremental decoder: feed bytes as they arrive, get whole messages back."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[EventMessage]:
        """Messages completed by `data`; raises EventStreamError on corruption."""
        self._buffer += data
        while len(self._buffer) >= PRELUDE_LENGTH:
            total, headers_length = PRELUDE.unpack_from(self._buffer, 0)
            (prelude_crc,) = struct.unpack_from(">I", self._buffer, 8)
            if crc32(self._buffer[:8]) & 0xFFFFFFFF != prelude_crc:
                raise EventStreamError("prelude checksum mismatch")
            if total > MAX_MESSAGE or total < PRELUDE_LENGTH + 4 + headers_length:
                raise EventStreamError(f"impossible message length {total}")
            if len(self._buffer) < total:
                return
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            (message_crc,) = struct.unpack_from(">I", frame, total - 4)
            if crc32(frame[:-4]) & 0xFFFFFFFF != message_crc:
                raise EventStreamError("message checksum mismatch")
            headers = _decode_headers(frame[PRELUDE_LENGTH : PRELUDE_LENGTH + headers_length])
            yield EventMessage(headers, frame[PRELUDE_LENGTH + headers_length : -4])

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return len(self._buffer)
