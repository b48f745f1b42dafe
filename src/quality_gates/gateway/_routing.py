"""Routing: the request's `model` -> alias -> model -> failover chain -> ordered deployments.

A route table is an immutable snapshot of the config, the environment's aliases and its
runtime settings; the control watcher swaps in a new one when the control version moves.
Planning a request is pure (randomness and health are passed in), so tests can check
weights and strategies exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from quality_gates.config import Environment, QualityGatesConfig
from quality_gates.errors import NotFound
from quality_gates.gateway.runtime import (
    CANARY,
    TRAFFIC,
    CanarySetting,
    TrafficSetting,
    parse_canary,
)
from quality_gates.providers import Usage

CANARY_ALIAS = "current"
RUNBOOK_SUFFIX = "-model"  # the runbook writes `current-model` for alias `current`


@dataclass(frozen=True)
class Deployment:
    """One model at one provider: the unit that breakers, limits and telemetry count."""

    id: str
    provider: str
    model_id: str
    provider_model: str
    input_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def cost(self, usage: Usage) -> float:
        """USD for a call with this usage."""
        return (
            usage.input_tokens * self.input_per_1k + usage.output_tokens * self.output_per_1k
        ) / 1000.0


@dataclass(frozen=True)
class RoutePlan:
    """Where one request goes: deployments in the order they will be tried."""

    requested: str
    alias: str
    model_id: str
    deployments: tuple[Deployment, ...]
    canary: bool = False


def deployment_id(provider: str, model_id: str) -> str:
    """`provider/model-id`."""
    return f"{provider}/{model_id}"


class RouteTable:
    """The routing snapshot of one environment."""

    def __init__(
        self,
        config: QualityGatesConfig,
        environment: str,
        aliases: Mapping[str, str],
        runtime: Mapping[str, Any],
        version: int = 0,
    ) -> None:
        env = config.environment(environment)
        self.environment = environment
        self.version = version
        self.env: Environment = env if env is not None else Environment()
        self.strategy = self.env.routing
        self.aliases = dict(aliases)
        self.runtime = dict(runtime)
        self.deployments: dict[str, Deployment] = {}
        for model in config.models:
            self.deployments[model.id] = Deployment(
                deployment_id(model.provider, model.id),
                model.provider,
                model.id,
                model.provider_model,
                model.price.input_per_1k,
                model.price.output_per_1k,
            )
        self.by_id = {d.id: d for d in self.deployments.values()}
        self._chains: dict[str, tuple[Deployment, ...]] = {}
        self.traffic = TrafficSetting.from_json(self.runtime.get(TRAFFIC))
        self.canary: CanarySetting | None = parse_canary(self.runtime.get(CANARY))
        if self.canary is not None and self.canary.model not in self.deployments:
            self.canary = None

    def chain(self, model_id: str) -> tuple[Deployment, ...]:
        """The model's failover chain as deployments (the model alone if it has none)."""
        cached = self._chains.get(model_id)
        if cached is None:
            spec = self.env.chain_for(model_id)
            names = spec.models if spec else [model_id]
            cached = tuple(self.deployments[n] for n in names if n in self.deployments)
            self._chains[model_id] = cached
        return cached

    def in_use(self) -> list[Deployment]:
        """Every deployment some alias, chain or canary of this environment can reach."""
        seen: dict[str, Deployment] = {}
        targets = list(self.aliases.values())
        if self.canary is not None:
            targets.append(self.canary.model)
        if self.env.allow_model_ids:
            targets += [c.primary for c in self.env.failover_chains]
        for model_id in targets:
            for deployment in self.chain(model_id):
                seen.setdefault(deployment.id, deployment)
        return list(seen.values())

    def weights(self, now: float) -> dict[str, float]:
        """Provider weights in force: the live setting, else the config's."""
        if self.traffic is not None:
            return self.traffic.at(now)
        return dict(self.env.traffic)

    def resolve(self, name: str) -> tuple[str, str]:
        """(alias or model id as named, model id); NotFound names what is accepted."""
        model_id = self.aliases.get(name)
        if model_id is not None:
            return name, model_id
        if self.env.allow_model_ids and name in self.deployments:
            return name, name
        if name.endswith(RUNBOOK_SUFFIX):
            stem = name[: -len(RUNBOOK_SUFFIX)]
            if stem in self.aliases:
                return stem, self.aliases[stem]
        accepted = sorted(self.aliases)
        if self.env.allow_model_ids:
            accepted += sorted(self.deployments)
        raise NotFound(
            f"The model `{name}` does not exist in environment {self.environment}",
            hint=f"use one of: {', '.join(accepted) or 'none configured'}",
        )

    def plan(
        self,
        name: str,
        *,
        now: float,
        draw: Callable[[], float],
        is_open: Callable[[str], bool],
        p95: Callable[[str], float | None],
    ) -> RoutePlan:
        """Order the deployments for a request naming `name`.

        `draw` returns uniform numbers in [0, 1); `is_open` says whether a deployment's
        breaker refuses traffic now; `p95` gives its recent P95 latency (ms) if known.
        """
        alias, model_id = self.resolve(name)
        canary = self.canary
        if canary is not None and alias == CANARY_ALIAS and draw() * 100.0 < canary.percent:
            return RoutePlan(name, alias, canary.model, self.chain(canary.model), canary=True)
        chain = self.chain(model_id)
        if len(chain) > 1:
            chain = self._order(chain, now=now, draw=draw, is_open=is_open, p95=p95)
        return RoutePlan(name, alias, model_id, chain)

    def _order(
        self,
        chain: tuple[Deployment, ...],
        *,
        now: float,
        draw: Callable[[], float],
        is_open: Callable[[str], bool],
        p95: Callable[[str], float | None],
    ) -> tuple[Deployment, ...]:
        healthy = [d for d in chain if not is_open(d.id)]
        refused = [d for d in chain if is_open(d.id)]
        if self.strategy == "priority":
            return (*healthy, *refused)
        if self.strategy == "latency":
            known = [(p95(d.id), i, d) for i, d in enumerate(healthy)]
            ranked = sorted(known, key=lambda t: (t[0] is None, t[0] or 0.0, t[1]))
            return (*(d for _, _, d in ranked), *refused)
        weights = self.weights(now)
        if not weights:
            return (*healthy, *refused)
        candidates: list[tuple[Deployment, float]] = []
        providers_seen: set[str] = set()
        for deployment in healthy:
            if deployment.provider in providers_seen:
                continue
            providers_seen.add(deployment.provider)
            weight = weights.get(deployment.provider, 0.0)
            if weight > 0:
                candidates.append((deployment, weight))
        if not candidates:
            return (*healthy, *refused)
        point = draw() * sum(w for _, w in candidates)
        picked = candidates[-1][0]
        for deployment, weight in candidates:
            point -= weight
            if point < 0:
                picked = deployment
                break
        return (picked, *(d for d in healthy if d is not picked), *refused)


def effective_weights(
    config: QualityGatesConfig,
    environment: str,
    runtime: Mapping[str, Any],
    current_model: str | None,
    now: float,
) -> dict[str, float]:
    """The provider weights in force; with none configured, all traffic at the provider of
    the `current` model (what the gateway does when traffic is empty)."""
    traffic = TrafficSetting.from_json(runtime.get(TRAFFIC))
    if traffic is not None:
        return {k: v for k, v in traffic.at(now).items() if v > 0}
    env = config.environment(environment)
    if env is not None and env.traffic:
        return {k: v for k, v in env.traffic.items() if v > 0}
    model = config.model(current_model) if current_model else None
    return {model.provider: 100.0} if model else {}


def first_choice_shares(
    table: RouteTable,
    name: str,
    *,
    now: float,
    is_open: Callable[[str], bool],
    p95: Callable[[str], float | None] = lambda _d: None,
) -> dict[str, float]:
    """deployment id -> the share of requests naming `name` whose first try goes there, as
    `plan` draws it (canary share, weights or strategy, open breakers last)."""
    alias, model_id = table.resolve(name)
    shares: dict[str, float] = {}

    def add(chain: tuple[Deployment, ...], share: float) -> None:
        for deployment, part in _chain_shares(table, chain, now, is_open, p95).items():
            shares[deployment] = shares.get(deployment, 0.0) + share * part

    canary = table.canary
    rest = 1.0
    if canary is not None and alias == CANARY_ALIAS:
        add(table.chain(canary.model), canary.percent / 100.0)
        rest -= canary.percent / 100.0
    add(table.chain(model_id), rest)
    return shares


def _chain_shares(
    table: RouteTable,
    chain: tuple[Deployment, ...],
    now: float,
    is_open: Callable[[str], bool],
    p95: Callable[[str], float | None],
) -> dict[str, float]:
    if not chain:
        return {}
    if len(chain) == 1:
        return {chain[0].id: 1.0}
    ordered = table._order(chain, now=now, draw=lambda: 0.0, is_open=is_open, p95=p95)
    if table.strategy != "weighted":
        return {ordered[0].id: 1.0}
    weights = table.weights(now)
    seen: set[str] = set()
    candidates = []
    for deployment in chain:
        if is_open(deployment.id) or deployment.provider in seen:
            continue
        seen.add(deployment.provider)
        weight = weights.get(deployment.provider, 0.0)
        if weight > 0:
            candidates.append((deployment.id, weight))
    total = sum(w for _, w in candidates)
    if not candidates or total <= 0:
        return {ordered[0].id: 1.0}
    return {d: w / total for d, w in candidates}
