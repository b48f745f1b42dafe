"""Routing: the request's `model` -> alias -> model -> its deployments -> its failover chain.

A route table is an immutable snapshot of the config, the environment's aliases and its
runtime settings; the control watcher swaps in a new one when the control version moves.
Planning a request is pure (randomness and health are passed in), so tests can check
weights and strategies exactly, and `status`, the route views and `failover --dry-run`
compute the same route the gateway takes (`RouteTable.plan` and `first_choice_shares`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quality_gates.errors import NotFound
from quality_gates.gateway.runtime import (
    CANARY,
    TRAFFIC,
    CanarySetting,
    TrafficSetting,
    parse_canary,
)
from quality_gates.providers import Usage

if TYPE_CHECKING:
    from quality_gates.config import ConfigSnapshot, QualityGatesConfig

CANARY_ALIAS = "current"
RUNBOOK_SUFFIX = "-model"  # the runbook writes `current-model` for alias `current`
FULL = 100.0  # the weight at which a provider keeps all of its own models' requests


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
    """Where one request goes: deployments in the order they will be tried.

    `fallback` is true when the first deployment serves another model than `model_id`
    (none of the model's own deployments could serve: open, drained)."""

    requested: str
    alias: str
    model_id: str
    deployments: tuple[Deployment, ...]
    canary: bool = False
    fallback: bool = False


@dataclass(frozen=True)
class _Tier:
    """Deployments of equal rank: `weights` given, the first is drawn by weight (the rest
    follow in order); otherwise they are tried in order."""

    deployments: tuple[Deployment, ...]
    weights: tuple[float, ...] | None = None


def deployment_id(provider: str, model_id: str) -> str:
    """`provider/model-id`."""
    return f"{provider}/{model_id}"


@dataclass(frozen=True)
class RouteSpec:
    """What routing reads of one environment's config, as plain data: built from the
    validated config (the gateway) or from its stored snapshot (`status`, without pydantic).
    """

    routing: str = "weighted"
    traffic: dict[str, float] = field(default_factory=dict)
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)  # primary -> chain
    allow_model_ids: bool = True
    cache_serve: str | None = None
    models: tuple[Deployment, ...] = ()
    providers: tuple[str, ...] = ()

    def chain_for(self, model_id: str) -> tuple[str, ...] | None:
        """The failover chain whose primary is `model_id` (primary first)."""
        return self.chains.get(model_id)

    @property
    def primaries(self) -> list[str]:
        """The models that head a failover chain."""
        return list(self.chains)

    @classmethod
    def of(cls, config: QualityGatesConfig | ConfigSnapshot, environment: str) -> RouteSpec:
        """From the validated config or its snapshot (the same effective values)."""
        from quality_gates.config import ConfigSnapshot

        if isinstance(config, ConfigSnapshot):
            return cls.from_data(config.data, environment)
        env = config.environment(environment)
        return cls.from_data(
            {
                "environments": {environment: env.model_dump(mode="json")} if env else {},
                "models": [m.model_dump(mode="json") for m in config.models],
                "providers": [{"name": p.name} for p in config.providers],
            },
            environment,
        )

    @classmethod
    def from_data(cls, data: Mapping[str, Any], environment: str) -> RouteSpec:
        """From the effective config as JSON-ready data (defaults filled in)."""
        env = (data.get("environments") or {}).get(environment) or {}
        models = []
        for model in data.get("models") or []:
            price = model.get("price") or {}
            models.append(
                Deployment(
                    deployment_id(str(model["provider"]), str(model["id"])),
                    str(model["provider"]),
                    str(model["id"]),
                    str(model.get("name") or model["id"]),
                    float(price.get("input_per_1k") or 0.0),
                    float(price.get("output_per_1k") or 0.0),
                )
            )
        chains = {}
        for chain in env.get("failover_chains") or []:
            members = [chain.get(k) for k in ("primary", "secondary", "tertiary")]
            chains[str(chain["primary"])] = tuple(str(m) for m in members if m)
        return cls(
            routing=str(env.get("routing") or "weighted"),
            traffic={str(k): float(v) for k, v in (env.get("traffic") or {}).items()},
            chains=chains,
            allow_model_ids=bool(env.get("allow_model_ids", True)),
            cache_serve=env.get("cache_serve"),
            models=tuple(models),
            providers=tuple(str(p["name"]) for p in data.get("providers") or []),
        )


class RouteTable:
    """The routing snapshot of one environment."""

    def __init__(
        self,
        config: QualityGatesConfig | ConfigSnapshot | RouteSpec,
        environment: str,
        aliases: Mapping[str, str],
        runtime: Mapping[str, Any],
        version: int = 0,
    ) -> None:
        spec = config if isinstance(config, RouteSpec) else RouteSpec.of(config, environment)
        self.environment = environment
        self.version = version
        self.env = spec
        self.strategy = spec.routing
        self.aliases = dict(aliases)
        self.runtime = dict(runtime)
        self.deployments: dict[str, Deployment] = {d.model_id: d for d in spec.models}
        self.by_id = {d.id: d for d in self.deployments.values()}
        self._chains: dict[str, tuple[Deployment, ...]] = {}
        self.traffic = TrafficSetting.from_json(self.runtime.get(TRAFFIC))
        self.canary: CanarySetting | None = parse_canary(self.runtime.get(CANARY))
        if self.canary is not None and self.canary.model not in self.deployments:
            self.canary = None
        self.providers = sorted({*spec.providers, *(d.provider for d in spec.models)})
        self._weighted = self.traffic is not None or bool(spec.traffic)
        self._reaches: dict[str, tuple[tuple[Deployment, ...], tuple[Deployment, ...]]] = {}

    def chain(self, model_id: str) -> tuple[Deployment, ...]:
        """The model's failover chain as deployments (the model alone if it has none)."""
        cached = self._chains.get(model_id)
        if cached is None:
            names = self.env.chain_for(model_id) or (model_id,)
            cached = tuple(self.deployments[n] for n in names if n in self.deployments)
            self._chains[model_id] = cached
        return cached

    def _reach(self, model_id: str) -> tuple[tuple[Deployment, ...], tuple[Deployment, ...]]:
        """(the model's own deployments, its chain's other deployments in chain order)."""
        cached = self._reaches.get(model_id)
        if cached is None:
            own = self.deployments_of(model_id)
            seen = {d.id for d in own}
            others: list[Deployment] = []
            for member in self.chain(model_id):
                for deployment in self.deployments_of(member.model_id):
                    if deployment.id not in seen:
                        seen.add(deployment.id)
                        others.append(deployment)
            cached = (own, tuple(others))
            self._reaches[model_id] = cached
        return cached

    def deployments_of(self, model_id: str) -> tuple[Deployment, ...]:
        """The providers that serve this model (one per model in today's config)."""
        own = self.deployments.get(model_id)
        return (own,) if own is not None else ()

    def in_use(self) -> list[Deployment]:
        """Every deployment some alias, chain or canary of this environment can reach."""
        seen: dict[str, Deployment] = {}
        targets = list(self.aliases.values())
        if self.canary is not None:
            targets.append(self.canary.model)
        if self.env.allow_model_ids:
            targets += self.env.primaries
        for model_id in targets:
            for deployment in self.chain(model_id):
                seen.setdefault(deployment.id, deployment)
        return list(seen.values())

    def weights(self, now: float) -> dict[str, float]:
        """Provider weights in force: the live setting, else the config's."""
        if self.traffic is not None:
            return self.traffic.at(now)
        return dict(self.env.traffic)

    def admission(self, now: float) -> dict[str, float]:
        """provider -> the share of its own models' requests it keeps, for every provider
        the weights in force take below 100 (see `plan`); empty without weights."""
        weights = self.weights(now)
        if not weights:
            return {}
        kept = {p: max(0.0, min(1.0, weights.get(p, 0.0) / FULL)) for p in self.providers}
        return {p: share for p, share in kept.items() if share < 1.0}

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
        breaker refuses traffic now (forced states included); `p95` gives its recent P95
        latency (ms) if known.

        Routing precedence, highest first (the same text is in docs/routing.md):

        1. Emergency mode: a shut-down gateway answers 503 before routing; stale serving answers
           only after every deployment of the route failed.
        2. Forced breaker states: a deployment forced open (by a person or the watch) never serves;
           one forced closed serves even if its own breaker tripped.
        3. Alias -> model: the alias names the model. The canary share of `current` goes to the
           candidate model instead, and the rest of this list applies to that model.
        4. That model's deployments: among the providers that serve this model, those whose breaker
           is closed and that the provider weights do not drain, ordered by the weights (or by the
           strategy: priority, latency).
        5. The model's failover chain, only when none of its deployments can serve (breaker open,
           drained, or failed during this request). One chain member per provider is drawn
           first, in proportion to what the weights put above 100 (a failover's target), or
           to the weights when none is above 100; the rest follow in the strategy's order.

        Provider weights (live, else the config's; none by default) say how much of its own
        models' requests each provider keeps, out of 100: at 100 or more it keeps them all,
        at 40 it keeps 40% and sheds the rest, and a provider the weights leave out keeps
        none. What a provider sheds goes down each model's own failover chain, to the chain
        members whose providers the weights raise above 100, or else have weight, in
        proportion. With no weights every provider keeps all of its models' requests. A
        failover from bedrock to google writes bedrock:0, google:200, meta:100 (google keeps
        its own and takes bedrock's); the failback writes back the weights from before. So
        provider weights never pick another model than the alias names unless they take that
        model's provider below 100: a failover, or a distribution an operator set, which
        every command that moves traffic prints per alias. Drained deployments stay a last
        resort after the chain, and deployments behind open breakers come last (panic
        routing may still try those whose breaker opened on its own).
        """
        alias, model_id = self.resolve(name)
        canary = self.canary
        is_canary = False
        if canary is not None and alias == CANARY_ALIAS and draw() * 100.0 < canary.percent:
            model_id, is_canary = canary.model, True
        if not self._weighted and self.strategy != "latency":
            # the common case, no weights: the model's deployments then its chain, as
            # `tiers` orders them, unless a breaker is open
            own, others = self._reach(model_id)
            reach = own + others
            if not any(is_open(d.id) for d in reach):
                return RoutePlan(name, alias, model_id, reach, canary=is_canary)
        admission = self.admission(now) if self._weighted else {}
        point = draw() if admission else 0.0
        ordered: list[Deployment] = []
        for tier in self.tiers(model_id, point, now=now, is_open=is_open, p95=p95):
            members = list(tier.deployments)
            if tier.weights is not None and len(members) > 1:
                members.insert(0, members.pop(_weighted_index(tier.weights, draw())))
            ordered.extend(members)
        first = ordered[0] if ordered else None
        return RoutePlan(
            name,
            alias,
            model_id,
            tuple(ordered),
            canary=is_canary,
            fallback=first is not None and first.model_id != model_id,
        )

    def tiers(
        self,
        model_id: str,
        point: float,
        *,
        now: float,
        is_open: Callable[[str], bool],
        p95: Callable[[str], float | None],
    ) -> list[_Tier]:
        """The ranks a request for `model_id` tries in turn, for the drain draw `point`
        (a deployment is drained for this request when `point` >= its provider's
        admission): the model's serving deployments, then its chain, then drained
        deployments, then those behind open breakers."""
        weights = self.weights(now) if self._weighted else {}
        admission = self.admission(now) if weights else {}
        own, others = self._reach(model_id)
        opened = {d.id for d in (*own, *others) if is_open(d.id)}
        closed_own = [d for d in own if d.id not in opened]
        closed_others = [d for d in others if d.id not in opened]
        if not admission:
            serving_own, drained = closed_own, []
        else:
            serving_own = [d for d in closed_own if point < admission.get(d.provider, 1.0)]
            drained = [d for d in closed_own if d not in serving_own]
        tiers = [self._rank(tuple(serving_own), now=now, p95=p95)]
        if weights:
            # the chain, ordered by the weights: one member per provider with weight drawn
            # first, then the rest of those; members on providers at 0 are drained
            pull = _pull(weights, {d.provider for d in closed_others})
            firsts: dict[str, Deployment] = {}
            for deployment in closed_others:
                if pull.get(deployment.provider, 0.0) > 0:
                    firsts.setdefault(deployment.provider, deployment)
            chosen = tuple(firsts.values())
            tiers.append(_Tier(chosen, tuple(pull[d.provider] for d in chosen)))
            rest = [d for d in closed_others if weights.get(d.provider, 0.0) > 0]
            tiers.append(self._rank(tuple(d for d in rest if d not in chosen), now=now, p95=p95))
            drained += [d for d in closed_others if weights.get(d.provider, 0.0) <= 0]
        else:
            tiers.append(self._rank(tuple(closed_others), now=now, p95=p95, weighted=False))
        tiers.append(_Tier(tuple(drained)))
        tiers.append(_Tier(tuple(d for d in (*own, *others) if d.id in opened)))
        return [t for t in tiers if t.deployments]

    def _rank(
        self,
        deployments: tuple[Deployment, ...],
        *,
        now: float,
        p95: Callable[[str], float | None],
        weighted: bool = True,
    ) -> _Tier:
        """One tier in the strategy's order: latency by recent P95 (unknown last),
        priority as listed, weighted by the provider weights in force (as listed when
        none of them has weight)."""
        if len(deployments) < 2:
            return _Tier(deployments)
        if self.strategy == "latency":
            known = [(p95(d.id), i, d) for i, d in enumerate(deployments)]
            ranked = sorted(known, key=lambda t: (t[0] is None, t[0] or 0.0, t[1]))
            return _Tier(tuple(d for _, _, d in ranked))
        if self.strategy == "weighted" and weighted:
            weights = self.weights(now)
            chosen = tuple(d for d in deployments if weights.get(d.provider, 0.0) > 0)
            if chosen:
                rest = tuple(d for d in deployments if d not in chosen)
                return _Tier((*chosen, *rest), tuple(weights[d.provider] for d in chosen))
        return _Tier(deployments)


def _pull(weights: Mapping[str, float], providers: set[str]) -> dict[str, float]:
    """How strongly each of `providers` draws shed requests: what the weights put above 100
    (a failover's target) where any of them is above it, else the weights themselves."""
    above = {p: weights.get(p, 0.0) - FULL for p in providers if weights.get(p, 0.0) > FULL}
    return above or {p: weights.get(p, 0.0) for p in providers if weights.get(p, 0.0) > 0}


def _weighted_index(weights: tuple[float, ...], point: float) -> int:
    """The index a uniform `point` in [0, 1) picks with probability weight / total."""
    target = point * sum(weights)
    for index, weight in enumerate(weights):
        target -= weight
        if target < 0:
            return index
    return len(weights) - 1


def effective_weights(
    config: QualityGatesConfig | ConfigSnapshot,
    environment: str,
    runtime: Mapping[str, Any],
    now: float,
) -> dict[str, float]:
    """The provider weights in force: the live setting, the config's, or with neither every
    provider at 100 (each keeps all of its own models' requests; what the gateway does).
    Providers at 0 are left out (a provider left out keeps nothing)."""
    traffic = TrafficSetting.from_json(runtime.get(TRAFFIC))
    if traffic is not None:
        return {k: v for k, v in traffic.at(now).items() if v > 0}
    spec = RouteSpec.of(config, environment)
    if spec.traffic:
        return {k: v for k, v in spec.traffic.items() if v > 0}
    return dict.fromkeys(spec.providers, FULL)


def first_choice_shares(
    table: RouteTable,
    name: str,
    *,
    now: float,
    is_open: Callable[[str], bool],
    p95: Callable[[str], float | None] = lambda _d: None,
) -> dict[str, float]:
    """deployment id -> the share of requests naming `name` whose first try goes there,
    exactly as `plan` draws it (canary share, drains, weights or strategy, open breakers
    last)."""
    alias, model_id = table.resolve(name)
    shares: dict[str, float] = {}

    def add(model: str, share: float) -> None:
        for deployment, part in _model_shares(table, model, now, is_open, p95).items():
            shares[deployment] = shares.get(deployment, 0.0) + share * part

    canary = table.canary
    rest = 1.0
    if canary is not None and alias == CANARY_ALIAS:
        add(canary.model, canary.percent / 100.0)
        rest -= canary.percent / 100.0
    add(model_id, rest)
    return {d: s for d, s in shares.items() if s > 0}


def _model_shares(
    table: RouteTable,
    model_id: str,
    now: float,
    is_open: Callable[[str], bool],
    p95: Callable[[str], float | None],
) -> dict[str, float]:
    # The drain draw changes the tiers only where it crosses a provider's admission, so
    # the share is exact: integrate the first choice over the intervals between them.
    cuts = sorted({0.0, 1.0, *(a for a in table.admission(now).values() if 0.0 < a < 1.0)})
    shares: dict[str, float] = {}
    for low, high in itertools.pairwise(cuts):
        tiers = table.tiers(model_id, low, now=now, is_open=is_open, p95=p95)
        if not tiers:
            continue
        first = tiers[0]
        if first.weights is not None and len(first.deployments) > 1:
            total = sum(first.weights)
            parts = {d.id: w / total for d, w in zip(first.deployments, first.weights, strict=True)}
        else:
            parts = {first.deployments[0].id: 1.0}
        for deployment, part in parts.items():
            shares[deployment] = shares.get(deployment, 0.0) + (high - low) * part
    return shares


def describe_weights(weights: Mapping[str, float]) -> str:
    """`bedrock:0, google:200, meta:100`: each provider's weight as routing reads it (100
    keeps all of its own models' requests; see `RouteTable.plan`; below 0 reads 0)."""
    shown = {k: round(max(0.0, v), 2) for k, v in sorted(weights.items())}
    return ", ".join(f"{k}:{v:g}" for k, v in shown.items()) or "none"
