"""HTTP status codes to the error taxonomy; each protocol refines this with its error body."""

from __future__ import annotations

from quality_gates.errors import (
    AuthError,
    BadRequest,
    ContentFiltered,
    Overloaded,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    ServerError,
)

ERROR_CLASSES: dict[str, type[ProviderError]] = {
    "timeout": ProviderTimeout,
    "rate_limited": RateLimited,
    "server_error": ServerError,
    "overloaded": Overloaded,
    "auth": AuthError,
    "bad_request": BadRequest,
    "content_filtered": ContentFiltered,
}


def class_for_status(status: int) -> type[ProviderError]:
    """The error class an HTTP status means when the body says nothing more precise."""
    if status in (401, 403, 407):
        return AuthError
    if status in (408, 504):
        return ProviderTimeout
    if status == 429:
        return RateLimited
    if status in (503, 529):
        return Overloaded
    if 400 <= status < 500:
        return BadRequest
    return ServerError


def make_error(
    cls: type[ProviderError],
    provider: str,
    status: int,
    message: str,
    retry_after: float | None = None,
) -> ProviderError:
    """An error with the one line an operator reads: provider, status, upstream message."""
    text = " ".join(message.split())[:300] or "no message"
    return cls(
        f"{provider}: HTTP {status}: {text}",
        provider=provider,
        status=status,
        retry_after=retry_after if cls is RateLimited or retry_after else None,
    )
