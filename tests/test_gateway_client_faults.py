"""Client faults are the client's: a client that stops reading a large stream, or leaves it, is
recorded as 499 / client_disconnected, never as the provider's error, breaker failure or SLO
burn, and its upstream call is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.gateway_support import (
    FAST_GATEWAY,
    ScriptedProvider,
    chat_body,
    fakes,
    free_socket,
    gateway_workspace,
    wait_until,
)

from quality_gates.config import load_config
from quality_gates.gateway import AppSettings, create_app
from quality_gates.gateway._server import LeanServer
from quality_gates.providers import ChatRequest, StreamChunk
from quality_gates.store import StoreURL

DEPLOYMENT = "bedrock/claude-3-5-haiku"


class EndlessProvider(ScriptedProvider):
    """Streams large chunks for a long time; notes when the gateway closes its stream."""

    closed = False
    sent = 0

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:  # type: ignore[override]
        self.calls.append(request)
        try:
            for _ in range(100_000):
                await asyncio.sleep(0)
                self.sent += 1
                yield StreamChunk(text="word " * 2000)
            yield StreamChunk(finish_reason="stop")
        finally:
            self.closed = True


@contextlib.asynccontextmanager
async def gateway(
    tmp_path: Path,
    read_timeout: float,
    bedrock: ScriptedProvider | None = None,
    server: str = "lean",
    deadline: str = "2s",
) -> AsyncIterator[tuple[int, Any, Any]]:
    # A 2 s deadline that runs out while the client holds the stream: before, that was
    # recorded as the provider's timeout.
    ws = gateway_workspace(tmp_path / "ws", extra=FAST_GATEWAY + f"  deadline: {deadline}\n")
    providers: dict[str, Any] = fakes()
    providers["bedrock"] = bedrock or EndlessProvider("bedrock")
    settings = AppSettings(
        config=load_config(ws.config_path).config,
        store_url=StoreURL.parse(ws.db_url, base_dir=ws.root),
        environment="production",
    )
    app = create_app(settings, providers=providers)
    sock = free_socket()
    if server == "lean":
        lean = LeanServer(app, read_timeout=read_timeout)
        task = asyncio.get_running_loop().create_task(lean.serve(sock))
        await asyncio.wait_for(lean.listening.wait(), 20)
        stop: Any = lean.stop
    else:
        import uvicorn

        other = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
        task = asyncio.get_running_loop().create_task(other.serve(sockets=[sock]))
        await wait_until(lambda: other.started, 20)

        def stop() -> None:
            other.should_exit = True

    try:
        yield sock.getsockname()[1], app, (ws, providers["bedrock"])
    finally:
        stop()
        await asyncio.wait_for(task, 30)
        sock.close()


def _stream_request(port: int) -> bytes:
    body = json.dumps(chat_body(stream=True)).encode()
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def test_a_client_that_stops_reading_a_stream_is_recorded_as_499_not_a_provider_error(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path, read_timeout=3.0) as (port, app, (ws, provider)):
        state = app.state.gateway
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", port))
        client.sendall(_stream_request(port))
        try:  # read nothing: the server's buffers fill, then it waits on this client
            await wait_until(lambda: state.services.admission.inflight == 1, 10)
            await wait_until(lambda: provider.sent > 100, 10)
            await wait_until(lambda: state.services.admission.inflight == 0, 20, 0.1)
        finally:
            client.close()
        telemetry = state.services.telemetry
        await wait_until(lambda: telemetry.written_requests == 1, 10)
        breaker = state.services.breakers.get(DEPLOYMENT)
        assert breaker.window_errors == 0  # the provider is not blamed
        assert provider.closed  # its stream was cancelled, not read to the end
        assert provider.sent < 100_000
    request = ws.conn.one("SELECT status, http_status, error_class FROM requests")
    assert request == {
        "status": "cancelled",
        "http_status": 499,
        "error_class": "client_disconnected",
    }
    attempt = ws.conn.one("SELECT status, error_class FROM attempts")
    assert attempt == {"status": "cancelled", "error_class": "client_disconnected"}
    errors = ws.conn.scalar("SELECT SUM(errors) FROM rollups")
    assert errors == 0  # so no error-rate alert or SLO burn can come of it


async def test_a_client_that_hangs_up_mid_stream_cancels_the_upstream_call(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path, read_timeout=30.0) as (port, app, (ws, provider)):
        state = app.state.gateway
        client = socket.socket()
        client.connect(("127.0.0.1", port))
        client.sendall(_stream_request(port))
        await wait_until(lambda: state.services.admission.inflight == 1, 10)
        assert await asyncio.to_thread(client.recv, 65536)
        client.close()
        await wait_until(lambda: state.services.admission.inflight == 0, 10)
        await wait_until(lambda: provider.closed, 5)
        await wait_until(lambda: state.services.telemetry.written_requests == 1, 10)
        assert state.services.breakers.get(DEPLOYMENT).window_errors == 0
    row = ws.conn.one("SELECT status, http_status, error_class FROM requests")
    assert row == {"status": "cancelled", "http_status": 499, "error_class": "client_disconnected"}


class SlowProvider(ScriptedProvider):
    """Answers after a long wait; notes when the gateway cancels the call."""

    cancelled = False

    async def complete(self, request: ChatRequest) -> Any:
        self.calls.append(request)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        raise AssertionError("the call should have been cancelled")


@pytest.mark.parametrize("server", ["lean", "uvicorn"])
async def test_a_client_that_leaves_before_a_plain_answer_cancels_the_upstream_call(
    tmp_path: Path, server: str
) -> None:
    slow = SlowProvider("bedrock")
    async with gateway(tmp_path, 30.0, slow, server, "30s") as (port, app, (ws, provider)):
        state = app.state.gateway
        body = json.dumps(chat_body()).encode()
        client = socket.socket()
        client.connect(("127.0.0.1", port))
        client.sendall(
            (
                f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        await wait_until(lambda: len(provider.calls) == 1, 10)
        client.close()  # the client gives up before the answer
        await wait_until(lambda: provider.cancelled, 10)
        await wait_until(lambda: state.services.admission.inflight == 0, 10)
        await wait_until(lambda: state.services.telemetry.written_requests == 1, 10)
        assert state.services.breakers.get(DEPLOYMENT).window_errors == 0
    row = ws.conn.one("SELECT status, http_status, error_class FROM requests")
    assert row == {"status": "cancelled", "http_status": 499, "error_class": "client_disconnected"}
    assert ws.conn.scalar("SELECT COUNT(*) FROM attempts WHERE status = 'error'") == 0
    assert ws.conn.scalar("SELECT SUM(errors) FROM rollups") == 0


async def test_a_client_that_hangs_up_closes_the_real_upstream_connection(
    tmp_path: Path,
) -> None:
    """Through the HTTP adapter and the lean client's streaming mode: the upstream, an
    endless OpenAI-compatible stream on loopback, sees its connection close when the
    gateway's client leaves, and the request is the client's 499."""
    from quality_gates.providers import OpenAIProvider

    gone = asyncio.Event()
    sent = 0
    event = (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
    )

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        try:
            while True:
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.01)
        except ConnectionError:
            gone.set()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    provider = OpenAIProvider("bedrock", base)
    try:
        async with gateway(tmp_path, 30.0, provider, deadline="30s") as (port, app, (ws, _)):
            state = app.state.gateway
            client = socket.socket()
            client.connect(("127.0.0.1", port))
            client.sendall(_stream_request(port))
            assert b"tok " in await asyncio.to_thread(client.recv, 65536)
            await wait_until(lambda: sent > 5, 10)
            client.close()
            await asyncio.wait_for(gone.wait(), 10)
            await wait_until(lambda: state.services.admission.inflight == 0, 10)
            await wait_until(lambda: state.services.telemetry.written_requests == 1, 10)
            assert state.services.breakers.get(DEPLOYMENT).window_errors == 0
        row = ws.conn.one("SELECT status, http_status, error_class FROM requests")
        assert row == {
            "status": "cancelled",
            "http_status": 499,
            "error_class": "client_disconnected",
        }
    finally:
        server.close()
