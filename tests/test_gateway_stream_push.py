"""A stream pushed from the upstream connection's callback to the client (the lean server and
an OpenAI-compatible upstream) is the stream the pull relays: the same bytes on the wire,
the same record, for clean, packed, tool-call, cut and failing streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.gateway_support import chat_body, fakes, free_socket, gateway_workspace, wait_until

from quality_gates.config import load_config
from quality_gates.gateway import AppSettings, create_app
from quality_gates.gateway._server import LeanServer
from quality_gates.providers import OpenAIProvider
from quality_gates.store import StoreURL

SETTINGS = """
gateway:
  control_poll: 0.05
  heartbeat: 0.2s
  retry: {backoff: 1ms, max_backoff: 5ms}
  breaker: {probe_interval: 0, open_for: 60s}
  telemetry: {flush_interval: 50ms, store_text: true}
  deadline: 30s
"""


def _event(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
    chunk = {
        "id": "up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **more,
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _texts(*texts: str) -> list[bytes]:
    return [_event({"content": text}) for text in texts]


END = [
    _event({}, "stop"),
    _event({}, None, usage={"prompt_tokens": 7, "completion_tokens": 5}) + b"data: [DONE]\n\n",
]
PACKED = b"".join(_texts("h\u00e9llo ", '"quoted" ', "\u2713\n"))
SPLIT = _event({"content": "split across writes"})
TOOL = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
ERROR = b'data: {"error": {"message": "overloaded", "type": "x"}}\n\n'
# What the upstream writes (each item one write), then "end" (the body's end) or "cut".
SCRIPTS: dict[str, tuple[list[bytes], str]] = {
    "plain": ([_event({"role": "assistant", "content": ""}), *_texts("a", "b", "c"), *END], "end"),
    "packed": ([PACKED, SPLIT[:20], SPLIT[20:], b"".join(END)], "end"),
    "tools": (
        [
            _event({"content": "calling "}),
            _event({"tool_calls": [TOOL]}),
            _event({"tool_calls": [{"index": 0, "function": {"arguments": '{"x": 1}'}}]}),
            _event({}, "tool_calls"),
            b"data: [DONE]\n\n",
        ],
        "end",
    ),
    "json": ([*_texts('{"a": ', "1}"), *END], "end"),  # asked for JSON: checked at the end
    "cut": (_texts("one ", "two "), "cut"),
    "error": ([*_texts("one "), ERROR], "end"),
    # The error read in the same piece as the first chunk, after another text.
    "late": ([b"".join([*_texts("one ", "two "), ERROR]), *_texts("three "), *END], "end"),
    "malformed": ([*_texts("one "), b"data: {not json\n\n"], "end"),
    # The relay's plain-text lane: texts that differ only in their string (escapes, quotes,
    # backslashes, non-ASCII), a piece split mid-event (the decoder holds part of it), the
    # same bytes around a non-string or an empty string, a chunk laid out differently, and
    # a text carried by the finishing chunk.
    "shapes": (
        [
            *_texts("a", 'q"uote ', "back\\slash\\", "\u00e9\u2713 ", '\\"'),
            SPLIT[:30],
            SPLIT[30:],
            *_texts("after split "),
            _event({"content": None}),
            _event({"content": ""}),
            _event({"content": "x"}).replace(b'"index": 0, ', b""),
            *_texts("end "),
            _event({"content": "last"}, "stop"),
            END[1],
        ],
        "end",
    ),
    # A data line left without its blank line: the next piece, however plain it looks, is
    # the rest of that event (two data lines, not JSON): a malformed stream both ways.
    # The bytes after the text differ, not their length ("ab" is as long as null): the
    # finishing chunk is read whole, its finish reason kept.
    "tail": ([*_texts("a ", "b "), _event({"content": "c"}, "ab"), END[1]], "end"),
    "pending": ([*_texts("a ", "b "), b'data: {"note": 1}\n', *_texts("c "), *END], "end"),
}


async def _upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An OpenAI-compatible server playing the script the prompt names."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = json.loads(await reader.readexactly(length))
        writes, ending = SCRIPTS[body["messages"][-1]["content"]]
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for data in writes:
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            await asyncio.sleep(0.005)
        if ending == "cut":
            writer.transport.abort()
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()


class PullOnly:
    """The gateway app with the server's send wrapped, so write_chunk is out of its reach
    and every stream is pulled."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def plain_send(message: Any) -> None:
            await send(message)

        await self.app(scope, receive, plain_send)


@contextlib.asynccontextmanager
async def gateway(root: Path, upstream_port: int, *, push: bool) -> AsyncIterator[tuple[int, Any]]:
    ws = gateway_workspace(root, extra=SETTINGS)
    providers: dict[str, Any] = fakes()
    providers["bedrock"] = OpenAIProvider("bedrock", f"http://127.0.0.1:{upstream_port}")
    settings = AppSettings(
        config=load_config(ws.config_path).config,
        store_url=StoreURL.parse(ws.db_url, base_dir=ws.root),
        environment="production",
    )
    app = create_app(settings, providers=providers)
    sock = free_socket()
    server = LeanServer(app if push else PullOnly(app), read_timeout=30.0)
    task = asyncio.get_running_loop().create_task(server.serve(sock))
    await asyncio.wait_for(server.listening.wait(), 20)
    try:
        yield sock.getsockname()[1], ws
    finally:
        server.stop()
        await asyncio.wait_for(task, 30)
        sock.close()


def _exchange(port: int, prompt: str) -> bytes:
    """The raw answer to one streamed request (its body as framed on the wire)."""
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}}
    if prompt == "json":
        extra["response_format"] = {"type": "json_object"}
    body = json.dumps(chat_body(text=prompt, stream=True, **extra)).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
        client.sendall(request)
        raw = b""
        while data := client.recv(65536):
            raw += data
    head, _, framed = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    ids = set(re.findall(rb'"id":"(chatcmpl-[^"]+)"', framed))
    assert len(ids) == 1
    # The request's own id and second: the same length either way, so the framing compares.
    framed = framed.replace(ids.pop(), b"chatcmpl-ID")
    return re.sub(rb'"created":\d+', b'"created":1', framed)


async def _run(root: Path, upstream_port: int, *, push: bool) -> tuple[dict[str, bytes], Any]:
    async with gateway(root, upstream_port, push=push) as (port, ws):
        answers = {name: await asyncio.to_thread(_exchange, port, name) for name in SCRIPTS}
        await wait_until(
            lambda: ws.conn.scalar("SELECT COUNT(*) FROM requests") == len(SCRIPTS), 10
        )
    rows = ws.conn.execute(
        "SELECT prompt, status, http_status, error_class, finish_reason, input_tokens,"
        " output_tokens, answer, output_check, stream, attempts FROM requests ORDER BY prompt"
    )
    return answers, rows


async def test_a_pushed_stream_is_the_pulled_stream_byte_for_byte(tmp_path: Path) -> None:
    server = await asyncio.start_server(_upstream, "127.0.0.1", 0)
    upstream_port = server.sockets[0].getsockname()[1]
    try:
        pushed, pushed_rows = await _run(tmp_path / "push", upstream_port, push=True)
        pulled, pulled_rows = await _run(tmp_path / "pull", upstream_port, push=False)
    finally:
        server.close()
    assert pushed == pulled
    assert pushed_rows == pulled_rows
    plain = pushed["plain"]
    assert plain.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    assert b'"usage":{"prompt_tokens":7,"completion_tokens":5' in plain
    assert '"h\u00e9llo "'.encode() in pushed["packed"]  # UTF-8 kept, quotes escaped
    assert b'"\\"quoted\\" "' in pushed["packed"]
    assert b"split across writes" in pushed["packed"]
    assert b'"tool_calls":[{"index":0,"id":"call_1"' in pushed["tools"]
    assert b'"finish_reason":"tool_calls"' in pushed["tools"]
    for broken in ("cut", "error", "late", "malformed", "pending"):
        assert b'data: {"error":{"message":"the upstream stream' in pushed[broken]
        assert b"[DONE]" not in pushed[broken]
    by_prompt = {name: row for row in pushed_rows for name in SCRIPTS if name in row["prompt"]}
    assert by_prompt["plain"]["status"] == "ok"
    assert by_prompt["plain"]["answer"] == "abc"
    assert by_prompt["plain"]["output_tokens"] == 5
    assert by_prompt["packed"]["answer"] == 'h\u00e9llo "quoted" \u2713\nsplit across writes'
    assert by_prompt["json"]["output_check"] is not None
    assert by_prompt["shapes"]["answer"] == (
        'aq"uote back\\slash\\\u00e9\u2713 \\"split across writesafter split xend last'
    )
    for broken in ("cut", "error", "late", "malformed", "pending"):
        assert by_prompt[broken]["status"] == "error"
        assert by_prompt[broken]["http_status"] == 502


async def test_a_pushed_stream_stops_reading_its_upstream_while_the_client_does_not_read(
    tmp_path: Path,
) -> None:
    """Flow control: the upstream's writes stall once the client's buffers are full (the
    gateway does not read ahead into memory), and the read timeout cuts the client: a 499,
    and the upstream's connection closed."""
    gone = asyncio.Event()
    sent = 0
    event = _event({"content": "word " * 2000})

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        try:
            while sent < 100_000:
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
                sent += 1
        except ConnectionError:
            gone.set()
        writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    upstream_port = server.sockets[0].getsockname()[1]
    ws = gateway_workspace(tmp_path, extra=SETTINGS)
    providers: dict[str, Any] = fakes()
    providers["bedrock"] = OpenAIProvider("bedrock", f"http://127.0.0.1:{upstream_port}")
    settings = AppSettings(
        config=load_config(ws.config_path).config,
        store_url=StoreURL.parse(ws.db_url, base_dir=ws.root),
        environment="production",
    )
    app = create_app(settings, providers=providers)
    sock = free_socket()
    lean = LeanServer(app, read_timeout=2.0)
    task = asyncio.get_running_loop().create_task(lean.serve(sock))
    try:
        await asyncio.wait_for(lean.listening.wait(), 20)
        port = sock.getsockname()[1]
        state = app.state.gateway
        body = json.dumps(chat_body(stream=True)).encode()
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", port))
        client.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}"
            "\r\n\r\n".encode()
            + body
        )
        try:  # read nothing
            await wait_until(lambda: sent > 10, 10)
            await asyncio.sleep(0.5)
            stalled = sent
            await asyncio.sleep(0.5)
            assert sent == stalled  # held back by TCP, not read into the gateway's memory
            assert sent < 1000
            # Cut after the read timeout; its upstream connection closed.
            await wait_until(lambda: state.services.admission.inflight == 0, 20)
            await asyncio.wait_for(gone.wait(), 10)
            await wait_until(lambda: state.services.telemetry.written_requests == 1, 10)
        finally:
            client.close()
    finally:
        lean.stop()
        await asyncio.wait_for(task, 30)
        sock.close()
        server.close()
    row = ws.conn.one("SELECT status, http_status, error_class FROM requests")
    assert row == {"status": "cancelled", "http_status": 499, "error_class": "client_disconnected"}
