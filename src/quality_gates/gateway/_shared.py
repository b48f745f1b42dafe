"""Breaker state shared across gateway processes through Redis (when QG_REDIS_URL is set).

Each process counts its own outcomes; a transition (open, half-open, closed) is written to
the hash `<namespace>breaker:<env>` and published on the channel of the same name. Every process
subscribes and adopts the others' transitions, and re-reads the hash every few seconds in
case a message was missed, so a breaker opened by one replica is open on all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from quality_gates.gateway._breaker import HALF_OPEN, BreakerBoard

log = logging.getLogger("quality_gates.gateway")
RESYNC_S = 2.0


class SharedBreakers:
    """Publishes local breaker transitions and applies remote ones."""

    def __init__(
        self,
        client: Any,
        environment: str,
        instance: str,
        board: BreakerBoard,
        namespace: str = "qg:",
        link: Any = None,
    ) -> None:
        self.client = client
        self.link = link  # a RedisLink: its state is logged there, once per change
        self.key = f"{namespace}breaker:{environment}"
        self.instance = instance
        self.board = board
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self.published = 0
        self.applied = 0

    def on_transition(self, deployment: str, state: str, at: float) -> None:
        """Breaker listener: share a local transition (half-open stays local)."""
        if state == HALF_OPEN:
            return
        message = json.dumps(
            {"deployment": deployment, "state": state, "at": at, "by": self.instance}
        )
        task = asyncio.get_running_loop().create_task(self._publish(deployment, message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _down(self) -> bool:
        return self.link is not None and not self.link.up

    def _failed(self, what: str, exc: Exception) -> None:
        if self.link is not None:
            self.link.lost(exc)  # logs once per outage
        else:
            log.warning("%s through Redis failed: %s", what, exc)

    async def _publish(self, deployment: str, message: str) -> None:
        # While Redis is down the transition stays local; the hash is rewritten by the next
        # transition, and the others re-read it when Redis is back.
        if self._down():
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(self.key, deployment, message)
            pipe.publish(self.key, message)
            await pipe.execute()
            self.published += 1
        except Exception as exc:
            self._failed("sharing a breaker transition", exc)

    def _apply(self, raw: bytes | str) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            return
        if not isinstance(data, dict) or data.get("by") == self.instance:
            return
        deployment, state = data.get("deployment"), data.get("state")
        if not isinstance(deployment, str) or state not in ("open", "closed"):
            return
        self.board.get(deployment).apply_remote(str(state), float(data.get("at") or 0.0))
        self.applied += 1

    async def resync(self) -> None:
        """Adopt every shared state (at start and periodically)."""
        for raw in (await self.client.hgetall(self.key)).values():
            self._apply(raw)

    async def start(self) -> None:
        """Read the shared states and start listening."""
        if not self._down():
            try:
                await self.resync()
            except Exception as exc:
                self._failed("reading the shared breakers", exc)
        self._tasks = [
            asyncio.get_running_loop().create_task(self._listen(), name="qg-breaker-sub"),
            asyncio.get_running_loop().create_task(self._resync_loop(), name="qg-breaker-sync"),
        ]

    async def _listen(self) -> None:
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.key)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._apply(message["data"])
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except Exception as exc:
                self._failed("the breaker subscription", exc)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(1.0)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_S)
            if self._down():
                continue
            try:
                await self.resync()
            except Exception as exc:
                self._failed("resynchronising the breakers", exc)

    async def close(self) -> None:
        """Stop listening."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
