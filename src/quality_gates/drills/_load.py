"""The drill's steady load: `rate` requests per second against the gateway, every fourth a
stream, each outcome kept with when it was sent and who answered it.

Prompts cycle through a pool that repeats less often than the drill's cache stays fresh, so
in normal service every request reaches a provider, and every prompt has an answer in the
cache (stale by then) for emergency mode to serve when every provider is down.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

STREAM_EVERY = 4
REQUEST_TIMEOUT = 30.0
STOP_GRACE = 30.0


@dataclass
class Outcome:
    """One client request as the client saw it."""

    n: int
    sent_at: float
    done_at: float
    status: int  # HTTP status; 0 when the transport failed
    stream: bool
    provider: str = ""
    model: str = ""
    cache: str = ""
    degraded: bool = False
    broken: bool = False  # a stream that began with 200 and did not end with [DONE]
    error: str = ""

    @property
    def failed(self) -> bool:
        """Client-visible failure: non-2xx, a transport error or a broken stream."""
        return not 200 <= self.status < 300 or self.broken

    @property
    def upstream(self) -> str | None:
        """The provider that answered live (not from the cache), if any."""
        if self.failed or self.cache in ("hit", "stale"):
            return None
        return self.provider or None


@dataclass
class SteadyLoad:
    """Sends until `stop()`; `outcomes` fills as answers come back."""

    base_url: str
    rate: float
    pool: int
    model: str = "current"
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sending in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="qg-drill-load")

    async def stop(self) -> None:
        """Stop sending and wait (bounded) for the answers still in flight."""
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, STOP_GRACE + REQUEST_TIMEOUT)

    async def _run(self) -> None:
        import aiohttp

        pending: set[asyncio.Task[None]] = set()
        # A fresh connection per request: a kept-alive one that the server closes at that
        # instant fails in the client, which would be no failure of the gateway's.
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            started = time.monotonic()
            for n in itertools.count():
                if self._stop.is_set():
                    break
                task = asyncio.create_task(self._one(session, n))
                pending.add(task)
                task.add_done_callback(pending.discard)
                # Paced on the clock, not on sleeps, so the rate holds under load.
                delay = started + (n + 1) / self.rate - time.monotonic()
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, delay))
                except TimeoutError:
                    pass
            if pending:
                await asyncio.wait(pending, timeout=STOP_GRACE)

    async def _one(self, session: Any, n: int) -> None:
        import aiohttp

        stream = n % STREAM_EVERY == STREAM_EVERY - 1
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": f"drill load request {n % self.pool}"}],
            "max_tokens": 16,
            "stream": stream,
        }
        sent = time.time()
        outcome = Outcome(n, sent, sent, 0, stream)
        try:
            async with session.post(f"{self.base_url}/v1/chat/completions", json=body) as resp:
                outcome.status = resp.status
                outcome.provider = resp.headers.get("x-qg-provider", "")
                outcome.model = resp.headers.get("x-qg-model", "")
                outcome.cache = resp.headers.get("x-qg-cache", "")
                outcome.degraded = resp.headers.get("x-qg-degraded") == "1"
                text = (await resp.read()).decode("utf-8", "replace")
                if resp.status >= 300:
                    outcome.error = text[:200]
                elif stream and ("[DONE]" not in text or '"error"' in text):
                    outcome.broken = True
                    outcome.error = "stream ended without [DONE]" + (
                        " (error event)" if '"error"' in text else ""
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome.broken = outcome.status != 0 and stream
            outcome.error = f"{type(exc).__name__}: {exc}"
            if not outcome.broken:
                outcome.status = 0
        outcome.done_at = time.time()
        self.outcomes.append(outcome)
