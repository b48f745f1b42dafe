"""The gateway's own HTTP/1.1 server (`gateway.server: lean`, the default for one process).

uvicorn spent about a quarter of the gateway's CPU per request at saturation: per-header
regular expressions, a keep-alive timer per request, the head and the body written in two
system calls, a proxy-headers middleware. This server runs the same ASGI app with less:
httptools parses, each request's body is read whole (up to a bound) before the app is called,
the head goes out with the first body bytes in one write, and one timer per second closes
idle connections for all of them.

What it does, as a client of it would expect:
- HTTP/1.1 keep-alive and HTTP/1.0; pipelined requests answered in order; `Expect:
  100-continue`; `Connection: close` either way;
- a body over the bound gets 413 before it is read, a malformed request 400, a head over 64 KiB
  431, a head not complete within the header timeout or a request within the read timeout
  408; each closes the connection; every error body is the OpenAI error JSON the gateway
  answers with;
- at most `max_connections` open connections: past it a new one gets a fast 503 (counted,
  logged once per episode) and the clients already in keep being served; an idle connection
  closes after the keep-alive time, which only a request resets (bytes such as bare CRLFs
  do not);
- responses framed by content-length when the app gives one or sends one body, chunked
  otherwise; none for HEAD, 204 and 304; write flow control for streams;
- a client that leaves: `receive()` gives `http.disconnect` and later sends are dropped;
- an app that raises: 500 if nothing was sent yet (the traceback logged), else the connection
  is closed so the client cannot take a cut answer for a whole one;
- SIGINT or SIGTERM: stop accepting, close idle connections, let requests in flight finish
  (up to the grace period), then the lifespan's shutdown (which flushes telemetry).

It does not do TLS, HTTP/2 or WebSockets (the gateway serves none of them; put a TLS proxy in
front), nor several worker processes: `--workers N` runs uvicorn's supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
import weakref
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

from quality_gates.gateway._wire import ApiError

log = logging.getLogger("quality_gates.gateway.server")

Message = dict[str, Any]
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Message]], Any], Awaitable[None]]

MAX_HEAD_BYTES = 64 * 1024
HEADER_TIMEOUT_S = 10.0  # a request head must be complete this long after its first byte
DEFAULT_MAX_CONNECTIONS = 1000
# Every live server of this process, for the connection gauges on /metrics.
SERVERS: weakref.WeakSet[LeanServer] = weakref.WeakSet()
MAX_PIPELINED = 2  # requests parsed ahead of the one being answered, before reading pauses
ASGI = {"version": "3.0", "spec_version": "2.3"}
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_NO_BODY_STATUS = frozenset({204, 304})


def _nothing() -> None:
    """Nothing to stop."""


def watch_disconnect(receive: Any, on_left: Callable[[], None]) -> Callable[[], None]:
    """Call `on_left` if the client disconnects while its answer is being made; returns the
    function that stops watching. The lean server offers a callback on the connection (no
    task per request); any other ASGI server is watched by a task reading `receive()`."""
    watch = getattr(getattr(receive, "__self__", None), "watch_disconnect", None)
    if watch is not None:
        return watch(on_left)  # type: ignore[no-any-return]

    async def reader() -> None:
        # After the whole body an ASGI server's receive() waits for the disconnect; anything
        # else (a caller that is not a server) means there is nothing to watch.
        if (await receive())["type"] == "http.disconnect":
            on_left()

    watcher = asyncio.get_running_loop().create_task(reader())

    def stop() -> None:
        watcher.cancel()

    return stop


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise RuntimeError(f"invalid HTTP status {status!r}")
        line = b"HTTP/1.1 %d \r\n" % status
    return line


class _Clock:
    """The Date header, formatted once per second."""

    __slots__ = ("header", "second")

    def __init__(self) -> None:
        self.second = -1
        self.header = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.header = b"date: %s\r\n" % formatdate(now, usegmt=True).encode()
        return self.header


def _error_bytes(status: int, message: str, code: str) -> bytes:
    """A whole answer that closes the connection, for errors found before the app runs."""
    body = ApiError(status, message, code=code).body()
    return (
        _status_line(status) + b"content-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % len(body) + body
    )


OVER_LIMIT_ANSWER = _error_bytes(
    503, "the gateway is at its connection limit; retry shortly", "connection_limit"
).replace(b"\r\n\r\n", b"\r\nretry-after: 1\r\n\r\n", 1)


class _Request:
    """One parsed request: what the app's scope and receive() need."""

    __slots__ = ("body", "keep_alive", "scope")

    def __init__(self, scope: dict[str, Any], body: bytes, keep_alive: bool) -> None:
        self.scope = scope
        self.body = body
        self.keep_alive = keep_alive


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and answers them one at a time, in order."""

    def __init__(self, server: LeanServer) -> None:
        self.server = server
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: Any = None
        self.local: Any = None
        self.pending: deque[_Request] = deque()
        self.busy = False  # a request is with the app
        self.closed = False
        self.close_after = False  # answer the request in flight, then close
        self.last_active = self.loop.time()
        self.reading_since: float | None = None  # a request's head or body is arriving
        self.disconnected: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None  # set while writing is paused
        self.reading_paused = False
        self.task: asyncio.Task[None] | None = None  # answering; held so it is not collected
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._head_bytes = 0
        self._in_head = False  # between a request's first byte and the end of its head
        self._raw_head = 0  # bytes fed while the head was still incomplete
        self._begun = 0  # requests begun on this connection
        self._close_after_this = False  # this request's framing forbids another after it
        self._body_bytes = 0
        self._rejected = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if len(server.connections) >= server.max_connections:
            # Past the bound: a fast 503, so the clients already served keep their file
            # descriptors and the load balancer tries elsewhere.
            self._rejected = self.closed = True
            server.over_limit()
            transport.write(OVER_LIMIT_ANSWER)  # type: ignore[attr-defined]
            transport.close()
            return
        self.client = transport.get_extra_info("peername")
        self.local = transport.get_extra_info("sockname")
        server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self.pending.clear()
        if self.disconnected is not None and not self.disconnected.done():
            self.disconnected.set_result(None)
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        if self.writable is None or self.writable.done():
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        # Bytes alone are no activity (bare CRLFs between requests would otherwise hold an
        # idle connection open for good): a request's start is (on_message_begin).
        begun = self._begun
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An Upgrade (WebSocket, h2c) is not served: the request is answered as plain
            # HTTP/1.1 and the connection closed after it. What follows is not HTTP/1.1, so
            # it is not read (the parser would take it for new requests).
            self.close_after = True
            self._rejected = True
            if self.transport is not None:
                self.transport.pause_reading()
            return
        except httptools.HttpParserError as exc:
            if not self._rejected:
                detail = str(exc) or type(exc).__name__
                self.reject(400, f"malformed HTTP request: {detail}", "bad_request")
            return
        if self._in_head and begun == self._begun and not self._rejected:
            # httptools calls on_header only once a line ends: one endless header line is
            # counted here, by the reads that fell wholly inside one incomplete head (a read
            # that began another request holds pipelined requests besides this head's start).
            self._raw_head += len(data)
            if self._raw_head > MAX_HEAD_BYTES:
                self.reject(
                    431, f"the request head is over {MAX_HEAD_BYTES} bytes", "head_too_large"
                )

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._begun += 1
        self._close_after_this = False
        self.last_active = self.loop.time()
        self._url = []
        self._headers = []
        self._body = []
        self._head_bytes = 0
        self._in_head = True
        self._raw_head = 0
        self._body_bytes = 0
        self.reading_since = self.last_active

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_bytes += len(url)
        if self._head_bytes > MAX_HEAD_BYTES:
            self.reject(431, f"the request head is over {MAX_HEAD_BYTES} bytes", "head_too_large")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a chunked body's trailer: never taken as a request header
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            self.reject(431, f"the request head is over {MAX_HEAD_BYTES} bytes", "head_too_large")
            return
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._rejected:
            return
        limit = self.server.max_body
        expect = upgrade = has_body = False
        for name, value in self._headers:
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    self.reject(413, f"the body is over {limit} bytes", "body_too_large")
                    return
                has_body = has_body or value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
                if self.parser.get_http_version() == "1.0":
                    # RFC 9112 6.1: a 1.0 message with Transfer-Encoding ends the connection
                    # (its framing is not to be trusted for a next request).
                    self._close_after_this = True
            elif name == b"upgrade":
                upgrade = True
            elif name == b"expect" and value.lower() == b"100-continue":
                expect = True
        if upgrade and has_body:
            # httptools would skip the body of an Upgrade request and read it as requests.
            self.reject(400, "an Upgrade request with a body is not served", "bad_request")
            return
        if expect and not self.busy and self.transport and self.parser.get_http_version() == "1.1":
            # Only for the request being answered next: an interim answer between the
            # chunks of an earlier one would corrupt it (unsent, the client sends anyway).
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._rejected:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.server.max_body:
            limit = self.server.max_body
            self.reject(413, f"the body is over {limit} bytes", "body_too_large")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._rejected:
            return
        self.reading_since = None
        raw = b"".join(self._url)
        try:
            url = httptools.parse_url(raw)
        except httptools.HttpParserInvalidURLError:
            self.reject(400, f"invalid request target {raw[:200]!r}", "bad_request")
            return
        raw_path = url.path or b"/"
        scope = {
            "type": "http",
            "asgi": ASGI,
            "http_version": self.parser.get_http_version(),
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "method": self.parser.get_method().decode("ascii"),
            "root_path": "",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": self._headers,
        }
        if self.server.state:
            scope["state"] = self.server.state.copy()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = _Request(
            scope, body, self.parser.should_keep_alive() and not self._close_after_this
        )
        if self.busy:
            self.pending.append(request)
            if len(self.pending) >= MAX_PIPELINED and not self.reading_paused:
                self.reading_paused = True
                if self.transport is not None:
                    self.transport.pause_reading()
            return
        self.busy = True
        self.task = self.loop.create_task(self.answer(request))

    # -- answering -----------------------------------------------------------------------

    def reject(self, status: int, message: str, code: str) -> None:
        """Answer an error found while reading a request, then close: what follows on the
        connection cannot be trusted. The requests before it are answered first, in order."""
        self._rejected = True
        count = getattr(self.server.app, "count_refusal", None)
        if count is not None:  # the app's metrics count every answer, these included
            count(status, code)
        answer = _error_bytes(status, message, code)
        if self.busy:
            self.pending.append(_Request({}, answer, False))  # written in its turn
            return
        self._write_and_close(answer)

    def _write_and_close(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.transport.close()

    def close_if_idle(self) -> None:
        """Close the connection if no request is being answered, else after the answer."""
        if self.busy or self.transport is None:
            self.close_after = True
            return
        self.transport.close()

    async def answer(self, request: _Request) -> None:
        """Run the app for `request`, then the next pipelined one, if any."""
        transport = self.transport
        assert transport is not None
        while True:
            keep_alive = await self._cycle(request)
            if self.closed:
                return
            if not keep_alive or (self.close_after and not self.pending):
                transport.close()
                return
            self.last_active = self.loop.time()
            if not self.pending:
                self.busy = False
                if self.reading_paused:
                    self.reading_paused = False
                    transport.resume_reading()
                return
            request = self.pending.popleft()
            if not request.scope:  # the error answer of a request that could not be read
                self._write_and_close(request.body)
                return

    async def _cycle(self, request: _Request) -> bool:
        """One request through the app; True if the connection may serve another."""
        cycle = _Cycle(self, request)
        transport = self.transport
        assert transport is not None
        scope = request.scope
        try:
            await self.server.app(scope, cycle.receive, cycle.send)
        except asyncio.CancelledError:
            transport.close()  # cut at the end of a stop's grace period
            raise
        except Exception:
            log.exception("the app failed on %s %s", scope["method"], scope["path"])
            if not cycle.started and not self.closed:
                transport.write(_error_bytes(500, "internal server error", "internal_error"))
            return False
        if not cycle.complete:
            if cycle.started:
                log.error("the app's answer to %s %s ended early", scope["method"], scope["path"])
            elif not self.closed:
                log.error("the app returned no answer to %s %s", scope["method"], scope["path"])
                transport.write(_error_bytes(500, "internal server error", "internal_error"))
            return False  # closing tells the client a cut answer is incomplete
        return request.keep_alive and cycle.keep_alive


def _cut_slow_reader(conn: _Connection) -> None:
    """A client whose buffer stayed full for the read timeout: cut it."""
    log.warning("a client read nothing for %g s; connection cut", conn.server.read_timeout)
    if conn.transport is not None:
        conn.transport.abort()


class _Cycle:
    """The receive and send of one request."""

    __slots__ = (
        "chunked",
        "complete",
        "conn",
        "delivered",
        "head",
        "head_only",
        "keep_alive",
        "left",
        "request",
        "started",
        "timed",
    )

    def __init__(self, conn: _Connection, request: _Request) -> None:
        self.conn = conn
        self.request = request
        self.delivered = False
        self.started = False
        self.complete = False
        self.keep_alive = True
        self.head: bytes | None = None  # written with the first body bytes
        self.head_only = request.scope["method"] == "HEAD"
        self.chunked = False
        self.left: int | None = None  # body bytes still due under content-length
        self.timed: asyncio.Future[None] | None = None  # a full buffer write_chunk timed

    def watch_disconnect(self, on_left: Callable[[], None]) -> Callable[[], None]:
        """Call `on_left` when the client's connection closes (before `complete`); returns
        the function that stops watching. A callback on the connection, not a task."""
        conn = self.conn
        if conn.closed:
            conn.loop.call_soon(on_left)
            return _nothing
        if conn.disconnected is None or conn.disconnected.done():
            conn.disconnected = conn.loop.create_future()
        future = conn.disconnected

        def fire(_: asyncio.Future[None]) -> None:
            if not self.complete:
                on_left()

        def stop() -> None:
            future.remove_done_callback(fire)

        future.add_done_callback(fire)
        return stop

    async def receive(self) -> Message:
        if not self.delivered:
            self.delivered = True
            return {"type": "http.request", "body": self.request.body, "more_body": False}
        conn = self.conn
        if not conn.closed and not self.complete:
            if conn.disconnected is None or conn.disconnected.done():
                conn.disconnected = conn.loop.create_future()
            await asyncio.shield(conn.disconnected)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self._start(message["status"], message.get("headers", ()))
            self.started = True  # after the checks: a refused head still gets a 500
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.started:
            raise RuntimeError("http.response.body sent before http.response.start")
        if self.complete:
            raise RuntimeError("http.response.body sent after the answer was complete")
        conn = self.conn
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        head = self.head
        if head is not None:
            self.head = None
            if self.left is None and not self.chunked:
                if more and self.request.scope["http_version"] == "1.0":
                    self.keep_alive = False  # HTTP/1.0 has no chunks: the close ends the body
                elif more:
                    self.chunked = True
                    head += b"transfer-encoding: chunked\r\n"
                else:  # one body: its length (for HEAD, the length a GET would have)
                    self.left = len(body)
                    head += b"content-length: %d\r\n" % self.left
            if not (self.keep_alive and self.request.keep_alive) or (
                conn.close_after and not conn.pending
            ):
                self.keep_alive = False  # said: so the connection closes after this answer
                head += b"connection: close\r\n"
            head += b"\r\n"
        if self.head_only:
            body = b""
        elif self.chunked:
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (
                b"" if more else b"0\r\n\r\n"
            )
        elif self.left is not None:
            self.left -= len(body)
            if self.left < 0:
                raise RuntimeError("the response body is longer than its content-length")
        if not more:
            self.complete = True
            if self.left and not self.head_only:
                raise RuntimeError("the response body is shorter than its content-length")
        if conn.closed:
            return  # the client left: nothing to write to (receive() says so)
        transport = conn.transport
        assert transport is not None
        if head is not None:
            transport.write(head + body if body else head)
        elif body:
            transport.write(body)
        writable = conn.writable
        if writable is not None and not writable.done():
            # A client that stops reading must not hold the answer (and its upstream) forever.
            try:
                async with asyncio.timeout(conn.server.read_timeout):
                    await asyncio.shield(writable)
            except TimeoutError:
                _cut_slow_reader(conn)

    @property
    def pushable(self) -> bool:
        """The answer is under way in chunks: write_chunk may add to it."""
        return self.chunked and self.head is None and not self.complete and not self.head_only

    def write_chunk(self, body: bytes) -> asyncio.Future[None] | None:
        """Write one chunk of a `pushable` answer from a callback (a relay pushing a stream:
        no ASGI send per chunk); returns the future to wait for before the next chunk while
        the client's buffer is full (a client that reads nothing for the read timeout is
        cut, as in send), else None. Dropped once the client left."""
        conn = self.conn
        if conn.closed:
            return None
        transport = conn.transport
        assert transport is not None
        transport.write(b"%x\r\n%s\r\n" % (len(body), body))
        writable = conn.writable
        if writable is None or writable.done():
            return None
        if self.timed is not writable:  # one read-timeout timer per full buffer
            self.timed = writable
            timer = conn.loop.call_later(conn.server.read_timeout, _cut_slow_reader, conn)
            writable.add_done_callback(lambda _: timer.cancel())
        return writable

    def _start(self, status: int, headers: Any) -> None:
        parts = [_status_line(status), self.conn.server.clock.date()]
        lines = 2
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                self.left = int(value)
            elif lower == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
                if not self.chunked:
                    raise RuntimeError(f"unsupported transfer-encoding {value!r}")
                continue  # added back below, once
            elif lower == b"connection" and b"close" in value.lower():
                self.keep_alive = False
                continue
            parts += (name, b": ", value, b"\r\n")
            lines += 1
        if self.chunked:
            self.left = None
            parts.append(b"transfer-encoding: chunked\r\n")
            lines += 1
        if status in _NO_BODY_STATUS:
            self.head_only = True
            self.left = 0  # no body and no length
        head = b"".join(parts)
        if head.count(b"\n") != lines or head.count(b"\r") != lines:
            raise RuntimeError("a response header name or value holds a line break")
        self.head = head


class LeanServer:
    """Serves one ASGI app on a bound socket until stopped."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int = 4 * 1024 * 1024,
        keep_alive: float = 5.0,
        read_timeout: float = 30.0,
        header_timeout: float = HEADER_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        grace: float = 30.0,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.keep_alive = keep_alive
        self.read_timeout = read_timeout
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.refused = 0  # connections answered 503 past max_connections
        self._at_limit_since: float | None = None
        self._refused_before = 0
        self.grace = grace
        SERVERS.add(self)
        self.clock = _Clock()
        self.connections: set[_Connection] = set()
        self.state: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._stop = asyncio.Event()  # bound to a loop at its first wait (3.10+)
        self.listening = asyncio.Event()

    def stop(self) -> None:
        """Begin a graceful stop (call it from the server's loop)."""
        self._stop.set()

    async def serve(self, sock: socket.socket) -> None:
        """Run the lifespan's startup, serve until stop(), then drain and shut down."""
        self.loop = asyncio.get_running_loop()
        lifespan = _Lifespan(self.app, self.state)
        await lifespan.startup()
        try:
            server = await self.loop.create_server(
                lambda: _Connection(self), sock=sock, backlog=2048
            )
            sweeper = self.loop.create_task(self._sweep())
            self.listening.set()
            try:
                await self._stop.wait()
            finally:
                sweeper.cancel()
                server.close()
                await self._drain()
        finally:
            await lifespan.shutdown()

    def over_limit(self) -> None:
        """Count a connection refused past the bound; log when the bound is first hit."""
        self.refused += 1
        if self._at_limit_since is None:
            self._at_limit_since = self.loop.time()
            self._refused_before = self.refused - 1
            log.error(
                "connection limit reached (%d open, gateway.max_connections): new connections "
                "get 503 until some close",
                self.max_connections,
            )

    async def _sweep(self) -> None:
        """Once a second: close idle keep-alive connections, 408 slow requests and heads."""
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            for conn in list(self.connections):
                if conn.busy or conn.closed:
                    continue
                if conn.reading_since is not None:
                    waited = now - conn.reading_since
                    if conn._in_head and waited > self.header_timeout:
                        conn.reject(
                            408,
                            f"the request head was not complete within {self.header_timeout:g} s",
                            "request_timeout",
                        )
                    elif waited > self.read_timeout:
                        conn.reject(
                            408,
                            f"the request was not complete within {self.read_timeout:g} s",
                            "request_timeout",
                        )
                elif now - conn.last_active > self.keep_alive:
                    conn.close_if_idle()
            if self._at_limit_since is not None and len(self.connections) < self.max_connections:
                log.warning(
                    "below the connection limit again after %.1f s; %d connection(s) refused",
                    now - self._at_limit_since,
                    self.refused - self._refused_before,
                )
                self._at_limit_since = None

    async def _drain(self) -> None:
        """Close idle connections; let answers in flight finish within the grace period."""
        deadline = self.loop.time() + self.grace
        while True:
            for conn in list(self.connections):
                conn.close_if_idle()
            if not self.connections or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        left, cut = len(self.connections), []
        for conn in list(self.connections):
            if conn.task is not None and not conn.task.done():
                conn.task.cancel()
                cut.append(conn.task)
            if conn.transport is not None:
                conn.transport.abort()
        if cut:  # their clean-up (telemetry, admission) runs before the lifespan's shutdown
            await asyncio.wait(cut, timeout=5.0)
        if left:
            log.warning("%d connection(s) cut at the end of the grace period", left)


class StartupFailed(RuntimeError):
    """The app's lifespan startup (or shutdown) reported a failure."""


class _Lifespan:
    """The ASGI lifespan protocol: startup before serving, shutdown after."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI, "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self.outbox.put)
        except BaseException as exc:
            await self.outbox.put({"type": "lifespan.failed", "exception": exc})

    async def _exchange(self, kind: str) -> None:
        await self.inbox.put({"type": f"lifespan.{kind}"})
        reply = await self.outbox.get()
        if reply["type"] == f"lifespan.{kind}.complete":
            return
        if reply["type"] == "lifespan.failed":  # the app raised without saying so
            log.error("the app's lifespan %s failed", kind, exc_info=reply["exception"])
        else:
            log.error("the app's lifespan %s failed:\n%s", kind, reply.get("message", ""))
        raise StartupFailed(f"the app's lifespan {kind} failed (see the log lines above)")

    async def startup(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self._exchange("startup")

    async def shutdown(self) -> None:
        if self.task is None or self.task.done():
            return
        await self._exchange("shutdown")
        with contextlib.suppress(Exception):
            await self.task


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp, sock: socket.socket, *, start_timeout: float = 20.0, stop_timeout: float = 30.0
) -> AsyncIterator[LeanServer]:
    """Serve `app` on `sock` in the running loop for the `async with` body (tests, drills):
    listening on entry (else StartupFailed, or TimeoutError after `start_timeout`), drained
    on exit."""
    server = LeanServer(app)
    task = asyncio.get_running_loop().create_task(server.serve(sock))
    listening = asyncio.ensure_future(server.listening.wait())
    await asyncio.wait({task, listening}, timeout=start_timeout, return_when=FIRST_COMPLETED)
    if not listening.done():
        listening.cancel()
        if task.done():
            task.result()  # the startup's error
            raise StartupFailed("the server stopped before it listened")
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise TimeoutError(f"the server did not start in {start_timeout:g} s")
    try:
        yield server
    finally:
        server.stop()
        await asyncio.wait_for(task, stop_timeout)


class ConnectionsCollector:
    """`qg_gateway_connections_open`, `qg_gateway_connections_limit` and
    `qg_gateway_connections_refused_total` of the lean servers of this process (none under
    uvicorn or granian, which keep their own)."""

    def describe(self) -> list[object]:
        """Nothing up front (the registry calls collect)."""
        return []

    def collect(self) -> Iterator[object]:
        """The servers' counts now."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        servers = list(SERVERS)
        if not servers:
            return
        yield GaugeMetricFamily(
            "qg_gateway_connections_open",
            "Client connections open",
            value=sum(len(s.connections) for s in servers),
        )
        yield GaugeMetricFamily(
            "qg_gateway_connections_limit",
            "gateway.max_connections",
            value=sum(s.max_connections for s in servers),
        )
        yield CounterMetricFamily(
            "qg_gateway_connections_refused",
            "Connections answered 503 at the connection limit",
            value=sum(s.refused for s in servers),
        )


FD_RESERVE = 128  # descriptors kept for the store, the telemetry pipes, logs and files


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's soft file-descriptor limit to its hard limit (as nginx's
    worker_rlimit_nofile would); returns (before, after)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


def default_max_connections(fd_limit: int, max_inflight: int) -> int:
    """Client connections that fit in `fd_limit` descriptors, leaving one per upstream call
    in flight and FD_RESERVE for the rest."""
    return max(16, fd_limit - FD_RESERVE - max_inflight)


def run(
    app: ASGIApp,
    sock: socket.socket,
    *,
    max_body: int,
    grace: float = 30.0,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    header_timeout: float = HEADER_TIMEOUT_S,
) -> None:
    """Serve `app` on `sock` under uvloop until SIGINT or SIGTERM, then drain."""
    import uvloop

    server = LeanServer(
        app,
        max_body=max_body,
        grace=grace,
        max_connections=max_connections,
        header_timeout=header_timeout,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        try:
            await server.serve(sock)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    uvloop.run(main())
