"""A lean HTTP/1.1 server on asyncio and httptools, made for the simulator.

Why not aiohttp.web or an ASGI server: the simulator must never bound a gateway benchmark
(>= 5,000 req/s from one process, BENCHMARKS.md), and it must misbehave on purpose: answer
nothing, reset the connection, cut a chunked body in the middle. Here a handler that needs no
delay answers synchronously, without a task, and every fault is one call on the connection.

Keep-alive and pipelining are supported (requests on one connection are answered in order);
`Expect: 100-continue` is honoured; responses are Content-Length or chunked.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any, cast

import httptools

log = logging.getLogger("quality_gates.simulator")

Handler = Callable[["Request", "Responder"], Awaitable[None] | None]
MAX_QUEUED = 64  # pipelined requests held before reading pauses
_REASONS = {s.value: s.phrase for s in HTTPStatus} | {529: "Overloaded"}
_STATUS_LINES = {
    code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in _REASONS.items()
}
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class Request:
    """One parsed request; header names are lower case."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "query")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class Responder:
    """Writes one response (whole or chunked), or breaks the connection on purpose."""

    __slots__ = ("_conn", "_keep_alive", "chunked", "finished", "started")

    def __init__(self, conn: HttpConnection, keep_alive: bool) -> None:
        self._conn = conn
        self._keep_alive = keep_alive
        self.started = False
        self.finished = False
        self.chunked = False

    @property
    def closed(self) -> bool:
        """The client went away (or the connection was broken)."""
        return self._conn.closed

    def _head(self, status: int, content_type: str, headers: Iterable[tuple[str, str]]) -> bytes:
        line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        if not self._keep_alive:
            extra += "connection: close\r\n"
        return b"%bcontent-type: %b\r\n%b" % (line, content_type.encode(), extra.encode("latin-1"))

    def send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """A whole response with Content-Length."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = self.finished = True
        head = self._head(status, content_type, headers)
        self._conn.write(b"%bcontent-length: %d\r\n\r\n%b" % (head, len(body), body))

    def start(
        self, status: int, content_type: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """The head of a chunked response; then `write` pieces and `end`."""
        if self.started:
            raise RuntimeError("response already started")
        self.started = self.chunked = True
        head = self._head(status, content_type, headers)
        self._conn.write(head + b"transfer-encoding: chunked\r\n\r\n")

    async def write(self, data: bytes) -> None:
        """One chunk; waits while the client is not reading."""
        if data and not self.closed:
            self._conn.write(b"%x\r\n%b\r\n" % (len(data), data))
            await self._conn.drain()

    def end(self) -> None:
        """The last chunk."""
        if not self.finished and not self.closed:
            self._conn.write(b"0\r\n\r\n")
        self.finished = True

    def cut(self) -> None:
        """Close mid-body: the client sees a truncated response."""
        self.finished = True
        self._conn.close()

    def reset(self) -> None:
        """Reset the connection (TCP RST) without a byte of answer."""
        self.finished = True
        self._conn.reset()


class HttpConnection(asyncio.Protocol):
    """One client connection: parse requests, hand them to the handler in order."""

    def __init__(self, handler: Handler, connections: set[HttpConnection]) -> None:
        self._handler = handler
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[Request] = deque()
        self._busy: asyncio.Future[None] | None = None
        self._can_write: asyncio.Event | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._reading = True
        self.closed = False

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self)
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._connections.discard(self)
        if self._busy is not None:
            self._busy.cancel()
        if self._can_write is not None:
            self._can_write.set()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, b"protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed HTTP request: {exc}".encode())

    def pause_writing(self) -> None:
        self._can_write = asyncio.Event()

    def resume_writing(self) -> None:
        if self._can_write is not None:
            self._can_write.set()
            self._can_write = None

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        for name, value in self._headers:
            if name.lower() == b"expect" and value.lower() == b"100-continue":
                self.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        path, _, query = self._url.decode("latin-1").partition("?")
        headers = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in self._headers}
        request = Request(
            self._parser.get_method().decode("latin-1"),
            path,
            query,
            headers,
            b"".join(self._body),
            self._parser.should_keep_alive(),
        )
        self._queue.append(request)
        if len(self._queue) > MAX_QUEUED and self._reading and self._transport is not None:
            self._transport.pause_reading()
            self._reading = False
        if self._busy is None:
            self._run()

    # -- dispatch -------------------------------------------------------------------------

    def _run(self) -> None:
        while self._queue and self._busy is None and not self.closed:
            request = self._queue.popleft()
            responder = Responder(self, request.keep_alive)
            try:
                pending = self._handler(request, responder)
            except Exception:
                log.exception("simulator handler failed on %s %s", request.method, request.path)
                self._failed(responder)
                continue
            if pending is None:
                self._after(responder)
                continue
            task = asyncio.ensure_future(pending)
            self._busy = task
            task.add_done_callback(functools.partial(self._done, responder=responder))
        resume = not self._reading and len(self._queue) <= MAX_QUEUED // 2
        if resume and self._transport is not None and not self.closed:
            self._transport.resume_reading()
            self._reading = True

    def _done(self, task: asyncio.Future[None], *, responder: Responder) -> None:
        self._busy = None
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator handler failed", exc_info=task.exception())
            self._failed(responder)
            return
        self._after(responder)
        self._run()

    def _after(self, responder: Responder) -> None:
        if not responder.finished and not self.closed:
            self._failed(responder)
        elif not responder._keep_alive:
            self.close()

    def _failed(self, responder: Responder) -> None:
        if responder.started:
            self.close()
        else:
            responder.send(500, b'{"error": "simulator handler failed"}')

    def _reject(self, status: int, message: bytes) -> None:
        if self._transport is not None and not self.closed:
            reason = _REASONS.get(status, "Error")
            self._transport.write(
                f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\n"
                f"content-length: {len(message)}\r\nconnection: close\r\n\r\n".encode()
                + message
            )
        self.close()

    # -- writing and breaking ---------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes for the client."""
        if self._transport is not None and not self.closed:
            self._transport.write(data)

    async def drain(self) -> None:
        """Wait until the client has read enough to write more."""
        if self._can_write is not None:
            await self._can_write.wait()

    def close(self) -> None:
        """Close after what was written (FIN)."""
        if self._transport is not None and not self.closed:
            self.closed = True
            self._transport.close()

    def reset(self) -> None:
        """Close with a TCP RST: the client sees 'connection reset by peer'."""
        if self._transport is None or self.closed:
            return
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        self.closed = True
        self._transport.abort()


class HttpServer:
    """A listening socket and its open connections."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self.connections: set[HttpConnection] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._connection,
            host,
            port,
            reuse_address=True,
            backlog=2048,
        )
        sockets: Any = self._server.sockets
        return int(sockets[0].getsockname()[1])

    def _connection(self) -> HttpConnection:
        return HttpConnection(self._handler, self.connections)

    async def close(self) -> None:
        """Stop listening and drop every connection (hung requests included)."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self.connections):
            conn.close()
        await self._server.wait_closed()
        self._server = None
