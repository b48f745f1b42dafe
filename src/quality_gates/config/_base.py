"""Shared building blocks of the config models: strict models and unit-aware field types."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from quality_gates.config._secrets import (
    ENV_VAR_PATTERN,
    env_variables_in,
    is_env_reference,
    looks_like_secret,
    resolve_env,
)
from quality_gates.units import parse_duration, parse_latency_ms, parse_ratio


class StrictModel(BaseModel):
    """A config section: unknown keys are errors (with a suggestion), values are validated."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


def _duration(value: Any) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value, bare_unit="s")
    raise ValueError(f"expected a duration such as 30s or 5m, got {value!r}")


def _ratio(value: Any) -> float:
    if isinstance(value, str | int | float):
        return parse_ratio(value)
    raise ValueError(f"expected a percentage such as 2% or 0.02, got {value!r}")


def _latency(value: Any) -> float:
    if isinstance(value, str | int | float):
        return parse_latency_ms(value)
    raise ValueError(f"expected a latency such as 1500ms or 1.5s, got {value!r}")


# 15 significant digits, so a long duration (a 400-day retention) is written without an
# exponent that the duration parser would refuse on the way back.
Duration = Annotated[float, BeforeValidator(_duration), PlainSerializer(lambda v: f"{v:.15g}s")]
"""Seconds; written as `30s`, `5m`, `2h` (a bare number is seconds)."""

Ratio = Annotated[float, BeforeValidator(_ratio)]
"""A fraction between 0 and 1; written as `2%` or `0.02`."""

LatencyMs = Annotated[float, BeforeValidator(_latency)]
"""Milliseconds; written as `1500ms`, `1.5s` or a bare number of milliseconds."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"

__all__ = [
    "ENV_VAR_PATTERN",
    "NAME_PATTERN",
    "Duration",
    "LatencyMs",
    "Ratio",
    "StrictModel",
    "env_variables_in",
    "is_env_reference",
    "looks_like_secret",
    "resolve_env",
]
