"""A lean HTTP/1.1 client for whole (non-streaming) answers: keep-alive connections per
host, responses parsed by httptools.

The gateway spends most of its own time per request in the upstream call; aiohttp's request
machinery (tracing hooks, cookie jar, payload registry, per-request timers) cost about a third
of the gateway's Python time per request here (bench/gateway.py). This client does only what
a provider call needs: one POST with a body, a status, headers and a bounded body back, within
one deadline. Streams keep going through aiohttp (`HttpChatProvider.stream`).

Errors it raises, which `_http.transport_error` turns into the taxonomy's:
- `ConnectFailed` (an OSError): the TCP or TLS connection could not be made;
- `BadResponse`: the reply is not valid HTTP/1.1;
- `Disconnected` (an OSError): the server closed the connection before the reply ended;
- `TimeoutError`: the deadline passed.

Deadlines cost no timer per request: the client keeps the deadline of each exchange in
flight and one timer, set for the earliest of them, which fails the overdue exchanges when it
fires (an asyncio.timeout per request cost about 4% of the gateway's CPU here).

A connection that was reused from the pool and closed by the server before it sent a single
byte back is retried once on a new connection, as keep-alive clients do (the server closed an
idle connection while the request was on its way; it did not see the request).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from math import inf
from typing import Any
from urllib.parse import urlsplit

import httptools

IDLE_SECONDS = 15.0  # an idle connection older than this is closed, not reused
MAX_IDLE_PER_HOST = 256
DEFAULT_CONNECT_TIMEOUT = 10.0


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
    """One keep-alive connection and the reply it is reading."""

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reset(None, 0)

    def _reset(self, waiter: asyncio.Future[None] | None, limit: int) -> None:
        self._waiter = waiter
        self._limit = limit
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self.cut = False  # the body went over the limit; the rest was not kept
        self.received = 0
        self.done = False
        self._headers_done = False
        self._headers_at = 0.0
        self._status = 0
        self._keep_alive = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self._waiter is None:  # bytes while idle: the connection cannot be trusted
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
        if (
            exc is None
            and self._waiter is not None
            and self._headers_done
            and "content-length" not in self._headers
            and "transfer-encoding" not in self._headers
        ):
            self.on_message_complete()  # a body delimited by the end of the connection
            return
        if self._waiter is not None and not self.done:
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

    def on_body(self, body: bytes) -> None:
        if self.cut:
            return
        self._size += len(body)
        self._chunks.append(body)
        if self._size > self._limit:
            self.cut = True  # enough to know it is too large: stop here, drop the connection
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def on_message_complete(self) -> None:
        self.done = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- use -----------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

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
        self._reset(waiter, limit)
        self.transport.write(request)
        await waiter
        body = b"".join(self._chunks)
        encoding = self._headers.get("content-encoding", "")
        if encoding and not self.cut:
            body = _decoded(body, encoding)
        if self.cut or not self._keep_alive:
            self.close()
        self._waiter = None
        return Reply(self._status, self._headers, body[: limit + 1], self._headers_at)


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

    async def post(
        self, url: str, headers: dict[str, str], body: bytes, *, timeout: float, limit: int
    ) -> Reply:
        """POST `body` to `url`; the whole exchange (connect included) within `timeout` s.
        The reply body is kept up to `limit` + 1 bytes (more means the answer is too large)."""
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
                reply = await conn.exchange(request, limit)
            except Disconnected:
                if reused and conn.received == 0 and loop.time() < deadline:
                    continue  # an idle connection the server had closed; try a new one
                raise
            except BaseException:
                conn.close()  # cancelled, failed or overdue mid-reply: never reused
                raise
            finally:
                self._inflight.pop(conn, None)
            self._release(conn)
            return reply

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
