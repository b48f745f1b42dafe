"""Routine checks on a schedule (`routines:`): the runbook's prevention section as cron jobs.

The watch leader runs each enabled job when its cron expression comes due, as the command
line `quality-gates <command>` with the same config and store; a failed run raises an alert.

    routines:
      - name: daily-health-check
        cron: "0 6 * * *"                    # minute hour day-of-month month day-of-week
        command: validate --environment production
        timeout: 10m
        severity: warning                    # of the alert a failed run raises
        timezone: Europe/Paris               # the cron's clock (default UTC)
      - name: monthly-report
        cron: "0 7 1 * *"
        command: report --type detailed --output reports/monthly-{date}.md

`{date}` (YYYY-MM-DD) and `{month}` (YYYY-MM) in a command are the slot's date in the job's
timezone. Command names are checked when a run starts (the CLI is not imported here, so
`--help` and `status` stay fast): a command this quality-gates does not have fails that run.
"""

from __future__ import annotations

import shlex
import string
from typing import Literal

from pydantic import Field, field_validator

from quality_gates.config._base import NAME_PATTERN, Duration, StrictModel

Severity = Literal["critical", "warning", "info"]
IncidentType = Literal["provider", "performance", "quality", "infrastructure", "security", "cost"]

CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
PLACEHOLDERS = ("date", "month")
# Commands that never end or that would run the scheduler inside itself.
REFUSED_COMMANDS = ("watch", "serve", "routines", "init", "simulate", "dashboard")
RUNNER_OPTIONS = ("--config", "-c", "--db")
DEFAULT_TIMEOUT = 1800.0


def check_cron(expression: str) -> str:
    """The expression, normalised; ValueError says what a cron expression looks like."""
    text = " ".join(expression.split())
    fields = text.split(" ")
    accepted = (
        "5 fields: minute hour day-of-month month day-of-week (e.g. '0 6 * * *', "
        f"'*/15 * * * 1-5'), or one of {', '.join(CRON_MACROS)}"
    )
    if text.startswith("@"):
        if text not in CRON_MACROS:
            raise ValueError(f"{expression!r} is not a cron expression; use {accepted}")
        return text
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} has {len(fields)} field{'' if len(fields) == 1 else 's'}; "
            f"use {accepted}"
        )
    from croniter import croniter

    try:
        croniter(text)
    except (ValueError, KeyError) as exc:  # croniter's errors are ValueErrors (and KeyError)
        raise ValueError(
            f"{expression!r} is not a valid cron expression ({exc}); use {accepted}"
        ) from None
    return text


def check_timezone(name: str) -> str:
    """An IANA timezone name (`UTC`, `Europe/Paris`)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name == "UTC":
        return name
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r}; use an IANA name such as UTC, Europe/Paris or "
            "America/New_York"
        ) from None
    return name


def command_words(command: str) -> list[str]:
    """The command line as words, without a leading `quality-gates`."""
    words = shlex.split(command)
    if words and words[0] in ("quality-gates", "qg"):
        words = words[1:]
    return words


def command_name(command: str) -> str:
    """The quality-gates command a routine runs (`validate`, `pipeline`, ...)."""
    words = [w for w in command_words(command) if not w.startswith("-")]
    return words[0] if words else ""


def command_environment(command: str) -> str | None:
    """The environment a command names: `--environment X`, `-e X`, or `pipeline X`."""
    words = command_words(command)
    for i, word in enumerate(words):
        if word.startswith("--environment="):
            return word.split("=", 1)[1]
        if word in ("--environment", "-e") and i + 1 < len(words):
            return words[i + 1]
    positional = [w for w in words if not w.startswith("-")]
    if len(positional) >= 2 and positional[0] in ("pipeline", "canary"):
        return positional[1]
    return None


class RoutineJob(StrictModel):
    """One routine check: what to run, when, and how loudly a failure is raised."""

    name: str = Field(pattern=NAME_PATTERN)
    cron: str = Field(description="5-field cron expression (or @daily, @weekly, ...)")
    command: str = Field(
        description="a quality-gates command line, e.g. validate --environment production"
    )
    timeout: Duration = Field(
        DEFAULT_TIMEOUT, description="killed and recorded as error after this"
    )
    severity: Severity = Field("warning", description="of the alert a failed run raises")
    type: IncidentType = Field("quality", description="incident type of that alert (routing)")
    environment: str | None = Field(
        None, description="the alert's environment (default: the command's --environment)"
    )
    enabled: bool = True
    timezone: str = Field("UTC", description="the clock the cron expression reads")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("timeout must be above 0 (e.g. 10m)")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        try:
            words = command_words(value)
        except ValueError as exc:
            raise ValueError(f"command {value!r} cannot be split into words ({exc})") from None
        name = command_name(value)
        if not words or not name:
            raise ValueError(
                "command is empty; write a quality-gates command line such as "
                "'validate --environment production'"
            )
        if name in REFUSED_COMMANDS:
            raise ValueError(
                f"a routine cannot run {name!r} (it never ends or runs the scheduler itself); "
                "use a command that finishes, such as validate, pipeline or report"
            )
        for word in words:
            if word.split("=", 1)[0] in RUNNER_OPTIONS:
                raise ValueError(
                    f"{word.split('=', 1)[0]} is not allowed in a routine's command: "
                    "it runs with the watch's own config and store"
                )
        for _text, field, _spec, _conv in string.Formatter().parse(value):
            if field is not None and field not in PLACEHOLDERS:
                raise ValueError(
                    f"unknown placeholder {{{field}}} in the command; use "
                    f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
                )
        return value

    def alert_environment(self, environments: list[str]) -> str:
        """The environment a failed run's alert belongs to: the job's, the command's, else
        production (or the first environment defined)."""
        named = self.environment or command_environment(self.command)
        if named:
            return named
        if "production" in environments or not environments:
            return "production"
        return environments[0]


DEFAULT_ROUTINES = [
    RoutineJob(
        name="daily-health-check",
        cron="0 6 * * *",
        command="validate --environment production",
        timeout=600.0,
        severity="warning",
        type="infrastructure",
    ),
    RoutineJob(
        name="weekly-staging-pipeline",
        cron="0 3 * * 1",
        command="pipeline staging --model-id current",
        timeout=7200.0,
        severity="warning",
    ),
    RoutineJob(
        name="monthly-report",
        cron="0 7 1 * *",
        command="report --type detailed --output reports/monthly-{date}.md",
        timeout=1800.0,
        severity="info",
        environment="production",
    ),
    RoutineJob(
        name="monthly-rollback-drill",
        cron="0 10 2 * *",
        command="drill quality-regression --environment staging --scratch-store",
        timeout=3600.0,
        severity="warning",
    ),
]


class RoutineSettings(StrictModel):
    """The routine checks and how much of a run's output is kept."""

    jobs: list[RoutineJob] = Field(
        default_factory=lambda: [j.model_copy() for j in DEFAULT_ROUTINES]
    )
    output_limit: int = Field(
        4000, ge=200, le=100_000, description="characters of a run's output kept (its tail)"
    )
    grace: Duration = Field(
        60.0, description="past its timeout, a run still 'running' is taken as abandoned"
    )

    def job(self, name: str) -> RoutineJob | None:
        """The job called `name`."""
        return next((j for j in self.jobs if j.name == name), None)
