"""The response cache: keys, LRU bounds, freshness and stale entries."""

from __future__ import annotations

from quality_gates.config import CacheSettings
from quality_gates.gateway._cache import CachedAnswer, MemoryCache, cache_key
from quality_gates.providers import Message

MSG = (Message("user", "hello"),)


def answer(text: str = "hi", at: float = 0.0) -> CachedAnswer:
    return CachedAnswer(text, "stop", 1, 1, "m", "p", "p/m", at)


def test_the_key_depends_on_what_shapes_the_answer() -> None:
    base = cache_key("production", "m", MSG, 0.0, 10, ())
    assert base == cache_key("production", "m", MSG, 0.0, 10, ())
    assert base != cache_key("staging", "m", MSG, 0.0, 10, ())
    assert base != cache_key("production", "n", MSG, 0.0, 10, ())
    assert base != cache_key("production", "m", (Message("user", "hello!"),), 0.0, 10, ())
    assert base != cache_key("production", "m", MSG, 0.5, 10, ())
    assert base != cache_key("production", "m", MSG, 0.0, 11, ())
    assert base != cache_key("production", "m", MSG, 0.0, 10, ("\n",))


async def test_entries_are_fresh_then_stale_then_gone() -> None:
    cache = MemoryCache(CacheSettings(ttl=10, stale_for=100))
    await cache.put("k", answer(at=0.0))
    assert (await cache.get("k", 5.0))[1] is True
    assert (await cache.get("k", 50.0))[1] is False
    assert await cache.get("k", 111.0) is None
    assert cache.stats() == (0, 0)


async def test_lru_evicts_by_count_and_by_bytes() -> None:
    cache = MemoryCache(CacheSettings(max_entries=2, max_bytes=10_000))
    for key in "abc":
        await cache.put(key, answer())
    assert await cache.get("a", 0.0) is None
    assert cache.stats()[0] == 2
    small = MemoryCache(CacheSettings(max_entries=100, max_bytes=2_000))
    await small.put("x", answer("x" * 900))
    await small.get("x", 0.0)
    await small.put("y", answer("y" * 900))
    assert await small.get("x", 0.0) is None  # over the byte bound: the older goes
    assert small.stats()[1] <= 2_000
