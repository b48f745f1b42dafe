"""Admission: rate limits (rpm/tpm per key and per provider), the retry budget, and the
concurrency limit with its optional bounded queue.

Rate limits use a sliding window of one minute approximated from two fixed windows (the
previous minute weighted by how much of it still overlaps), in process or in Redis so that
replicas share one count. Tokens are admitted on an estimate and corrected after the answer.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

WINDOW_S = 60.0
MIN_RETRY_AFTER_S = 1.0


@dataclass(frozen=True)
class Limit:
    """Requests and tokens per minute (None: unlimited)."""

    rpm: int | None = None
    tpm: int | None = None

    @property
    def unlimited(self) -> bool:
        """True when neither bound is set."""
        return self.rpm is None and self.tpm is None


@dataclass(frozen=True)
class Verdict:
    """Whether a request may go, and if not, when to try again."""

    allowed: bool
    retry_after: float = 0.0
    which: str = ""


def _weighted(previous: float, current: float, elapsed: float) -> float:
    return previous * max(0.0, 1.0 - elapsed / WINDOW_S) + current


def _wait(previous: float, current: float, elapsed: float, need: float, limit: float) -> float:
    """Seconds until `need` more fits under `limit` (lower bound, at least one second)."""
    if current + need > limit:
        return max(MIN_RETRY_AFTER_S, WINDOW_S - elapsed + 1.0)
    if previous <= 0:
        return MIN_RETRY_AFTER_S
    # previous * (1 - (elapsed + t) / W) + current + need <= limit
    t = (1.0 - (limit - current - need) / previous) * WINDOW_S - elapsed
    return max(MIN_RETRY_AFTER_S, math.ceil(t))


class RateLimiter(Protocol):
    """What admission needs of a limiter backend."""

    async def check(self, scope: str, limit: Limit, tokens: int, now: float) -> Verdict:
        """Admit one request of about `tokens` tokens, counting it, or say when to retry."""

    async def add_tokens(self, scope: str, tokens: int, now: float) -> None:
        """Correct the token count once the real usage is known."""


class MemoryRateLimiter:
    """Counters in this process."""

    def __init__(self) -> None:
        # scope -> [window index, prev requests, prev tokens, cur requests, cur tokens]
        self._windows: dict[str, list[float]] = {}

    def _window(self, scope: str, now: float) -> list[float]:
        index = float(now // WINDOW_S)
        window = self._windows.get(scope)
        if window is None:
            window = self._windows[scope] = [index, 0.0, 0.0, 0.0, 0.0]
        elif window[0] != index:
            if window[0] == index - 1:
                window[1:] = [window[3], window[4], 0.0, 0.0]
            else:
                window[1:] = [0.0, 0.0, 0.0, 0.0]
            window[0] = index
        return window

    async def check(self, scope: str, limit: Limit, tokens: int, now: float) -> Verdict:
        """Admit and count, or refuse with a retry-after."""
        window = self._window(scope, now)
        elapsed = now - window[0] * WINDOW_S
        if limit.rpm is not None and _weighted(window[1], window[3], elapsed) + 1 > limit.rpm:
            return Verdict(False, _wait(window[1], window[3], elapsed, 1, limit.rpm), "rpm")
        if limit.tpm is not None and _weighted(window[2], window[4], elapsed) + tokens > limit.tpm:
            return Verdict(False, _wait(window[2], window[4], elapsed, tokens, limit.tpm), "tpm")
        window[3] += 1
        window[4] += tokens
        return Verdict(True)

    async def add_tokens(self, scope: str, tokens: int, now: float) -> None:
        """Correct the token count."""
        self._window(scope, now)[4] += tokens


class RedisRateLimiter:
    """Counters in Redis, shared by every replica (one round trip per check)."""

    def __init__(self, client: Any, namespace: str = "qg:") -> None:
        self.client = client
        self.prefix = f"{namespace}rl:"

    async def check(self, scope: str, limit: Limit, tokens: int, now: float) -> Verdict:
        """Admit and count, or refuse with a retry-after."""
        index = int(now // WINDOW_S)
        elapsed = now - index * WINDOW_S
        cur, prev = f"{self.prefix}{scope}:{index}", f"{self.prefix}{scope}:{index - 1}"
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(prev, "r", "t")
        pipe.hmget(cur, "r", "t")
        (pr, pt), (cr, ct) = await pipe.execute()
        pr, pt, cr, ct = (float(v or 0) for v in (pr, pt, cr, ct))
        if limit.rpm is not None and _weighted(pr, cr, elapsed) + 1 > limit.rpm:
            return Verdict(False, _wait(pr, cr, elapsed, 1, limit.rpm), "rpm")
        if limit.tpm is not None and _weighted(pt, ct, elapsed) + tokens > limit.tpm:
            return Verdict(False, _wait(pt, ct, elapsed, tokens, limit.tpm), "tpm")
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(cur, "r", 1)
        pipe.hincrby(cur, "t", tokens)
        pipe.expire(cur, int(WINDOW_S * 3))
        await pipe.execute()
        return Verdict(True)

    async def add_tokens(self, scope: str, tokens: int, now: float) -> None:
        """Correct the token count."""
        key = f"{self.prefix}{scope}:{int(now // WINDOW_S)}"
        await self.client.hincrby(key, "t", tokens)


class RetryBudget:
    """Retries may add at most `ratio` of recent requests, plus `min_per_second`.

    Each request deposits `ratio` of a token, each retry withdraws one; the balance is
    capped (ten seconds of the minimum, or the retries of a hundred requests) so that a quiet
    period cannot bank a retry storm.
    """

    def __init__(self, ratio: float, min_per_second: int) -> None:
        self.ratio = ratio
        self.min_per_second = float(min_per_second)
        self.cap = max(10.0 * self.min_per_second, 100.0 * ratio, 1.0)
        self.balance = self.cap
        self._last = time.monotonic()

    def deposit(self) -> None:
        """A request arrived."""
        self.balance = min(self.cap, self.balance + self.ratio)

    def withdraw(self) -> bool:
        """Take one retry if the budget allows."""
        now = time.monotonic()
        self.balance = min(self.cap, self.balance + (now - self._last) * self.min_per_second)
        self._last = now
        if self.balance >= 1.0:
            self.balance -= 1.0
            return True
        return False


class QueueFull(Exception):
    """The concurrency limit is reached and the queue (if any) has no room."""


class QueueTimeout(Exception):
    """A request waited the whole queue timeout without getting a slot."""


class Admission:
    """At most `limit` requests in flight; with queuing, a bounded FIFO of waiters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0
        self.queue_enabled = False
        self.queue_size = 0
        self.queue_timeout = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.waiting_for_rate = 0

    @property
    def queue_depth(self) -> int:
        """Requests waiting now (for a slot or for a rate limit)."""
        return len(self._waiters) + self.waiting_for_rate

    def configure(self, enabled: bool, size: int, timeout: float) -> None:
        """Apply the live queue setting; disabling it releases nobody early (they time out)."""
        self.queue_enabled, self.queue_size, self.queue_timeout = enabled, size, timeout

    def has_room(self) -> bool:
        """Could one more request wait?"""
        return self.queue_enabled and self.queue_depth < self.queue_size

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if enabled; QueueFull / QueueTimeout otherwise."""
        if self.inflight < self.limit and not self._waiters:
            self.inflight += 1
            return
        if not self.has_room():
            raise QueueFull
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.queue_timeout)
        except TimeoutError:
            if future.done() and not future.cancelled():
                return  # the slot arrived as the timer fired: keep it
            future.cancel()
            raise QueueTimeout from None
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the client left after being handed a slot: pass it on
            else:
                future.cancel()
            raise
        finally:
            if future in self._waiters:
                self._waiters.remove(future)

    def release(self) -> None:
        """Give the slot to the next waiter, or free it."""
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self.inflight -= 1
