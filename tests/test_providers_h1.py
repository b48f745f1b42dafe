"""The lean HTTP/1.1 client, whole answers and streams, against raw loopback servers that
answer exactly what each test needs (well-formed, chunked, compressed, cut at awkward bytes,
garbage, slow, silent, endless)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from quality_gates.errors import ConnectionFailed, ProviderTimeout, ServerError, StreamInterrupted
from quality_gates.providers._h1 import (
    STREAM_HIGH_WATER,
    BadResponse,
    ConnectFailed,
    Disconnected,
    H1Client,
)
from quality_gates.providers._http import transport_error
from quality_gates.providers._sse import SseDecoder

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0], headers, body


def _reply(body: bytes, *, extra: str = "", status: str = "200 OK") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/chat?x=1"


@contextlib.asynccontextmanager
async def _served(handler: Handler) -> AsyncIterator[tuple[H1Client, str]]:
    """A loopback server running `handler`, and a client; both closed afterwards."""
    server, url = await _serve(handler)
    client = H1Client()
    try:
        yield client, url
    finally:
        client.close()
        server.close()


def test_keep_alive_reuses_one_connection_and_sends_what_the_adapter_built() -> None:
    seen: list[tuple[str, dict[str, str], bytes]] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                request = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append(request)
            writer.write(_reply(b'{"n": %d}' % len(seen), extra="x-Custom: Yes\r\n"))
            await writer.drain()
        writer.close()

    async def main() -> None:
        async with _served(handler) as (client, url):
            for n in range(1, 4):
                reply = await client.post(
                    url,
                    {"authorization": "Bearer k", "Host": "evil"},
                    b'{"q": 1}',
                    timeout=5,
                    limit=1000,
                )
                assert (reply.status, reply.body) == (200, b'{"n": %d}' % n)
                assert reply.headers["x-custom"] == "Yes"
                assert reply.headers_at > 0

    asyncio.run(main())
    assert connections == 1
    line, headers, body = seen[0]
    assert line == "POST /v1/chat?x=1 HTTP/1.1"
    assert headers["host"].startswith("127.0.0.1:")  # the adapter's Host is not sent twice
    assert headers["authorization"] == "Bearer k"
    assert (headers["content-length"], body) == ("8", b'{"q": 1}')


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
        b'\r\n4\r\n{"a"\r\n4\r\n: 1}\r\n0\r\n\r\n',
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
        b"content-length: %d\r\n\r\n%s"
        % (len(gzip.compress(b'{"a": 1}')), gzip.compress(b'{"a": 1}')),
        b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{"a": 1}',
    ],
    ids=["chunked", "gzip", "until-close"],
)
def test_bodies_are_read_whatever_their_framing(raw: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(raw)
        await writer.drain()
        writer.close()

    async def main() -> bytes:
        async with _served(handler) as (client, url):
            return (await client.post(url, {}, b"{}", timeout=5, limit=1000)).body

    assert asyncio.run(main()) == b'{"a": 1}'


def test_an_idle_connection_the_server_closed_is_replaced_without_an_error() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(_reply(b"{}"))  # keep-alive promised, then closed while idle
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with _served(handler) as (client, url):
            for _ in range(3):
                reply = await client.post(url, {}, b"{}", timeout=5, limit=100)
                assert reply.status == 200
                await asyncio.sleep(0.05)

    asyncio.run(main())
    assert connections == 3


def test_failures_become_the_taxonomys_errors() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SPDY/9 nonsense\r\n\r\n")
        await writer.drain()
        writer.close()

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial')
        await writer.drain()
        writer.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async def run(handler: Handler, timeout: float = 5) -> BaseException:
        async with _served(handler) as (client, url):
            try:
                await client.post(url, {}, b"{}", timeout=timeout, limit=100)
            except Exception as exc:
                return exc
        raise AssertionError("no error")

    async def refused() -> BaseException:
        server, url = await _serve(garbage)
        server.close()
        await server.wait_closed()
        try:
            await H1Client().post(url, {}, b"{}", timeout=5, limit=100)
        except Exception as exc:
            return exc
        raise AssertionError("no error")

    async def main() -> None:
        exc = await run(garbage)
        assert isinstance(exc, BadResponse)
        assert isinstance(transport_error(exc, "p", timeout=5), ServerError)
        exc = await run(cut)
        assert isinstance(exc, Disconnected)
        assert isinstance(transport_error(exc, "p", timeout=5), ConnectionFailed)
        exc = await run(silent, timeout=0.3)
        assert isinstance(exc, TimeoutError)
        assert isinstance(transport_error(exc, "p", timeout=0.3), ProviderTimeout)
        exc = await refused()
        assert isinstance(exc, ConnectFailed)
        error = transport_error(exc, "p", timeout=5)
        assert isinstance(error, ConnectionFailed)
        assert "cannot connect" in str(error)

    asyncio.run(main())


def test_a_body_over_the_limit_is_cut_and_its_connection_dropped() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(_reply(b"x" * 5000))
            await writer.drain()
        writer.close()

    async def main() -> None:
        async with _served(handler) as (client, url):
            for _ in range(2):
                reply = await client.post(url, {}, b"{}", timeout=5, limit=100)
                assert len(reply.body) == 101  # "more than the limit", for the caller to refuse

    asyncio.run(main())
    assert connections == 2


async def _echo_after_delay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each request with its body, after as many seconds as the body says."""
    while True:
        try:
            _, _, body = await _read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            break
        await asyncio.sleep(float(body))
        writer.write(_reply(body))
        await writer.drain()
    writer.close()


def test_a_cancelled_request_never_returns_its_connection_to_the_pool() -> None:
    async def main() -> None:
        async with _served(_echo_after_delay) as (client, url):
            with pytest.raises(TimeoutError):  # answered late, on a connection given up
                await client.post(url, {}, b"0.5", timeout=0.1, limit=100)
            await asyncio.sleep(0.6)
            reply = await client.post(url, {}, b"0", timeout=5, limit=100)
            assert reply.body == b"0"  # not the late answer to the cancelled request

    asyncio.run(main())


def test_each_exchange_in_flight_ends_at_its_own_deadline() -> None:
    """One timer serves every exchange in flight: a later request with an earlier deadline
    must still end on time, and one that is answered in time must not be failed."""

    async def timed(client: H1Client, url: str, wait: str, timeout: float) -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            reply = await client.post(url, {}, wait.encode(), timeout=timeout, limit=100)
        except TimeoutError:
            return "timeout", loop.time() - started
        return reply.body.decode(), loop.time() - started

    async def main() -> None:
        async with _served(_echo_after_delay) as (client, url):
            late = asyncio.create_task(timed(client, url, "30", 0.8))
            await asyncio.sleep(0.05)
            early = asyncio.create_task(timed(client, url, "30", 0.2))
            answered = asyncio.create_task(timed(client, url, "0.4", 5))
            (e_what, e_took), (l_what, l_took), (a_what, a_took) = await asyncio.gather(
                early, late, answered
            )
            assert (e_what, l_what, a_what) == ("timeout", "timeout", "0.4")
            assert 0.15 <= e_took < 0.6, e_took
            assert 0.75 <= l_took < 1.5, l_took
            assert a_took >= 0.35
            reply = await client.post(url, {}, b"0", timeout=5, limit=100)
            assert reply.body == b"0"  # the pool is sound after the failed exchanges

    asyncio.run(main())


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_verifies_the_certificate_against_the_system_trust_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untrusted certificate is refused (ConnectFailed); trusted through SSL_CERT_FILE, as
    OpenSSL reads it, the same server answers."""
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()
            return
        writer.write(_reply(b'{"tls": true}'))
        await writer.drain()
        writer.close()

    async def call() -> bytes | BaseException:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        client = H1Client()
        try:
            reply = await client.post(f"https://127.0.0.1:{port}/", {}, b"{}", timeout=5, limit=100)
            return reply.body
        except Exception as exc:
            return exc
        finally:
            client.close()
            server.close()

    refused = asyncio.run(call())
    assert isinstance(refused, ConnectFailed)
    assert "certificate" in str(refused)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert asyncio.run(call()) == b'{"tls": true}'


# -- the streaming mode --------------------------------------------------------------------

SSE_EVENTS = [b'data: {"n": %d, "text": "caf\xc3\xa9 \\u00e9"}\n\n' % n for n in range(40)]


def _split(data: bytes, sizes: tuple[int, ...]) -> list[bytes]:
    """`data` cut into pieces of the given sizes in turn (awkward boundaries on purpose)."""
    pieces, at, turn = [], 0, 0
    while at < len(data):
        size = sizes[turn % len(sizes)]
        pieces.append(data[at : at + size])
        at, turn = at + size, turn + 1
    return pieces


def _chunked(events: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"


def _stream_head(framing: str, length: int = 0, extra: str = "") -> bytes:
    head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n" + extra
    if framing == "chunked":
        head += "transfer-encoding: chunked\r\n"
    elif framing == "length":
        head += f"content-length: {length}\r\n"
    else:
        head += "connection: close\r\n"
    return (head + "\r\n").encode()


def _sse_reply(framing: str) -> bytes:
    """A whole reply carrying SSE_EVENTS, framed as `framing` says (gzip: chunked too)."""
    body = b"".join(SSE_EVENTS)
    if framing == "gzip":
        head = _stream_head("chunked", extra="content-encoding: gzip\r\n")
        return head + _chunked(_split(gzip.compress(body), (50,)))
    if framing == "chunked":
        return _stream_head("chunked") + _chunked(SSE_EVENTS)
    return _stream_head(framing, len(body)) + body


def _streaming(raw: bytes, sizes: tuple[int, ...], pause: float = 0.0) -> Handler:
    """A server that answers every request on a connection with `raw`, written in pieces of
    `sizes` bytes, flushed one by one (`pause` s apart)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            for piece in _split(raw, sizes):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(pause)
            if b"connection: close" in raw[:200]:
                break
        writer.close()

    return handler


@pytest.mark.parametrize("framing", ["chunked", "length", "until-close", "gzip"])
@pytest.mark.parametrize("sizes", [(1,), (3, 7, 2), (4096,)], ids=["bytewise", "ragged", "whole"])
def test_a_stream_arrives_whole_whatever_its_framing_and_cuts(
    framing: str, sizes: tuple[int, ...]
) -> None:
    """Chunk-size lines, CRLFs, UTF-8 characters and gzip blocks split across reads: the
    pieces put back together are the body, and decode to the same events."""
    body = b"".join(SSE_EVENTS)
    raw = _sse_reply(framing)

    async def main() -> tuple[bytes, int]:
        async with _served(_streaming(raw, sizes)) as (client, url):
            reply = await client.stream(url, {}, b"{}", timeout=10)
            try:
                assert (reply.status, reply.headers["content-type"]) == (200, "text/event-stream")
                got = [piece async for piece in reply]
            finally:
                reply.close()
            return b"".join(got), len(got)

    got, pieces = asyncio.run(main())
    assert got == body
    if sizes == (1,) and framing != "gzip":
        assert pieces > len(SSE_EVENTS)  # handed over as they came, not held to the end
    decoder = SseDecoder()
    events = [e for piece in _split(got, sizes) for e in decoder.feed(piece)]
    assert [orjson.loads(e.data)["n"] for e in events] == list(range(40))
    assert events[0].data.endswith('"café \\u00e9"}')


@pytest.mark.parametrize("framing", ["chunked", "length", "until-close", "gzip"])
@pytest.mark.parametrize("sizes", [(1,), (3, 7, 2), (4096,)], ids=["bytewise", "ragged", "whole"])
def test_a_relayed_stream_hands_over_the_rest_of_the_body_whatever_its_framing(
    framing: str, sizes: tuple[int, ...]
) -> None:
    """The first piece pulled, the rest pushed to a callback as it arrives: together, the
    body (decoded when the server compressed it)."""
    body = b"".join(SSE_EVENTS)
    raw = _sse_reply(framing)

    async def main() -> list[bytes]:
        async with _served(_streaming(raw, sizes)) as (client, url):
            reply = await client.stream(url, {}, b"{}", timeout=10)
            try:
                got = [await reply.__anext__()]
                await reply.relay(lambda piece: got.append(piece) is None)
            finally:
                reply.close()
            return got

    got = asyncio.run(main())
    assert b"".join(got) == body
    if sizes == (1,) and framing != "gzip":
        assert len(got) > len(SSE_EVENTS)  # handed over as they came


def test_a_stream_read_to_its_end_gives_its_connection_back_and_one_left_closes_it() -> None:
    connections = 0
    closed_early = asyncio.Event()
    raw = _stream_head("chunked") + _chunked(SSE_EVENTS)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                _, _, body = await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            if body == b"endless":  # events until the client goes away
                writer.write(_stream_head("chunked"))
                try:
                    while True:
                        writer.write(_chunked([SSE_EVENTS[0]])[:-5])
                        await writer.drain()
                        await asyncio.sleep(0.01)
                except ConnectionError:
                    closed_early.set()
                    break
            writer.write(raw)
            await writer.drain()
        writer.close()

    async def main() -> None:
        async with _served(handler) as (client, url):
            for _ in range(3):
                reply = await client.stream(url, {}, b"{}", timeout=10)
                assert b"".join([p async for p in reply]) == b"".join(SSE_EVENTS)
                reply.close()
            reply = await client.post(url, {}, b"{}", timeout=10, limit=100_000)
            assert reply.body == b"".join(SSE_EVENTS)  # whole answers share the pool
            assert connections == 1
            reply = await client.stream(url, {}, b"endless", timeout=10)
            async for _ in reply:
                break
            reply.close()  # left before the end: the upstream hears of it
            await asyncio.wait_for(closed_early.wait(), 5)
            again = await client.stream(url, {}, b"{}", timeout=10)
            assert b"".join([p async for p in again]) == b"".join(SSE_EVENTS)
            again.close()
            assert connections == 2

    asyncio.run(main())


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_a_stream_cut_mid_body_yields_what_arrived_then_disconnected(framing: str) -> None:
    """Never passed off as a clean end: the pieces before the cut, then Disconnected, which
    the adapters report as a broken stream."""
    if framing == "chunked":
        raw = _stream_head("chunked") + _chunked(SSE_EVENTS)[:-40]
    else:
        body = b"".join(SSE_EVENTS)
        raw = _stream_head("length", len(body)) + body[:-40]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(raw)
        await writer.drain()
        writer.close()

    async def main() -> tuple[bytes, BaseException | None]:
        got = []
        async with _served(handler) as (client, url):
            reply = await client.stream(url, {}, b"{}", timeout=10)
            try:
                async for piece in reply:
                    got.append(piece)
            except Exception as exc:
                return b"".join(got), exc
            finally:
                reply.close()
        return b"".join(got), None

    got, error = asyncio.run(main())
    assert isinstance(error, Disconnected)
    assert got
    assert b"".join(SSE_EVENTS).startswith(got)
    assert isinstance(transport_error(error, "p", timeout=5, streaming=True), StreamInterrupted)


def test_a_slow_stream_keeps_going_and_its_deadline_covers_the_whole_body() -> None:
    raw = _stream_head("chunked") + _chunked(SSE_EVENTS[:10])

    async def read_all(client: H1Client, url: str, timeout: float) -> tuple[bytes, str]:
        got = []
        reply = await client.stream(url, {}, b"{}", timeout=timeout)
        try:
            async for piece in reply:
                got.append(piece)
        except TimeoutError:
            return b"".join(got), "timeout"
        finally:
            reply.close()
        return b"".join(got), "end"

    async def main() -> None:
        # about 0.6 s in all: ~30 writes 20 ms apart
        async with _served(_streaming(raw, (20,), pause=0.02)) as (client, url):
            got, how = await read_all(client, url, timeout=10)
            assert (got, how) == (b"".join(SSE_EVENTS[:10]), "end")
            got, how = await read_all(client, url, timeout=0.25)
            assert how == "timeout"  # the head came in time; the body did not
            assert got
            assert len(got) < len(b"".join(SSE_EVENTS[:10]))
            got, how = await read_all(client, url, timeout=10)
            assert how == "end"  # the connection given up was not reused mid-answer

    asyncio.run(main())


def test_a_reader_that_leaves_closes_the_upstream_connection() -> None:
    """A task reading a stream is cancelled (its client left): the upstream sees its
    connection close, and the connection is never handed to another request."""
    gone = asyncio.Event()
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await _read_request(reader)
        writer.write(_stream_head("chunked"))
        try:
            while True:
                writer.write(_chunked([SSE_EVENTS[1]])[:-5])
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.005)
        except ConnectionError:
            gone.set()
        writer.close()

    async def main() -> None:
        async with _served(handler) as (client, url):

            async def read() -> None:
                reply = await client.stream(url, {}, b"{}", timeout=30)
                try:
                    async for _ in reply:
                        pass
                finally:
                    reply.close()

            task = asyncio.create_task(read())
            while sent < 5:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(gone.wait(), 5)
            assert not client._idle.get(("http", "127.0.0.1", int(url.split(":")[2][:5])))

    asyncio.run(main())


def test_a_stream_not_read_holds_the_upstream_back_until_it_is() -> None:
    """Flow control: a reader that stops (its client stopped reading) pauses the socket, so
    the upstream cannot push an unbounded body into the gateway's memory."""
    piece = b"data: " + b"x" * 65_000 + b"\n\n"
    count = 512  # 32 MiB: more than the kernel's socket buffers on both sides
    finished = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_stream_head("length", len(piece) * count))
        for _ in range(count):
            writer.write(piece)
            await writer.drain()
        finished.set()
        writer.close()

    async def main() -> None:
        async with _served(handler) as (client, url):
            reply = await client.stream(url, {}, b"{}", timeout=60)
            try:
                await asyncio.sleep(1.0)
                assert not finished.is_set()
                buffered = sum(len(c) for c in reply._conn._chunks)
                assert buffered < 2 * STREAM_HIGH_WATER
                total = 0
                async for data in reply:
                    total += len(data)
                assert total == len(piece) * count
                assert finished.is_set()
            finally:
                reply.close()

    asyncio.run(main())


def test_a_stream_on_a_connection_the_server_closed_while_idle_is_retried() -> None:
    connections = 0
    raw = _stream_head("chunked") + _chunked(SSE_EVENTS[:2])

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(raw)  # keep-alive promised, then closed while idle
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with _served(handler) as (client, url):
            for _ in range(3):
                reply = await client.stream(url, {}, b"{}", timeout=5)
                assert b"".join([p async for p in reply]) == b"".join(SSE_EVENTS[:2])
                reply.close()
                await asyncio.sleep(0.05)

    asyncio.run(main())
    assert connections == 3


def test_a_stream_over_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    raw = _stream_head("chunked") + _chunked(SSE_EVENTS)

    async def main() -> bytes:
        server = await asyncio.start_server(_streaming(raw, (100,)), "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        client = H1Client()
        try:
            reply = await client.stream(f"https://127.0.0.1:{port}/", {}, b"{}", timeout=10)
            try:
                return b"".join([p async for p in reply])
            finally:
                reply.close()
        finally:
            client.close()
            server.close()

    assert asyncio.run(main()) == b"".join(SSE_EVENTS)


@pytest.mark.parametrize(
    ("after_done", "connections_used"),
    [(b"0\r\n\r\n", 1), (b"", 3), (b"%x\r\n%s\r\n0\r\n\r\n" % (70_000, b"x" * 70_000), 3)],
    ids=["end-later", "closed-instead", "more-than-an-end"],
)
def test_an_adapters_finished_stream_keeps_its_connection_once_the_body_ends(
    after_done: bytes, connections_used: int
) -> None:
    """OpenAI-compatible servers send `data: [DONE]` and then, in a separate write, the
    chunked body's last chunk: the adapter has what it needs at [DONE], and the connection
    goes back to the pool once that last chunk arrives (no new connection, nor TLS
    handshake, per stream). A server that closes instead, or sends more than an end, costs
    a new connection and nothing else."""
    from quality_gates.providers import ChatRequest, Message, OpenAIProvider

    connections = 0
    done = (
        b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(_stream_head("chunked") + b"%x\r\n%s\r\n" % (len(done), done))
            await writer.drain()
            await asyncio.sleep(0.05)  # what follows comes well after [DONE]
            if not after_done:
                break
            writer.write(after_done)
            await writer.drain()
        writer.close()

    async def main() -> list[str]:
        server, url = await _serve(handler)
        provider = OpenAIProvider("p", url.split("/v1")[0])
        request = ChatRequest(model="m", messages=(Message("user", "hi"),))
        texts = []
        try:
            for _ in range(3):
                chunks = [c async for c in provider.stream(request)]
                texts.append("".join(c.text for c in chunks))
                assert chunks[-1].finish_reason == "stop"
                await asyncio.sleep(0.1)
        finally:
            await provider.close()
            server.close()
        return texts

    assert asyncio.run(main()) == ["hi", "hi", "hi"]
    assert connections == connections_used
