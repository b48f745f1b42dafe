"""Test support for the gateway: a scriptable in-test ChatProvider and a gateway served by
its own server on a loopback port (the simulator-backed tests use the real adapters
instead)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from tests.conftest import Workspace, make_workspace

from quality_gates.config import load_config, render_starter
from quality_gates.errors import ProviderError, StreamInterrupted
from quality_gates.gateway import AppSettings, create_app
from quality_gates.gateway._server import serving
from quality_gates.providers import (
    ChatProvider,
    ChatRequest,
    ChatResponse,
    ProbeResult,
    StreamChunk,
    Usage,
)
from quality_gates.store import StoreURL

FAST_GATEWAY = """
gateway:
  control_poll: 0.05
  heartbeat: 0.2s
  retry: {backoff: 1ms, max_backoff: 5ms}
  breaker: {probe_interval: 0, open_for: 60s}
  telemetry: {flush_interval: 50ms}
"""


@dataclass
class Cut:
    """Script step: stream `after` chunks, then break."""

    after: int = 1


@dataclass
class Hang:
    """Script step: never answer (until cancelled)."""


@dataclass
class Stall:
    """Script step: stream `after` chunks, then send nothing more (until cancelled)."""

    after: int = 1


Step = ProviderError | Cut | Hang | Stall | None


@dataclass
class ScriptedProvider(ChatProvider):
    """A ChatProvider whose next outcomes are scripted; healthy once the script runs out."""

    name: str
    text: str = ""
    chunks: int = 3
    latency: float = 0.0
    script: deque[Step] = field(default_factory=deque)
    probe_ok: bool = True
    calls: list[ChatRequest] = field(default_factory=list)
    probes: int = 0
    protocol: str = "test"

    def __post_init__(self) -> None:
        self.text = self.text or f"answer from {self.name}"

    def then(self, *steps: Step) -> ScriptedProvider:
        """Queue outcomes for the next calls."""
        self.script.extend(steps)
        return self

    def _next(self) -> Step:
        return self.script.popleft() if self.script else None

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls.append(request)
        step = self._next()
        if isinstance(step, ProviderError):
            raise step
        if isinstance(step, Hang):
            await asyncio.sleep(3600)
        if self.latency:
            await asyncio.sleep(self.latency)
        return ChatResponse(
            self.text,
            "stop",
            Usage(10, 5),
            self.latency * 1000,
            self.latency * 1000,
            self.name,
            request.model,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:  # type: ignore[override]
        self.calls.append(request)
        step = self._next()
        if isinstance(step, ProviderError):
            raise step
        if isinstance(step, Hang):
            await asyncio.sleep(3600)
        words = self.text.split(" ")
        per = max(1, len(words) // self.chunks)
        pieces = [" ".join(words[i : i + per]) + " " for i in range(0, len(words), per)]
        for index, piece in enumerate(pieces):
            if isinstance(step, Cut) and index >= step.after:
                raise StreamInterrupted(
                    f"{self.name}: connection reset mid-stream", provider=self.name
                )
            if isinstance(step, Stall) and index >= step.after:
                await asyncio.sleep(3600)
            if self.latency:
                await asyncio.sleep(self.latency)
            yield StreamChunk(text=piece)
        yield StreamChunk(finish_reason="stop", usage=Usage(10, 5))

    async def probe(self) -> ProbeResult:
        self.probes += 1
        return ProbeResult(self.name, self.probe_ok, 1.0, None if self.probe_ok else "server_error")

    async def close(self) -> None:
        return None


def gateway_workspace(
    root: Path, db_url: str | None = None, extra: str = FAST_GATEWAY
) -> Workspace:
    """The starter workspace with gateway settings made fast for tests."""
    url = db_url or f"sqlite:///{root / 'state.db'}"
    return make_workspace(root, url, render_starter("gw-test") + extra)


def fakes() -> dict[str, ScriptedProvider]:
    """One scripted provider per starter provider."""
    return {n: ScriptedProvider(n) for n in ("bedrock", "google", "meta")}


def free_socket() -> socket.socket:
    """A listening-ready socket bound to a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with the gateway's own server (what `serve` runs by default) on a
    free loopback port; yields its base URL."""
    sock = free_socket()
    try:
        async with serving(app, sock):
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def running_gateway(
    ws: Workspace,
    providers: dict[str, ScriptedProvider] | dict[str, ChatProvider] | None = None,
    environment: str = "production",
    redis_url: str | None = None,
) -> AsyncIterator[tuple[str, Any]]:
    """The gateway for `ws` with in-test providers; yields (base URL, app)."""
    config = load_config(ws.config_path).config
    settings = AppSettings(
        config=config,
        store_url=StoreURL.parse(ws.db_url, base_dir=ws.root),
        environment=environment,
        redis_url=redis_url,
    )
    app = create_app(settings, providers=dict(providers or {}))
    async with serve(app) as url:
        yield url, app


def chat_body(
    model: str = "current", text: str = "hello", stream: bool = False, **extra: Any
) -> dict[str, Any]:
    """A minimal chat completion request."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
        **extra,
    }


async def post_chat(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, str], Any]:
    """POST a chat request; returns status, headers and the JSON (or SSE events)."""
    async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as resp:
        raw = await resp.read()
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            return resp.status, lowered(resp.headers), sse_events(raw)
        return resp.status, lowered(resp.headers), json.loads(raw)


def sse_events(raw: bytes) -> list[Any]:
    """`data:` payloads of an SSE body (JSON decoded; `[DONE]` kept as the string)."""
    events: list[Any] = []
    for block in raw.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def wait_until(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> float:
    """Poll until `predicate()` is true; returns the seconds it took (TimeoutError if never)."""
    started = time.monotonic()
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def lowered(headers: Any) -> dict[str, str]:
    """Response headers with lower-case names."""
    return {k.lower(): v for k, v in headers.items()}
