"""Adapters facing a broken upstream: garbage, wrong content types, truncated or corrupt
streams. Every case ends in a classified ProviderError, never another exception."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from tests.simulators import PROTOCOLS, adapter

from quality_gates.errors import (
    ConnectionFailed,
    ProviderError,
    RateLimited,
    ServerError,
    StreamInterrupted,
)
from quality_gates.providers import ChatRequest, Message
from quality_gates.providers._eventstream import encode_event
from quality_gates.simulator import Plan, Prompt
from quality_gates.simulator._app import WIRES

pytestmark = pytest.mark.integration
REQUEST = ChatRequest("model-a", (Message("user", "hello"),), max_tokens=5, timeout=5)
STREAM_TYPES = {
    "openai": "text/event-stream",
    "anthropic": "text/event-stream",
    "gemini": "text/event-stream",
    "bedrock": "application/vnd.amazon.eventstream",
}


def first_token(protocol: str) -> bytes:
    """What a healthy stream of `protocol` sends up to and including its first token."""
    wire = WIRES[protocol]()
    prompt = Prompt("model-a", [("user", "hello")], stream=True)
    plan = Plan("answer", 0.0, pieces=["Hello", " there"], input_tokens=3, response_id="x")
    return wire.stream_open(prompt, plan) + wire.stream_piece(prompt, plan, 0)


async def serve(respond) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", respond)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def outcome(protocol: str, respond, *, streaming: bool) -> ProviderError:  # type: ignore[no-untyped-def]
    """The error the adapter raises against `respond`; fails the test on anything else."""
    async for base in serve(respond):
        async with adapter(protocol, base) as provider:
            try:
                if streaming:
                    async for _ in provider.stream(REQUEST):
                        pass
                else:
                    await provider.complete(REQUEST)
            except ProviderError as exc:
                return exc
    pytest.fail("no error raised")


def fixed(status: int, body: bytes, content_type: str, headers=None):  # type: ignore[no-untyped-def]
    async def respond(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type, headers=headers)

    return respond


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html><body>Bad gateway</body></html>", "text/html"),
        (b'{"choices": [', "application/json"),
        (b'{"unexpected": true}', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b"", "application/json"),
    ],
    ids=["html", "truncated-json", "wrong-shape", "json-array", "empty"],
)
async def test_a_200_with_an_unreadable_body_is_a_server_error(
    protocol: str, body: bytes, content_type: str
) -> None:
    error = await outcome(protocol, fixed(200, body, content_type), streaming=False)
    assert isinstance(error, ServerError)
    assert error.retryable


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_stream_with_the_wrong_content_type_is_a_server_error(protocol: str) -> None:
    error = await outcome(protocol, fixed(200, b"<html></html>", "text/html"), streaming=True)
    assert isinstance(error, ServerError)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_stream_that_ends_after_a_token_without_finishing_is_interrupted(
    protocol: str,
) -> None:
    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": STREAM_TYPES[protocol]})
        await response.prepare(request)
        await response.write(first_token(protocol))
        await response.write_eof()
        return response

    error = await outcome(protocol, respond, streaming=True)
    assert isinstance(error, StreamInterrupted)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_stream_of_garbage_is_classified(protocol: str) -> None:
    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": STREAM_TYPES[protocol]})
        await response.prepare(request)
        await response.write(b"\x00\x00\x00\x10garbage that is not a protocol\n\n" * 3)
        await response.write_eof()
        return response

    error = await outcome(protocol, respond, streaming=True)
    assert isinstance(error, ServerError | StreamInterrupted)


async def test_a_corrupt_event_stream_checksum_is_caught() -> None:
    frame = bytearray(encode_event("contentBlockDelta", b'{"delta":{"text":"hi"}}'))
    frame[-6] ^= 0xFF  # flip a payload byte: the message CRC no longer matches

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": STREAM_TYPES["bedrock"]})
        await response.prepare(request)
        await response.write(bytes(frame))
        await response.write_eof()
        return response

    error = await outcome("bedrock", respond, streaming=True)
    assert isinstance(error, ServerError)
    assert "checksum" in str(error)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_html_502_from_a_proxy_is_a_server_error_with_its_status(protocol: str) -> None:
    error = await outcome(protocol, fixed(502, b"<h1>502</h1>", "text/html"), streaming=False)
    assert isinstance(error, ServerError)
    assert error.status == 502


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_retry_after_as_an_http_date_is_honoured(protocol: str) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    respond = fixed(429, b"{}", "application/json", headers={"Retry-After": when})
    error = await outcome(protocol, respond, streaming=False)
    assert isinstance(error, RateLimited)
    assert error.retry_after is not None
    assert 25 <= error.retry_after <= 31


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_server_that_is_not_http_is_classified(protocol: str) -> None:
    async def talk_nonsense(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(talk_nonsense, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with adapter(protocol, f"http://127.0.0.1:{port}") as provider:
            with pytest.raises((ServerError, ConnectionFailed)):
                await provider.complete(REQUEST)
    finally:
        server.close()
        await server.wait_closed()
