"""Structured logs: one JSON object per line with `level` and `category`.

Log shippers parse the line; CloudWatch Logs filters it as the runbook does, by term
(`--filter-pattern "ERROR"`, `"SECURITY"`) or by field (`{ $.category = "SECURITY" }`).
Every error is logged with category ERROR whatever its subject, so the runbook's plain
"ERROR" search finds all of them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quality_gates.config import LogSettings

LOGGER = "quality_gates"
HANDLER_NAME = "quality-gates-structured"
CATEGORIES = (
    "ERROR",
    "SECURITY",
    "ALERT",
    "INCIDENT",
    "NOTIFICATION",
    "AUDIT",
    "PERFORMANCE",
    "SYSTEM",
    "ROUTINE",
)
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "category", "fields"}


class JsonFormatter(logging.Formatter):
    """`{"timestamp", "level", "category", "logger", "message", ...fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        category = getattr(record, "category", None) or (
            "ERROR" if record.levelno >= logging.ERROR else "SYSTEM"
        )
        if record.levelno >= logging.ERROR:
            category = "ERROR" if category == "SYSTEM" else category
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "category": category,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`2026-11-27T10:00:00Z ERROR [NOTIFICATION] message key=value` for terminals."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        category = getattr(record, "category", None) or "SYSTEM"
        fields = getattr(record, "fields", None) or {}
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{when} {record.levelname} [{category}] {record.getMessage()}" + (
            f" {extra}" if extra else ""
        )


def configure_logging(settings: LogSettings | None = None, stream: IO[str] | None = None) -> None:
    """Send the package's logs to stderr (or the configured file) in the configured format."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        if handler.get_name() == HANDLER_NAME:
            logger.removeHandler(handler)
            handler.close()
    new: logging.Handler
    if settings is not None and settings.file:
        new = logging.FileHandler(settings.file, encoding="utf-8")
    else:
        new = logging.StreamHandler(stream or sys.stderr)
    text = settings is not None and settings.format == "text"
    new.setFormatter(TextFormatter() if text else JsonFormatter())
    new.set_name(HANDLER_NAME)  # a reconfigure replaces our handler, not others
    logger.addHandler(new)
    logger.setLevel(settings.level if settings is not None else "INFO")
    logger.propagate = False


def log_event(
    logger: logging.Logger, level: int, category: str, message: str, **fields: Any
) -> None:
    """Log `message` with a category and structured fields."""
    logger.log(level, message, extra={"category": category, "fields": fields})
