"""The HTTP layer every adapter shares: one aiohttp session per event loop, and the one seam
where aiohttp's and the socket's errors become quality_gates.errors."""

from __future__ import annotations

import asyncio
import email.utils
import time
import weakref
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from quality_gates.errors import (
    ConnectionFailed,
    ProviderError,
    ProviderTimeout,
    ServerError,
    StreamInterrupted,
)
from quality_gates.providers._h1 import BadResponse, ConnectFailed, H1Client

DEFAULT_CONNECT_TIMEOUT = 10.0
DNS_CACHE_SECONDS = 300
MAX_BODY_BYTES = 32 * 1024 * 1024  # a chat answer this large is a broken upstream


class _Pool:
    """A loop's session (the model-listing probe), its lean client (answers and streams)
    and how many adapters use them."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.h1 = H1Client()
        self.users = 0


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()


def lean_client(session: aiohttp.ClientSession) -> H1Client:
    """The lean client that goes with `session` (from acquire_session) on this loop."""
    pool = _POOLS.get(asyncio.get_running_loop())
    if pool is None or pool.session is not session:
        raise RuntimeError("lean_client: the session was not acquired on this loop")
    return pool.h1


def acquire_session() -> aiohttp.ClientSession:
    """The running loop's shared session (created on first use); pair with release_session."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None or pool.session.closed:
        # No global cap: each adapter bounds its own connections with a semaphore, so one
        # slow provider cannot starve the others of sockets.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=DNS_CACHE_SECONDS)
        pool = _Pool(aiohttp.ClientSession(connector=connector, auto_decompress=True))
        _POOLS[loop] = pool
    pool.users += 1
    return pool.session


async def release_session(session: aiohttp.ClientSession) -> None:
    """One adapter is done with `session`; the last one closes it."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None or pool.session is not session:
        if not session.closed:
            await session.close()
        return
    pool.users -= 1
    if pool.users <= 0:
        del _POOLS[loop]
        pool.h1.close()
        await session.close()


def transport_error(
    exc: BaseException, provider: str, *, timeout: float | None, streaming: bool = False
) -> ProviderError:
    """The taxonomy's error for an aiohttp or socket failure (`streaming`: after the first
    chunk reached the caller)."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        limit = f" after {timeout:g} s" if timeout else ""
        return ProviderTimeout(f"{provider}: no answer{limit}", provider=provider)
    detail = str(exc) or type(exc).__name__
    if streaming:
        return StreamInterrupted(f"{provider}: stream broke: {detail}", provider=provider)
    if isinstance(exc, aiohttp.ClientResponseError | BadResponse):
        # aiohttp raises this for an HTTP reply it cannot parse: the upstream is broken.
        return ServerError(f"{provider}: invalid HTTP response: {detail}", provider=provider)
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectFailed):
        return ConnectionFailed(f"{provider}: cannot connect: {detail}", provider=provider)
    return ConnectionFailed(f"{provider}: connection failed: {detail}", provider=provider)


TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    BadResponse,
    asyncio.TimeoutError,
    OSError,
)


def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """The whole call (connect, send, every byte read) within `seconds`."""
    return aiohttp.ClientTimeout(total=seconds, connect=min(seconds, DEFAULT_CONNECT_TIMEOUT))


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, `retry-after` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def parse_json_body(raw: bytes, content_type: str, provider: str) -> Any:
    """A successful answer's JSON; anything else is the upstream's fault (ServerError)."""
    if "json" not in content_type:
        shown = content_type or "no content type"
        raise ServerError(f"{provider}: expected JSON, got {shown}", provider=provider)
    try:
        return orjson.loads(raw)
    except ValueError:  # orjson.JSONDecodeError, also for bytes that are not UTF-8
        raise ServerError(
            f"{provider}: answer is not valid JSON ({len(raw)} bytes)", provider=provider
        ) from None


def loads_or_none(raw: bytes | str) -> Any:
    """JSON, or None when `raw` is not JSON (error bodies may be HTML from a proxy)."""
    try:
        return orjson.loads(raw)
    except ValueError:
        return None
