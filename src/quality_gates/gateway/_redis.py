"""Redis as an accelerator, never a dependency of an answer.

`RedisLink` knows whether Redis answers. While it does, the cache and the rate limiter use
it (shared by every replica); the first failed call marks it down (one log line), and from
then on they use their in-process fallbacks without trying Redis on the request path. A
background task pings Redis with backoff; when it answers again the link is marked up (one
log line with the outage's length) and the shared breaker states are read back
(`on_back`). Counts and entries made locally during the outage stay local: the limits were
enforced per process meanwhile, which is what a gateway without Redis does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from quality_gates.gateway._cache import CachedAnswer, MemoryCache, RedisCache
from quality_gates.gateway._limits import Limit, MemoryRateLimiter, RedisRateLimiter, Verdict

log = logging.getLogger("quality_gates.gateway")

# A Redis call on the request path gives up after this long (then the link is down and the
# in-process fallback answers); a hung Redis costs at most this, once.
REDIS_TIMEOUT_S = 0.5
FIRST_RETRY_S = 0.25
# What a lost or hung Redis raises (the client's errors, the socket's, our own timeout).
REDIS_ERRORS = (RedisError, OSError, TimeoutError)
MAX_RETRY_S = 2.0


def redis_client(url: str) -> Any:
    """An asyncio Redis client with bounded connect and read times."""
    import redis.asyncio as aioredis

    return aioredis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )


class RedisLink:
    """Up or down; pings with backoff while down and calls `on_back` when it answers."""

    def __init__(self, client: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self.up = True
        self.down_since: float | None = None
        self.outages = 0
        self.fallbacks = 0  # calls answered in process because Redis was down or failed
        self.on_back: list[Callable[[], Awaitable[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def lost(self, exc: BaseException) -> None:
        """A call failed: mark down (log once) and start pinging."""
        self.fallbacks += 1
        if not self.up:
            return
        self.up = False
        self.down_since = self.clock()
        self.outages += 1
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.error(
            "Redis lost (%s): serving on in-process cache, rate limits and breakers until it "
            "is back",
            text,
            extra={"category": "SYSTEM"},
        )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._reconnect(), name="qg-redis-reconnect")

    async def _reconnect(self) -> None:
        delay = FIRST_RETRY_S
        while not self.up:
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S * 2):
                    await self.client.ping()
            except Exception:
                delay = min(MAX_RETRY_S, delay * 2)
                continue
            lasted = self.clock() - (self.down_since or self.clock())
            self.up = True
            self.down_since = None
            log.warning(
                "Redis back after %.1f s: shared cache, rate limits and breakers resumed",
                lasted,
                extra={"category": "SYSTEM"},
            )
            for callback in self.on_back:
                try:
                    await callback()
                except Exception as exc:  # the next periodic resync will catch up
                    log.warning("resynchronising from Redis failed: %s", exc)

    async def close(self) -> None:
        """Stop pinging."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


class FallbackCache:
    """The Redis cache while Redis answers, the in-process cache otherwise."""

    def __init__(self, shared: RedisCache, local: MemoryCache, link: RedisLink) -> None:
        self.shared = shared
        self.local = local
        self.link = link

    async def get(self, key: str, now: float) -> tuple[CachedAnswer, bool] | None:
        """The entry and whether it is fresh."""
        if self.link.up:
            try:
                return await self.shared.get(key, now)
            except REDIS_ERRORS as exc:
                self.link.lost(exc)
        else:
            self.link.fallbacks += 1
        return await self.local.get(key, now)

    async def put(self, key: str, answer: CachedAnswer) -> None:
        """Store (never raises: an answer already paid for is answered)."""
        if self.link.up:
            try:
                await self.shared.put(key, answer)
                return
            except REDIS_ERRORS as exc:
                self.link.lost(exc)
        await self.local.put(key, answer)

    def stats(self) -> tuple[int, int]:
        """Entries held in process (those made while Redis was down)."""
        return self.local.stats()

    async def close(self) -> None:
        """Nothing beyond the parts."""
        await self.local.close()


class FallbackRateLimiter:
    """Redis counters while Redis answers, per-process windows otherwise."""

    def __init__(self, shared: RedisRateLimiter, local: MemoryRateLimiter, link: RedisLink) -> None:
        self.shared = shared
        self.local = local
        self.link = link

    async def check(self, scope: str, limit: Limit, tokens: int, now: float) -> Verdict:
        """Admit and count, or refuse with a retry-after."""
        if self.link.up:
            try:
                return await self.shared.check(scope, limit, tokens, now)
            except REDIS_ERRORS as exc:
                self.link.lost(exc)
        return await self.local.check(scope, limit, tokens, now)

    async def add_tokens(self, scope: str, tokens: int, now: float) -> None:
        """Correct the token count."""
        if self.link.up:
            try:
                await self.shared.add_tokens(scope, tokens, now)
                return
            except REDIS_ERRORS as exc:
                self.link.lost(exc)
        await self.local.add_tokens(scope, tokens, now)
