"""Every error quality-gates raises on purpose, in one tree.

Each class carries the CLI exit code (see CONVENTIONS.md) and the HTTP status the gateway
answers with. Foreign errors (aiohttp, sqlite3, psycopg, botocore, pydantic) are translated
into this tree at one seam per library; nothing else catches them.

    QualityGatesError                     exit 1  http 500
    ├── UsageError                        exit 2  http 400   bad flag values, unknown names
    ├── ConfigError                       exit 2  http 500   quality-gates.yaml is wrong
    │   └── CredentialMissing             exit 2             a provider's env variable is unset
    ├── StoreError                        exit 4  http 503   the store cannot be reached
    │   ├── StoreUnavailable              exit 4  http 503   its connection is lost (reconnecting)
    │   ├── StoreSchemaError              exit 2             migrations pending or unknown
    │   └── ConflictError                 exit 1  http 409   a concurrent change won
    ├── RegistryError                     exit 1  http 409   an operation the registry refuses
    │   └── NotFound                      exit 1  http 404
    ├── ProviderError                     exit 4  http 502   an upstream call failed
    │   ├── ProviderTimeout       retryable       http 504
    │   ├── RateLimited           retryable       http 429   (retry_after)
    │   ├── ServerError           retryable       http 502
    │   ├── Overloaded            retryable       http 503
    │   ├── ConnectionFailed      retryable       http 502
    │   ├── AuthError                             http 502   our credentials were refused
    │   ├── BadRequest                            http 400
    │   ├── ContentFiltered                       http 400
    │   └── StreamInterrupted                     http 502   broke after the first byte
    ├── GateError                         exit 4             a gate could not complete
    │   ├── TooLittleTraffic              exit 3             a canary could not reach its sample
    │   └── GateInterrupted               exit 130           Ctrl-C; the run can be resumed
    └── NotificationError                 exit 4             a channel could not be reached
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONDITIONAL = 3
EXIT_INCOMPLETE = 4


class QualityGatesError(Exception):
    """Base of every deliberate error; `str(err)` is the one line a user sees."""

    exit_code: ClassVar[int] = EXIT_FAILED
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(QualityGatesError):
    exit_code = EXIT_USAGE
    http_status = 400


class ConfigError(QualityGatesError):
    """The configuration is invalid; `problems` holds one line per finding."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or []

    def __str__(self) -> str:
        if not self.problems:
            return super().__str__()
        return "\n".join(self.problems)


class CredentialMissing(ConfigError):
    """A provider or channel needs an environment variable that is not set."""

    def __init__(self, variable: str, *, needed_by: str) -> None:
        super().__init__(
            f"environment variable {variable} is not set (needed by {needed_by})",
            hint=f"export {variable}=... or change the variable name in the config",
        )
        self.variable = variable
        self.needed_by = needed_by


class StoreError(QualityGatesError):
    exit_code = EXIT_INCOMPLETE
    http_status = 503


class StoreUnavailable(StoreError):
    """The store's connection is lost or cannot be opened; callers retry after a backoff."""


class StoreSchemaError(StoreError):
    exit_code = EXIT_USAGE


class ConflictError(StoreError):
    exit_code = EXIT_FAILED
    http_status = 409


class RegistryError(QualityGatesError):
    http_status = 409


class NotFound(RegistryError):
    http_status = 404


class ProviderError(QualityGatesError):
    """An upstream call failed. `error_class` names it in telemetry and metrics."""

    exit_code = EXIT_INCOMPLETE
    http_status = 502
    retryable: ClassVar[bool] = False
    error_class: ClassVar[str] = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.provider = provider
        self.status = status
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    retryable = True
    http_status = 504
    error_class = "timeout"


class RateLimited(ProviderError):
    retryable = True
    http_status = 429
    error_class = "rate_limited"


class ServerError(ProviderError):
    retryable = True
    http_status = 502
    error_class = "server_error"


class Overloaded(ProviderError):
    retryable = True
    http_status = 503
    error_class = "overloaded"


class ConnectionFailed(ProviderError):
    retryable = True
    http_status = 502
    error_class = "connection"


class AuthError(ProviderError):
    http_status = 502
    error_class = "auth"


class BadRequest(ProviderError):
    http_status = 400
    error_class = "bad_request"


class ContentFiltered(ProviderError):
    http_status = 400
    error_class = "content_filtered"


class StreamInterrupted(ProviderError):
    """The upstream stream broke after the first byte reached the client."""

    http_status = 502
    error_class = "stream_interrupted"


PROVIDER_ERROR_CLASSES: tuple[type[ProviderError], ...] = (
    ProviderTimeout,
    RateLimited,
    ServerError,
    Overloaded,
    ConnectionFailed,
    AuthError,
    BadRequest,
    ContentFiltered,
    StreamInterrupted,
)
ERROR_CLASS_NAMES: tuple[str, ...] = tuple(c.error_class for c in PROVIDER_ERROR_CLASSES)


class GateError(QualityGatesError):
    exit_code = EXIT_INCOMPLETE


class TooLittleTraffic(GateError):
    """A canary would not reach its minimum sample: CONDITIONAL, said before it starts."""

    exit_code = EXIT_CONDITIONAL


class GateInterrupted(GateError):
    """The user stopped a gate; what was done is stored and the run can be resumed."""

    exit_code = 130


class NotificationError(QualityGatesError):
    exit_code = EXIT_INCOMPLETE
