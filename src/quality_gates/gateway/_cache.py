"""Exact-match response cache: a hash of the normalised request -> the answer.

Entries are fresh for `ttl`, then kept as stale for `stale_for` so that emergency mode can
answer from them when every deployment failed. Only successful answers are stored. Two
backends: an in-process LRU bounded by entries and bytes, or Redis (shared by replicas).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from quality_gates.config import CacheSettings
from quality_gates.providers import Message

ENTRY_OVERHEAD_BYTES = 400  # dict, dataclass and key strings around the text


@dataclass(frozen=True)
class CachedAnswer:
    """What a cache hit gives back."""

    text: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    model_id: str
    provider: str
    deployment: str
    stored_at: float


def cache_key(
    environment: str,
    model_id: str,
    messages: Sequence[Message],
    temperature: float | None,
    max_tokens: int | None,
    stop: Sequence[str],
) -> str:
    """The hash of everything that shapes the answer (not the stream flag, not the key)."""
    payload = json.dumps(
        [
            environment,
            model_id,
            [[m.role, m.content] for m in messages],
            temperature,
            max_tokens,
            list(stop),
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache(Protocol):
    """What the gateway needs of a cache backend."""

    async def get(self, key: str, now: float) -> tuple[CachedAnswer, bool] | None:
        """The entry and whether it is fresh, or None."""

    async def put(self, key: str, answer: CachedAnswer) -> None:
        """Store a successful answer."""

    def stats(self) -> tuple[int, int]:
        """(entries, bytes) held in this process (0, 0 for a remote backend)."""

    async def close(self) -> None:
        """Release connections."""


class MemoryCache:
    """An LRU in this process, bounded by entry count and approximate bytes."""

    def __init__(self, settings: CacheSettings) -> None:
        self.ttl = settings.ttl
        self.keep = settings.ttl + settings.stale_for
        self.max_entries = settings.max_entries
        self.max_bytes = settings.max_bytes
        self._entries: OrderedDict[str, tuple[CachedAnswer, int]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str, now: float) -> tuple[CachedAnswer, bool] | None:
        """The entry and whether it is fresh; entries past their stale window are dropped."""
        found = self._entries.get(key)
        if found is None:
            return None
        answer, size = found
        age = now - answer.stored_at
        if age > self.keep:
            del self._entries[key]
            self._bytes -= size
            return None
        self._entries.move_to_end(key)
        return answer, age <= self.ttl

    async def put(self, key: str, answer: CachedAnswer) -> None:
        """Store, evicting the least recently used entries past either bound."""
        size = len(answer.text.encode()) + len(key) + ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[key] = (answer, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._bytes -= evicted

    def stats(self) -> tuple[int, int]:
        """(entries, bytes)."""
        return len(self._entries), self._bytes

    async def close(self) -> None:
        """Nothing to release."""


class RedisCache:
    """Entries in Redis with an expiry of ttl + stale_for; shared by every replica."""

    def __init__(self, client: Any, settings: CacheSettings, namespace: str = "qg:") -> None:
        self.client = client
        self.prefix = f"{namespace}cache:"
        self.ttl = settings.ttl
        self.keep_ms = int((settings.ttl + settings.stale_for) * 1000)

    async def get(self, key: str, now: float) -> tuple[CachedAnswer, bool] | None:
        """The entry and whether it is fresh."""
        raw = await self.client.get(self.prefix + key)
        if raw is None:
            return None
        try:
            answer = CachedAnswer(**json.loads(raw))
        except (TypeError, ValueError):
            return None
        return answer, now - answer.stored_at <= self.ttl

    async def put(self, key: str, answer: CachedAnswer) -> None:
        """Store with an expiry."""
        await self.client.set(
            self.prefix + key, json.dumps(asdict(answer), separators=(",", ":")), px=self.keep_ms
        )

    def stats(self) -> tuple[int, int]:
        """Entries live in Redis, not here."""
        return 0, 0

    async def close(self) -> None:
        """The shared Redis client is closed by the app."""
