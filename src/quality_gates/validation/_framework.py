"""A small check framework for `validate`: each check looks at one thing and returns PASS,
WARN or FAIL with the evidence it saw. Adding a check is one decorated function:

    @check("rollback-readiness", "previous-stable is set and healthy", order=50)
    async def rollback_ready(ctx: ValidationContext) -> list[CheckResult]:
        ...
        return [CheckResult("rollback-readiness", "PASS", "previous-stable -> claude-3-haiku")]

Checks may be sync or async; they run in `order`, each isolated: one that raises becomes a
FAIL naming the exception, never a crash of the whole run.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from quality_gates.errors import ConfigError, QualityGatesError

if TYPE_CHECKING:
    from quality_gates.config import LoadedConfig, QualityGatesConfig

Status = Literal["PASS", "WARN", "FAIL"]
STATUSES: tuple[Status, ...] = ("PASS", "WARN", "FAIL")  # in rising severity


@dataclass
class CheckResult:
    """One finding: which check, its verdict, one line, and what it saw."""

    check: str
    status: Status
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "check": self.check,
            "status": self.status,
            "summary": self.summary,
            "evidence": self.evidence,
        }


@dataclass
class ValidationContext:
    """What checks may look at: the environment, the config (or why it failed to load)."""

    environment: str
    config_path: Path | None
    loaded: LoadedConfig | None
    config_error: ConfigError | None = None
    probe_timeout: float = 10.0
    options: dict[str, Any] = field(default_factory=dict)
    fix: bool = False
    store_url: Any = None  # quality_gates.store.StoreURL, when the store could be located
    probes: dict[str, Any] = field(default_factory=dict)  # provider -> ProbeResult
    _conn: Any = None

    def conn(self) -> Any:
        """A store connection that works on an out-of-date schema (None without a store)."""
        if self._conn is None and self.store_url is not None:
            from quality_gates.store import Database

            self._conn = Database(self.store_url).shared()
        return self._conn

    def reload(self) -> None:
        """Read the config again after a fix rewrote it."""
        from quality_gates.config import load_config

        if self.config_path is not None:
            self.loaded = load_config(self.config_path)

    @property
    def config(self) -> QualityGatesConfig:
        """The validated config (checks that need it only run when it loaded)."""
        if self.loaded is None:
            raise ConfigError("the config did not load")
        return self.loaded.config

    def environment_models(self) -> list[str]:
        """Model ids the environment uses: its aliases and failover chains, in order."""
        env = self.config.environment(self.environment)
        if env is None:
            return []
        seen: dict[str, None] = {}
        for model in env.aliases.values():
            seen[model] = None
        for chain in env.failover_chains:
            for model in chain.models:
                seen[model] = None
        return list(seen)

    def environment_providers(self) -> list[str]:
        """Providers the environment sends traffic to: those of its models, and its traffic."""
        env = self.config.environment(self.environment)
        seen: dict[str, None] = {}
        for model_id in self.environment_models():
            model = self.config.model(model_id)
            if model is not None:
                seen[model.provider] = None
        for name in env.traffic if env is not None else ():
            seen[name] = None
        return list(seen)


CheckFunction = Callable[[ValidationContext], Awaitable[list[CheckResult]] | list[CheckResult]]


@dataclass(frozen=True)
class Check:
    """A registered check."""

    name: str
    title: str
    function: CheckFunction
    needs_config: bool = True
    order: int = 100


CHECKS: dict[str, Check] = {}


def check(
    name: str, title: str, *, needs_config: bool = True, order: int = 100
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check under `name` (its results should use that name or `name:detail`)."""

    def register(function: CheckFunction) -> CheckFunction:
        CHECKS[name] = Check(name, title, function, needs_config, order)
        return function

    return register


@dataclass
class ValidationReport:
    """Every result of one `validate` run."""

    environment: str
    results: list[CheckResult]
    duration_ms: float

    @property
    def status(self) -> Status:
        """The worst status found."""
        return STATUSES[max((STATUSES.index(r.status) for r in self.results), default=0)]

    @property
    def passed(self) -> bool:
        """No FAIL."""
        return self.status != "FAIL"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "environment": self.environment,
            "status": self.status,
            "passed": self.passed,
            "duration_ms": round(self.duration_ms, 1),
            "counts": {s: sum(r.status == s for r in self.results) for s in STATUSES},
            "results": [r.to_dict() for r in self.results],
        }


async def run_checks(ctx: ValidationContext, only: Iterable[str] | None = None) -> ValidationReport:
    """Run the registered checks (or `only` these names) in order."""
    started = time.perf_counter()
    wanted = set(only) if only else None
    results: list[CheckResult] = []
    for entry in sorted(CHECKS.values(), key=lambda c: (c.order, c.name)):
        if wanted is not None and entry.name not in wanted:
            continue
        if entry.needs_config and ctx.loaded is None:
            continue
        try:
            outcome = entry.function(ctx)
            found = await outcome if inspect.isawaitable(outcome) else outcome
        except QualityGatesError as exc:
            found = [CheckResult(entry.name, "FAIL", str(exc))]
        except Exception as exc:
            found = [
                CheckResult(
                    entry.name,
                    "FAIL",
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                )
            ]
        results.extend(found)
    return ValidationReport(ctx.environment, results, (time.perf_counter() - started) * 1000.0)
