"""A lean HTTP/1.1 client for provider calls: keep-alive connections per host, responses
parsed by httptools, whole answers (`post`) and streamed ones (`stream`).

The gateway spends most of its own time per request in the upstream call; aiohttp's request
machinery (tracing hooks, cookie jar, payload registry, per-request timers) cost about a third
of the gateway's Python time per request here (bench/gateway.py), and its stream reader (a
StreamReader, its buffer and its waiter per chunk) a sixth of the time of a relayed stream
(bench/gateway_stream.py). This client does only what a provider call needs: one POST with a
body, a status, headers and a body back (whole and bounded, or piece by piece as it arrives),
within one deadline.

Errors it raises, which `_http.transport_error` turns into the taxonomy's:
- `ConnectFailed` (an OSError): the TCP or TLS connection could not be made;
- `BadResponse`: the reply is not valid HTTP/1.1;
- `Disconnected` (an OSError): the server closed the connection before the reply ended
  (for a stream: after the pieces that did arrive were read);
- `TimeoutError`: the deadline passed.

Deadlines cost no timer per request: the client keeps the deadline of each exchange in
flight and one timer, set for the earliest of them, which fails the overdue exchanges when it
fires (an asyncio.timeout per request cost about 4% of the gateway's CPU here).

A connection that was reused from the pool and closed by the server before it sent a single
byte back is retried once on a new connection, as keep-alive clients do (the server closed an
idle connection while the request was on its way; it did not see the request). A stream is
retried so only before its headers; afterwards a cut is the caller's to report.

A stream whose reader falls behind (its client reads slowly) stops reading the socket once
`STREAM_HIGH_WATER` bytes wait, so TCP flow control holds the upstream back; a stream given up
before its end closes its connection, which is how the upstream learns to stop. A stream
whose reader has all it needs (its protocol's last event) while the body's own end is still
on its way (OpenAI-compatible servers write `data: [DONE]` and the chunked terminator
apart) is drained in the background and its connection reused once that end arrives.

A stream's reader may also take the rest of the body pushed (`StreamReply.relay`): each
piece handed to its callback from the connection's `data_received`, no wake-up per piece;
it then pauses the socket itself (`StreamReply.hold`) while its own consumer is full.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from math import inf
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httptools

IDLE_SECONDS = 15.0  # an idle connection older than this is closed, not reused
MAX_IDLE_PER_HOST = 256
DEFAULT_CONNECT_TIMEOUT = 10.0
STREAM_HIGH_WATER = 256 * 1024  # bytes of a stream waiting for its reader before we pause
MAX_DRAIN_BYTES = 64 * 1024  # what may still follow a stream's last event for reuse

_T = TypeVar("_T")


class ConnectFailed(OSError):
    """The connection to the upstream could not be made."""


class Disconnected(OSError):
    """The upstream closed the connection before its reply ended."""


class BadResponse(Exception):
    """The upstream's reply is not valid HTTP/1.1."""


class Reply:
    """A finished reply: status, headers by lower-case name, body (possibly cut at a limit),
    and when its headers had arrived (time.perf_counter)."""

    __slots__ = ("body", "headers", "headers_at", "status")

    def __init__(
        self, status: int, headers: dict[str, str], body: bytes, headers_at: float
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.headers_at = headers_at


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the reply it is reading (whole, or as a stream)."""

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset(None, 0, streaming=False)

    def _reset(self, waiter: asyncio.Future[None] | None, limit: int, *, streaming: bool) -> None:
        self._waiter = waiter  # what the reader awaits: the reply, its head or its next piece
        self.active = waiter is not None  # an exchange is in flight on this connection
        self.streaming = streaming
        self._limit = limit
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._size = 0  # bytes kept (whole) or waiting for the reader (stream)
        self.cut = False  # the body went over the limit; the rest was not kept
        self.received = 0
        self.done = False
        self.error: BaseException | None = None
        self.paused = False
        self._drained: Callable[[bool], None] | None = None  # the body's end will tell
        self._push: Callable[[bytes], bool] | None = None  # body pieces go here (relay)
        self._held_by: asyncio.Future[None] | None = None  # reading paused until it is done
        self._headers_done = False
        self._headers_at = 0.0
        self._status = 0
        self._keep_alive = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if not self.active:  # bytes while idle: the connection cannot be trusted
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadResponse(f"invalid HTTP response: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.active or self.done:
            return
        if (
            exc is None
            and self._headers_done
            and "content-length" not in self._headers
            and "transfer-encoding" not in self._headers
        ):
            self.on_message_complete()  # a body delimited by the end of the connection
            return
        detail = f": {exc}" if exc else ""
        self._fail(Disconnected(f"the server closed the connection{detail}"))

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._headers_at = time.perf_counter()
        # Read here: the parser's flags reset once the message completes.
        self._status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        if self.streaming:
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self.cut:
            return
        self._size += len(body)
        if self._drained is not None:
            if self._size > MAX_DRAIN_BYTES:
                self._fail(BadResponse("more than the end of a finished stream"))
            return
        push = self._push
        if push is not None:
            if not push(body):
                self._push = None  # the reader has all it needs
                self._wake()
            return
        self._chunks.append(body)
        if self.streaming:
            if self._size > STREAM_HIGH_WATER and not self.paused and self.transport:
                self.paused = True  # the reader is behind: let TCP hold the upstream back
                self.transport.pause_reading()
            self._wake()
        elif self._size > self._limit:
            self.cut = True  # enough to know it is too large: stop here, drop the connection
            self._wake()

    def on_message_complete(self) -> None:
        self.done = True
        drained, self._drained = self._drained, None
        if drained is not None:
            drained(True)
        self._wake()

    # -- use -----------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self._wake()
        self.close()
        drained, self._drained = self._drained, None
        if drained is not None:
            drained(False)

    def drain(self, drained: Callable[[bool], None]) -> None:
        """Read what is left of the body without keeping it; `drained` learns whether the
        body ended cleanly (the connection may be reused) or not."""
        self._chunks.clear()
        self._size = 0
        self._drained = drained
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def expire(self) -> None:
        """The deadline passed: fail the exchange in flight and drop the connection."""
        self._fail(TimeoutError())

    async def exchange(self, request: bytes, limit: int) -> Reply:
        """Send `request` and wait for the whole reply (the body kept up to `limit` + 1)."""
        assert self.transport is not None
        waiter = asyncio.get_running_loop().create_future()
        self._reset(waiter, limit, streaming=False)
        self.transport.write(request)
        await waiter
        if self.error is not None and not (self.done or self.cut):
            raise self.error
        body = b"".join(self._chunks)
        encoding = self._headers.get("content-encoding", "")
        if encoding and not self.cut:
            body = _decoded(body, encoding)
        if self.cut or not self._keep_alive:
            self.close()
        self.active = False
        return Reply(self._status, self._headers, body[: limit + 1], self._headers_at)

    async def open_stream(self, request: bytes) -> None:
        """Send `request` and wait for the reply's head (the body is read by StreamReply)."""
        assert self.transport is not None
        waiter = asyncio.get_running_loop().create_future()
        self._reset(waiter, 0, streaming=True)
        self.transport.write(request)
        await waiter
        if self.error is not None and not self._headers_done:
            raise self.error


def _decoded(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some send
    except zlib.error as exc:
        raise BadResponse(f"invalid {encoding} body: {exc}") from None
    if encoding == "identity":
        return body
    raise BadResponse(f"unsupported content-encoding {encoding!r}")


class StreamReply:
    """A reply whose body arrives in pieces: the status and headers (lower-case names) now,
    the body by `async for` (decoded when the server compressed it). Close it when done:
    a stream left before its end closes its connection."""

    __slots__ = ("_client", "_conn", "_decoder", "closed", "headers", "headers_at", "status")

    def __init__(self, client: H1Client, conn: _Connection) -> None:
        self._client = client
        self._conn = conn
        self.status = conn._status
        self.headers = conn._headers
        self.headers_at = conn._headers_at
        self.closed = False
        encoding = self.headers.get("content-encoding", "").strip().lower()
        self._decoder: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = _DeflateDecoder()
        elif encoding not in ("", "identity"):
            conn._fail(BadResponse(f"unsupported content-encoding {encoding!r}"))

    def __aiter__(self) -> StreamReply:
        return self

    async def __anext__(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some); raises the
        connection's error once the bytes before it are read."""
        conn = self._conn
        while True:
            chunks = conn._chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                conn._size = 0
                if conn.paused and not conn.closed and conn.transport is not None:
                    conn.paused = False
                    conn.transport.resume_reading()
                if self._decoder is not None and data:
                    try:
                        data = self._decoder.decompress(data)
                    except zlib.error as exc:
                        conn._fail(BadResponse(f"invalid compressed body: {exc}"))
                        continue
                if data:
                    return data
            elif conn.done:
                rest = self._decoder.flush() if self._decoder is not None else b""
                self._decoder = None
                if rest:
                    return rest
                raise StopAsyncIteration
            elif conn.error is not None:
                raise conn.error
            else:
                waiter = asyncio.get_running_loop().create_future()
                conn._waiter = waiter
                await waiter

    async def relay(self, on_data: Callable[[bytes], bool]) -> None:
        """Hand the rest of the body to `on_data` piece by piece from the connection's own
        callback as it arrives (no task wake-up per piece), until `on_data` returns False
        (it has all it needs) or the body ends; raises the connection's error as `async
        for` would, once the pieces before it were handed over."""
        conn = self._conn
        push = on_data if self._decoder is None else self._decoding(on_data)
        chunks = conn._chunks
        if chunks:
            data = b"".join(chunks)
            chunks.clear()
            conn._size = 0
            if not push(data):
                return
        if conn.paused and not conn.closed and conn.transport is not None:
            conn.paused = False
            conn.transport.resume_reading()
        loop = asyncio.get_running_loop()
        conn._push = push
        try:
            while conn._push is not None and not conn.done and conn.error is None:
                waiter = loop.create_future()
                conn._waiter = waiter
                await waiter
        finally:
            conn._push = None
            if conn._held_by is not None:  # what follows (the body's end) is not relayed
                conn._held_by = None
                if not conn.closed and conn.transport is not None:
                    conn.transport.resume_reading()
        if conn.error is not None and not conn.done:
            raise conn.error
        if conn.done and self._decoder is not None:
            rest = self._decoder.flush()
            self._decoder = None
            if rest:
                on_data(rest)

    def _decoding(self, on_data: Callable[[bytes], bool]) -> Callable[[bytes], bool]:
        conn, decoder = self._conn, self._decoder

        def push(data: bytes) -> bool:
            try:
                data = decoder.decompress(data)
            except zlib.error as exc:
                conn._fail(BadResponse(f"invalid compressed body: {exc}"))
                return False
            return not data or on_data(data)

        return push

    def hold(self, until: asyncio.Future[None]) -> None:
        """Stop reading the socket until `until` is done (the reader's consumer is full),
        so TCP flow control holds the upstream back."""
        conn = self._conn
        if conn._held_by is until or conn.closed or conn.transport is None:
            return
        conn._held_by = until
        conn.transport.pause_reading()

        def resume(_: asyncio.Future[None]) -> None:
            if conn._held_by is until:
                conn._held_by = None
                if not conn.closed and conn.transport is not None:
                    conn.transport.resume_reading()

        until.add_done_callback(resume)

    async def read(self, limit: int) -> bytes:
        """The rest of the body, up to `limit` bytes (an error answer's body)."""
        kept: list[bytes] = []
        size = 0
        async for data in self:
            kept.append(data)
            size += len(data)
            if size >= limit:
                break
        return b"".join(kept)[:limit]

    def close(self, *, finished: bool = False) -> None:
        """Give the connection back (body read to its end, or `finished`: the reader has
        all it needs and the rest is drained in the background) or close it (a stream left
        before its end)."""
        if not self.closed:
            self.closed = True
            self._client._end_stream(self._conn, finished)


class _DeflateDecoder:
    """`deflate` as servers send it: zlib-wrapped, or raw as some do (told apart by the
    first byte, as aiohttp does)."""

    def __init__(self) -> None:
        self._inner: Any = None

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            wrapped = (data[0] & 0x0F) == 8
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        return bytes(self._inner.decompress(data))

    def flush(self) -> bytes:
        return bytes(self._inner.flush()) if self._inner is not None else b""


class _Target:
    """What a URL resolves to, computed once per URL."""

    __slots__ = ("head", "key")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        self.key = (scheme, parts.hostname, port)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        default = port == (443 if scheme == "https" else 80)
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        host_header = host if default else f"{host}:{port}"
        self.head = f"POST {path} HTTP/1.1\r\nhost: {host_header}\r\n"


SKIPPED_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})


class H1Client:
    """Keep-alive connections of one event loop, by (scheme, host, port)."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None
        self._inflight: dict[_Connection, float] = {}  # exchange in flight -> its deadline
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = inf
        self.closed = False

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            target = _Target(url)
            if len(self._targets) < 1024:
                self._targets[url] = target
        return target

    async def _send(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        timeout: float,
        start: Callable[[_Connection, bytes], Awaitable[_T]],
    ) -> tuple[_Connection, _T]:
        """`start(connection, request)` on a pooled or new connection, within `timeout` s,
        the connection watched for its deadline (the caller stops watching it)."""
        if self.closed:
            raise RuntimeError("the HTTP client is closed")
        target = self._target(url)
        lines = [target.head]
        for name, value in headers.items():
            if name.lower() not in SKIPPED_HEADERS:
                lines.append(f"{name}: {value}\r\n")
        lines.append(f"content-length: {len(body)}\r\n\r\n")
        request = "".join(lines).encode("latin-1") + body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            conn = self._reuse(target.key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(target.key, deadline - loop.time())
            self._watch(conn, deadline, loop)
            try:
                return conn, await start(conn, request)
            except Disconnected:
                self._inflight.pop(conn, None)
                if reused and conn.received == 0 and loop.time() < deadline:
                    continue  # an idle connection the server had closed; try a new one
                raise
            except BaseException:
                self._inflight.pop(conn, None)
                conn.close()  # cancelled, failed or overdue mid-reply: never reused
                raise

    async def post(
        self, url: str, headers: dict[str, str], body: bytes, *, timeout: float, limit: int
    ) -> Reply:
        """POST `body` to `url`; the whole exchange (connect included) within `timeout` s.
        The reply body is kept up to `limit` + 1 bytes (more means the answer is too large)."""
        conn, reply = await self._send(
            url, headers, body, timeout, lambda conn, request: conn.exchange(request, limit)
        )
        self._inflight.pop(conn, None)
        self._release(conn)
        return reply

    async def stream(
        self, url: str, headers: dict[str, str], body: bytes, *, timeout: float
    ) -> StreamReply:
        """POST `body` to `url` and return once the reply's head arrived; its body is read
        piece by piece from the StreamReply, which the caller closes. The whole exchange,
        the last byte of the body included, within `timeout` s."""
        conn, _ = await self._send(url, headers, body, timeout, _Connection.open_stream)
        return StreamReply(self, conn)

    def _end_stream(self, conn: _Connection, finished: bool) -> None:
        """A stream's reader is done with `conn`: back to the pool when its body was read
        to the end, whole, or (`finished`) once the rest of it has been drained, within the
        stream's deadline."""
        whole = conn.done and not conn._chunks and conn.error is None
        if not whole and finished and conn.error is None and not conn.closed:
            conn.drain(lambda ok: self._drained(conn, ok))
            return
        self._drained(conn, whole)

    def _drained(self, conn: _Connection, ok: bool) -> None:
        self._inflight.pop(conn, None)
        conn.active = False
        if ok and conn._keep_alive:
            self._release(conn)
        else:
            conn.close()

    # -- deadlines: one timer for every exchange in flight ----------------------------------

    def _watch(self, conn: _Connection, deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        self._inflight[conn] = deadline
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._sweep, loop)
            self._timer_at = deadline

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, inf
        now = loop.time()
        overdue = [conn for conn, deadline in self._inflight.items() if deadline <= now]
        for conn in overdue:
            del self._inflight[conn]
            conn.expire()
        if self._inflight:
            self._timer_at = min(self._inflight.values())
            self._timer = loop.call_at(self._timer_at, self._sweep, loop)

    def _reuse(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_ok = time.monotonic() - IDLE_SECONDS
        while idle:
            conn = idle.pop()  # the most recently used first
            if not conn.closed and conn.idle_since >= oldest_ok:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        if conn.closed or self.closed:
            conn.close()
            return
        idle = self._idle.setdefault(conn.key, deque())
        if len(idle) >= MAX_IDLE_PER_HOST:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(self, key: tuple[str, str, int], timeout: float) -> _Connection:
        if timeout <= 0:
            raise TimeoutError
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        context: Any = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(min(timeout, DEFAULT_CONNECT_TIMEOUT)):
                _, conn = await loop.create_connection(
                    lambda: _Connection(key),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context else None,
                )
        except TimeoutError:
            raise ConnectFailed(f"cannot connect to {host}:{port}: timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc}") from None
        return conn

    def close(self) -> None:
        """Close every idle connection; the client takes no more requests (those in flight
        keep their deadlines)."""
        self.closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
