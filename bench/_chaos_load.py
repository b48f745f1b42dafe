"""The chaos bench's load: a bounded stream of chat requests (some streamed) spread over the
live gateways, each outcome kept (status, request id, how a stream ended) for the table."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

RATE = 30.0  # requests per second, whatever the fault
CONCURRENCY = 8
REQUEST_TIMEOUT = 30.0


@dataclass
class Outcome:
    """What one request got, as a client sees it."""

    started: float
    gateway: str
    stream: bool
    status: int | None = None  # None: no HTTP answer (connection refused or reset)
    request_id: str | None = None
    # ok | http_error | connection_error | stream_error (an error event after 200) |
    # passed_off (a stream that ended cleanly without a finish reason or an error event)
    kind: str = "ok"
    detail: str = ""
    latency: float = 0.0


@dataclass
class Load:
    """Requests at RATE over the live gateways until stopped."""

    gateways: Any  # () -> list of base URLs
    stream_share: float = 0.25
    prompts: int | None = None  # a pool of repeated prompts (cache traffic), else unique ones
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _sent: int = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2, force_close=False)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            slots = asyncio.Semaphore(CONCURRENCY)
            pending: set[asyncio.Task[None]] = set()
            started = time.monotonic()
            while not self._stop.is_set():
                due = started + self._sent / RATE
                delay = due - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
                    continue
                await slots.acquire()
                self._sent += 1
                task = asyncio.create_task(self._one(session, self._sent))
                pending.add(task)
                task.add_done_callback(lambda t: (pending.discard(t), slots.release()))
            if pending:
                await asyncio.wait(pending)

    async def _one(self, session: aiohttp.ClientSession, n: int) -> None:
        urls = self.gateways()
        stream = int(n * self.stream_share) != int((n - 1) * self.stream_share)
        text = f"chaos {n % self.prompts}" if self.prompts else f"chaos {uuid.uuid4().hex}"
        body = {
            "model": "current",
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        }
        headers = {} if self.prompts else {"cache-control": "no-cache"}
        outcome = Outcome(time.monotonic(), "", stream)
        # A load balancer tries the next replica when a connection is refused (nothing was
        # sent); a request cut after it was sent is not retried (POST is not idempotent).
        first = n % len(urls) if urls else 0
        for url in urls[first:] + urls[:first] or [""]:
            outcome.gateway = url
            try:
                await self._send(session, url, body, headers, outcome)
                break
            except aiohttp.ClientConnectorError as exc:
                outcome.kind, outcome.detail = "connection_error", type(exc).__name__
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome.kind = "stream_error" if outcome.status == 200 else "connection_error"
                outcome.detail = type(exc).__name__
                break
        outcome.latency = time.monotonic() - outcome.started
        self.outcomes.append(outcome)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        outcome: Outcome,
    ) -> None:
        if not url:
            raise aiohttp.ClientConnectorError(None, OSError("no live gateway"))  # type: ignore[arg-type]
        async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as resp:
            outcome.status = resp.status
            outcome.request_id = resp.headers.get("x-request-id")
            raw = await resp.read()
        outcome.kind = "ok" if resp.status == 200 else "http_error"
        if resp.status != 200:
            outcome.detail = str(resp.status)
        elif body["stream"]:
            outcome.kind, outcome.detail = stream_end(raw)


def stream_end(raw: bytes) -> tuple[str, str]:
    """How a complete SSE body ended: ok (a finish reason), stream_error (an error event) or
    passed_off (neither: a client would take the cut answer for a whole one)."""
    finish = error = False
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("event:") and "error" in line:
            error = True
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            continue
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("error"):
            error = True
        for choice in event.get("choices") or [] if isinstance(event, dict) else []:
            if choice.get("finish_reason"):
                finish = True
    if error:
        return "stream_error", "error event"
    return ("ok", "") if finish else ("passed_off", "no finish_reason")
