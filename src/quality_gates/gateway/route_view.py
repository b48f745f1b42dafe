"""Which model answers an alias now, computed with the gateway's own routing (`RouteTable`
and `first_choice_shares`), so that a command can say when provider weights send an
alias's requests to another model than the alias names, instead of leaving it silent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from quality_gates.config import QualityGatesConfig
from quality_gates.gateway._routing import RouteTable, first_choice_shares
from quality_gates.gateway.failover import describe_weights, open_breakers_of
from quality_gates.gateway.runtime import forced_breakers
from quality_gates.store import settings as runtime_settings
from quality_gates.store.db import Connection
from quality_gates.store.registry import list_aliases


@dataclass
class AliasRoute:
    """An alias's model and where its requests go first."""

    environment: str
    alias: str
    model_id: str
    shares: dict[str, float] = field(default_factory=dict)  # deployment id -> share
    weights: dict[str, float] = field(default_factory=dict)
    strategy: str = "weighted"

    @property
    def own_share(self) -> float:
        """The share answered first by the alias's own model."""
        return sum(s for d, s in self.shares.items() if d.endswith(f"/{self.model_id}"))

    def describe(self) -> str:
        """`current -> claude-3-5-haiku: bedrock/claude-3-5-haiku 100%`."""
        parts = ", ".join(
            f"{d} {s:.0%}" for d, s in sorted(self.shares.items(), key=lambda kv: -kv[1])
        )
        return f"{self.alias} -> {self.model_id}: {parts or 'no deployment'}"

    def warning(self) -> str | None:
        """Said when weights (not the alias, not an open breaker) pick another model."""
        if self.own_share >= 0.999:
            return None
        others = {d: s for d, s in self.shares.items() if not d.endswith(f"/{self.model_id}")}
        moved = ", ".join(f"{d} {s:.0%}" for d, s in sorted(others.items()))
        return (
            f"{self.environment}: `{self.alias}` names {self.model_id}, yet its requests go "
            f"first to {moved} (provider weights {describe_weights(self.weights)} under "
            f"{self.strategy} routing choose the model); `quality-gates config set "
            "--traffic-distribution reset` returns to the config's weights"
        )


def alias_route(
    conn: Connection, config: QualityGatesConfig, environment: str, alias: str = "current"
) -> AliasRoute | None:
    """The alias's route now (breakers as the running gateways report them)."""
    now = time.time()
    aliases = {a.name: a.model_id for a in list_aliases(conn, environment)}
    if alias not in aliases:
        return None
    runtime = runtime_settings.get_all(conn, environment)
    table = RouteTable(config, environment, aliases, runtime)
    forced = {d for d, (state, _) in forced_breakers(runtime, now).items() if state == "open"}
    providers = {d.provider for d in table.chain(aliases[alias])}
    live_open = {d for p in providers for d in open_breakers_of(conn, environment, p)}
    closed = forced | live_open

    def is_open(deployment: str) -> bool:
        return deployment in closed

    shares = first_choice_shares(table, alias, now=now, is_open=is_open)
    return AliasRoute(
        environment, alias, aliases[alias], shares, table.weights(now), table.strategy
    )
