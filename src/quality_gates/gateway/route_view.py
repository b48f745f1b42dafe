"""Where each alias's requests go now, computed with the gateway's own routing
(`RouteTable.tiers` through `first_choice_shares`), so that `status`, the dashboard and
every traffic lever print the route the gateway takes, and say why when an alias's requests
are not answered by the model it names (a drain by live weights, open breakers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from quality_gates.gateway._routing import RouteTable, describe_weights, first_choice_shares
from quality_gates.gateway.runtime import forced_breakers
from quality_gates.gateway.status import open_breakers
from quality_gates.store import settings as runtime_settings
from quality_gates.store.db import Connection
from quality_gates.store.registry import list_aliases

if TYPE_CHECKING:
    from quality_gates.config import ConfigSnapshot, QualityGatesConfig


@dataclass
class AliasRoute:
    """An alias's model, where its requests go first, and why."""

    environment: str
    alias: str
    model_id: str
    shares: dict[str, float] = field(default_factory=dict)  # deployment id -> share
    weights: dict[str, float] = field(default_factory=dict)
    strategy: str = "weighted"
    chain: list[str] = field(default_factory=list)  # the model's chain after the model
    drained: dict[str, float] = field(default_factory=dict)  # provider -> share kept
    open: list[str] = field(default_factory=list)  # deployments behind open breakers

    @property
    def own_share(self) -> float:
        """The share answered first by the alias's own model."""
        return sum(s for d, s in self.shares.items() if d.endswith(f"/{self.model_id}"))

    def describe(self) -> str:
        """`current -> claude-3-5-haiku: bedrock 100%; chain gemini-1-5-flash, llama-3-1-70b`
        (deployment ids where another model answers first)."""
        mixed = any(not d.endswith(f"/{self.model_id}") for d in self.shares)
        parts = ", ".join(
            f"{d if mixed else d.split('/', 1)[0]} {_pct(s)}"
            for d, s in sorted(self.shares.items(), key=lambda kv: -kv[1])
        )
        chain = f"; chain {', '.join(self.chain)}" if self.chain else "; no chain"
        return f"{self.alias} -> {self.model_id}: {parts or 'no deployment'}{chain}"

    def to_json(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "alias": self.alias,
            "model_id": self.model_id,
            "first_choice": self.shares,
            "chain": self.chain,
            "strategy": self.strategy,
            "drained": self.drained,
            "open_breakers": self.open,
            "route": self.describe(),
            "why": self.why(),
        }

    def why(self) -> str | None:
        """Why part of the alias's requests go first to another model, or None."""
        if self.own_share >= 0.999:
            return None
        others = {d: s for d, s in self.shares.items() if not d.endswith(f"/{self.model_id}")}
        moved = ", ".join(f"{d} {_pct(s)}" for d, s in sorted(others.items()))
        reasons = []
        for provider, kept in sorted(self.drained.items()):
            reasons.append(
                f"the weights {describe_weights(self.weights)} leave {provider} "
                f"{_pct(kept)} of its models' requests"
            )
        if self.open:
            reasons.append(f"breaker open on {', '.join(self.open)}")
        return (
            f"{self.environment}: `{self.alias}` names {self.model_id}; {moved} of its requests "
            f"go first to its failover chain ({'; '.join(reasons) or 'no serving deployment'})"
        )

    def warning(self) -> str | None:
        """`why`, with the commands that end a drain, when there is one."""
        why = self.why()
        if why is None or not self.drained:
            return why
        failbacks = " or ".join(
            f"`quality-gates failback --provider {provider}`" for provider in sorted(self.drained)
        )
        return (
            f"{why}; {failbacks} or `quality-gates config set --traffic-distribution reset` "
            "returns the traffic"
        )


def _pct(share: float) -> str:
    value = share * 100.0
    return f"{value:.0f}%" if abs(value - round(value)) < 0.05 else f"{value:.1f}%"


def alias_routes(
    conn: Connection,
    config: QualityGatesConfig | ConfigSnapshot,
    environment: str,
    aliases_wanted: list[str] | None = None,
    *,
    weights: dict[str, float] | None = None,
) -> list[AliasRoute]:
    """Every alias's route now (breakers as the running gateways report them, forced states
    included), in alias order; with `weights`, the route those weights would give (a dry
    run)."""
    from quality_gates.gateway.runtime import TRAFFIC, TrafficSetting

    now = time.time()
    aliases = {a.name: a.model_id for a in list_aliases(conn, environment)}
    runtime = runtime_settings.get_all(conn, environment)
    if weights is not None:
        runtime[TRAFFIC] = TrafficSetting(dict(weights)).to_json()
    table = RouteTable(config, environment, aliases, runtime)
    forced = {d for d, (state, _) in forced_breakers(runtime, now).items() if state == "open"}
    closed = forced | open_breakers(conn, environment)

    def is_open(deployment: str) -> bool:
        return deployment in closed

    admission = table.admission(now)
    routes = []
    for alias in aliases_wanted if aliases_wanted is not None else sorted(aliases):
        if alias not in aliases:
            continue
        model_id = aliases[alias]
        chain = [d.model_id for d in table.chain(model_id) if d.model_id != model_id]
        own = table.deployments_of(model_id)
        routes.append(
            AliasRoute(
                environment,
                alias,
                model_id,
                first_choice_shares(table, alias, now=now, is_open=is_open),
                table.weights(now),
                table.strategy,
                chain,
                {d.provider: admission[d.provider] for d in own if d.provider in admission},
                sorted(d.id for d in own if d.id in closed),
            )
        )
    return routes


def alias_route(
    conn: Connection,
    config: QualityGatesConfig | ConfigSnapshot,
    environment: str,
    alias: str = "current",
) -> AliasRoute | None:
    """The alias's route now (breakers as the running gateways report them)."""
    routes = alias_routes(conn, config, environment, [alias])
    return routes[0] if routes else None
