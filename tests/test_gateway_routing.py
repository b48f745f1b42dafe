"""Routing decisions: weights, strategies, canary share, transitions, names."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from quality_gates.config import parse_config_text, render_starter
from quality_gates.errors import NotFound
from quality_gates.gateway._routing import RouteTable, effective_weights, first_choice_shares
from quality_gates.gateway.runtime import TrafficSetting

ALIASES = {"current": "claude-3-5-haiku", "backup": "gemini-1-5-flash"}
N = 20_000


@pytest.fixture(scope="module")
def config():  # type: ignore[no-untyped-def]
    return parse_config_text(render_starter("routing"), "quality-gates.yaml").config


def table(config, runtime=None, routing="weighted"):  # type: ignore[no-untyped-def]
    env = config.environments["production"]
    env.routing = routing
    return RouteTable(config, "production", ALIASES, runtime or {})


def first_hops(t: RouteTable, n: int = N, is_open=lambda d: False, p95=lambda d: None):  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    return Counter(
        t.plan("current", now=0.0, draw=rng.random, is_open=is_open, p95=p95)
        .deployments[0]
        .provider
        for _ in range(n)
    )


def within(count: int, share: float, n: int = N) -> bool:
    """Inside 4.5 standard deviations of the binomial expectation."""
    sigma = math.sqrt(n * share * (1 - share))
    return abs(count - n * share) <= 4.5 * sigma + 1


def test_weights_hold_within_statistical_tolerance(config) -> None:  # type: ignore[no-untyped-def]
    runtime = {"traffic": TrafficSetting({"bedrock": 50, "google": 30, "meta": 20}).to_json()}
    counts = first_hops(table(config, runtime))
    assert within(counts["bedrock"], 0.5)
    assert within(counts["google"], 0.3)
    assert within(counts["meta"], 0.2)


def test_a_drained_model_goes_down_its_chain_drawn_by_weight(config) -> None:  # type: ignore[no-untyped-def]
    # a failover from bedrock to google: bedrock keeps none of its models' requests
    runtime = {"traffic": TrafficSetting({"bedrock": 0, "google": 200, "meta": 100}).to_json()}
    plan = table(config, runtime).plan(
        "current", now=0.0, draw=lambda: 0.5, is_open=lambda d: False, p95=lambda d: None
    )
    assert [d.model_id for d in plan.deployments] == [
        "gemini-1-5-flash",
        "llama-3-1-70b",
        "claude-3-5-haiku",  # drained: a last resort after the chain
    ]
    counts = first_hops(table(config, runtime), n=3000)
    assert counts == {"google": 3000}  # the failover's target: what google has above 100
    left_out = {"traffic": TrafficSetting({"google": 100}).to_json()}  # meta at 0 too
    plan = table(config, left_out).plan(
        "current", now=0.0, draw=lambda: 0.5, is_open=lambda d: False, p95=lambda d: None
    )
    assert [d.model_id for d in plan.deployments] == [
        "gemini-1-5-flash",
        "claude-3-5-haiku",
        "llama-3-1-70b",
    ]
    assert plan.fallback
    assert plan.model_id == "claude-3-5-haiku"


def test_no_weights_send_everything_to_the_primary(config) -> None:  # type: ignore[no-untyped-def]
    counts = first_hops(table(config), n=500)
    assert counts == {"bedrock": 500}


def test_weights_that_keep_a_provider_at_100_never_move_its_models(config) -> None:  # type: ignore[no-untyped-def]
    """Issue 16: after a failback, `current` named gemini-1-5-flash and every request went
    to claude-3-haiku on bedrock. The failback restores the weights from before the failover
    (every provider at 100 by default, or a failover's bedrock:0, google:200, meta:100 for
    bedrock's models): google keeps gemini's requests."""
    for weights in ({"bedrock": 100, "google": 100, "meta": 100}, {"bedrock": 0, "google": 200}):
        runtime = {"traffic": TrafficSetting(weights).to_json()}
        t = RouteTable(config, "production", {"current": "gemini-1-5-flash"}, runtime)
        rng = random.Random(5)
        first = Counter(
            t.plan("current", now=0.0, draw=rng.random, is_open=lambda d: False, p95=lambda d: None)
            .deployments[0]
            .id
            for _ in range(500)
        )
        assert first == {"google/gemini-1-5-flash": 500}


def test_a_distribution_that_leaves_a_provider_out_drains_it_and_says_so(config) -> None:  # type: ignore[no-untyped-def]
    runtime = {"traffic": TrafficSetting({"bedrock": 100}).to_json()}
    t = RouteTable(config, "production", {"current": "gemini-1-5-flash"}, runtime)
    shares = first_choice_shares(t, "current", now=0.0, is_open=lambda d: False)
    assert shares == {"bedrock/claude-3-haiku": 1.0}  # google at 0 keeps none
    assert t.plan(
        "current", now=0.0, draw=lambda: 0.3, is_open=lambda d: False, p95=lambda d: None
    ).fallback


def test_an_open_breaker_sends_the_model_down_its_chain_and_stays_last_resort(config) -> None:  # type: ignore[no-untyped-def]
    runtime = {"traffic": TrafficSetting({"bedrock": 50, "google": 50}).to_json()}
    counts = first_hops(table(config, runtime), n=2000, is_open=lambda d: d.startswith("bedrock/"))
    assert counts == {"google": 2000}
    plan = table(config, runtime).plan(
        "current",
        now=0.0,
        draw=lambda: 0.1,
        is_open=lambda d: d.startswith("bedrock/"),
        p95=lambda d: None,
    )
    assert plan.deployments[-1].provider == "bedrock"  # still last resort


def test_priority_strategy_orders_the_chain_and_the_operators_weights_come_first(config) -> None:  # type: ignore[no-untyped-def]
    t = table(config, routing="priority")
    plan = t.plan(
        "current",
        now=0.0,
        draw=lambda: 0.0,
        is_open=lambda d: d.startswith("bedrock"),
        p95=lambda d: None,
    )
    assert [d.provider for d in plan.deployments] == ["google", "meta", "bedrock"]
    raised = table(config, {"traffic": TrafficSetting({"meta": 100}).to_json()}, "priority")
    plan = raised.plan(
        "current", now=0.0, draw=lambda: 0.0, is_open=lambda d: False, p95=lambda d: None
    )
    # meta:100 leaves bedrock and google out: bedrock's model goes to meta (the lever beats
    # the strategy) and the drained deployments stay a last resort
    assert [d.provider for d in plan.deployments] == ["meta", "bedrock", "google"]


def test_latency_strategy_orders_the_chain_by_recent_p95_but_never_skips_the_alias(config) -> None:  # type: ignore[no-untyped-def]
    p95 = {
        "bedrock/claude-3-5-haiku": 900.0,
        "google/gemini-1-5-flash": 300.0,
        "meta/llama-3-1-70b": 100.0,
    }
    t = table(config, routing="latency")
    plan = t.plan("current", now=0.0, draw=lambda: 0.0, is_open=lambda d: False, p95=p95.get)
    assert [d.provider for d in plan.deployments] == ["bedrock", "meta", "google"]


def test_canary_share_goes_to_the_candidate_and_is_marked(config) -> None:  # type: ignore[no-untyped-def]
    runtime = {
        "canary": {"model": "llama-3-1-70b", "percent": 5.0, "baseline": None, "run_id": "r1"}
    }
    t = table(config, runtime)
    rng = random.Random(3)
    plans = [
        t.plan("current", now=0.0, draw=rng.random, is_open=lambda d: False, p95=lambda d: None)
        for _ in range(N)
    ]
    canary = [p for p in plans if p.canary]
    assert within(len(canary), 0.05)
    assert {p.deployments[0].model_id for p in canary} == {"llama-3-1-70b"}
    assert all(p.model_id == "claude-3-5-haiku" for p in plans if not p.canary)
    backup = t.plan(
        "backup", now=0.0, draw=lambda: 0.0, is_open=lambda d: False, p95=lambda d: None
    )
    assert not backup.canary  # only the current alias carries the canary share


def test_a_transition_moves_weights_linearly(config) -> None:  # type: ignore[no-untyped-def]
    setting = TrafficSetting({"google": 100}, start=100.0, duration=10.0, previous={"bedrock": 100})
    assert setting.at(100.0) == {"bedrock": 100.0, "google": 0.0}
    assert setting.at(105.0) == {"bedrock": 50.0, "google": 50.0}
    assert setting.at(200.0) == {"google": 100.0}


def test_names_resolve_as_alias_model_id_or_runbook_placeholder(config) -> None:  # type: ignore[no-untyped-def]
    t = table(config)
    assert t.resolve("current") == ("current", "claude-3-5-haiku")
    assert t.resolve("current-model") == ("current", "claude-3-5-haiku")
    assert t.resolve("llama-3-1-70b") == ("llama-3-1-70b", "llama-3-1-70b")
    with pytest.raises(NotFound, match="does not exist"):
        t.resolve("gpt-9")


def test_model_ids_are_refused_where_the_environment_forbids_them(config) -> None:  # type: ignore[no-untyped-def]
    config.environments["production"].allow_model_ids = False
    try:
        with pytest.raises(NotFound):
            table(config).resolve("llama-3-1-70b")
    finally:
        config.environments["production"].allow_model_ids = True


def test_effective_weights_default_to_every_provider_keeping_its_own(config) -> None:  # type: ignore[no-untyped-def]
    assert effective_weights(config, "production", {}, 0.0) == {
        "bedrock": 100.0,
        "google": 100.0,
        "meta": 100.0,
    }
    runtime = {"traffic": TrafficSetting({"google": 70, "meta": 30, "bedrock": 0}).to_json()}
    assert effective_weights(config, "production", runtime, 0.0) == {"google": 70.0, "meta": 30.0}


def test_the_route_view_says_why_an_alias_is_answered_by_its_chain() -> None:
    """Issue 16: after a rollback to gemini and a failback that restored bedrock:100, every
    request went to claude-3-haiku on bedrock, and nothing said so. Now the alias's model
    answers; a drain that moves it is described with its reason."""
    from quality_gates.config import parse_config_text, render_starter
    from quality_gates.gateway._routing import RouteTable, first_choice_shares
    from quality_gates.gateway.route_view import AliasRoute

    config = parse_config_text(render_starter("r"), "q.yaml").config
    restored = {"traffic": TrafficSetting({"bedrock": 100, "google": 100, "meta": 100}).to_json()}
    table = RouteTable(config, "production", {"current": "gemini-1-5-flash"}, restored)
    shares = first_choice_shares(table, "current", now=1.0, is_open=lambda _d: False)
    assert shares == {"google/gemini-1-5-flash": 1.0}
    drained = {"traffic": TrafficSetting({"bedrock": 25, "google": 75}).to_json()}
    table = RouteTable(config, "production", {"current": "claude-3-5-haiku"}, drained)
    shares = first_choice_shares(table, "current", now=1.0, is_open=lambda _d: False)
    assert shares == pytest.approx(
        {"bedrock/claude-3-5-haiku": 0.25, "google/gemini-1-5-flash": 0.75}
    )
    route = AliasRoute(
        "production",
        "current",
        "claude-3-5-haiku",
        shares,
        {"bedrock": 25, "google": 75},
        chain=["gemini-1-5-flash", "llama-3-1-70b"],
        drained={"bedrock": table.admission(1.0)["bedrock"]},
    )
    assert route.describe() == (
        "current -> claude-3-5-haiku: google/gemini-1-5-flash 75%, bedrock/claude-3-5-haiku "
        "25%; chain gemini-1-5-flash, llama-3-1-70b"
    )
    warning = route.warning()
    assert warning is not None
    assert "the weights bedrock:25, google:75 leave bedrock 25% of its models' requests" in (
        warning
    )
    assert "`quality-gates failback --provider bedrock`" in warning


def _recording(source: random.Random, script: list[float]):  # type: ignore[no-untyped-def]
    def draw() -> float:
        script.append(source.random())
        return script[-1]

    return draw


@pytest.mark.parametrize("seed", range(300))
def test_the_answering_model_is_the_alias_model_or_a_chain_member_only_when_it_cannot_serve(
    config, seed: int
) -> None:  # type: ignore[no-untyped-def]
    """Property: over random aliases, weights (failover-like, above 100, or leaving providers
    out), strategies,
    breakers (open on their own or forced) and canaries, the first deployment of a plan
    serves the alias's model (or the canary's) unless none of its deployments serves (open
    or drained for this request), and then a member of that model's chain; and
    first_choice_shares agrees with the plan's draws."""
    rng = random.Random(seed)
    models = [m.id for m in config.models]
    providers = [p.name for p in config.providers]
    aliases = {"current": rng.choice(models), "backup": rng.choice(models)}
    runtime: dict[str, object] = {}
    if rng.random() < 0.8:
        weights = {p: float(rng.choice([0, 0, 10, 25, 50, 100, 200])) for p in providers}
        if not any(weights.values()):
            weights[rng.choice(providers)] = 100.0
        runtime["traffic"] = TrafficSetting(weights).to_json()
    if rng.random() < 0.3:
        runtime["canary"] = {"model": rng.choice(models), "percent": rng.choice([5.0, 50.0])}
    config.environments["production"].routing = rng.choice(["weighted", "priority", "latency"])
    t = RouteTable(config, "production", aliases, runtime)
    opened = {f"{m.provider}/{m.id}" for m in config.models if rng.random() < 0.3}
    latency = {f"{m.provider}/{m.id}": rng.uniform(50, 900) for m in config.models}

    def is_open(deployment: str) -> bool:
        return deployment in opened

    admission = t.admission(0.0)
    for name in aliases:
        counts: Counter[str] = Counter()
        n = 400
        draws = random.Random(seed * 7 + len(name))
        for _ in range(n):
            script: list[float] = []
            draw = _recording(draws, script)
            plan = t.plan(name, now=0.0, draw=draw, is_open=is_open, p95=latency.get)
            assert plan.deployments, "a plan always names deployments"
            first = plan.deployments[0]
            counts[first.id] += 1
            chain = [d.model_id for d in t.chain(plan.model_id)]
            expected = aliases[name] if not plan.canary else t.canary.model  # type: ignore[union-attr]
            assert plan.model_id == expected
            if first.model_id == plan.model_id:
                continue
            assert first.model_id in chain
            drew_canary = t.canary is not None and name == "current"
            point = script[1 if drew_canary else 0] if admission else 0.0
            for own in t.deployments_of(plan.model_id):
                cannot = is_open(own.id) or point >= admission.get(own.provider, 1.0)
                assert cannot, f"{own.id} could serve, yet {first.id} was chosen first"
        shares = first_choice_shares(t, name, now=0.0, is_open=is_open, p95=latency.get)
        assert set(counts) <= set(shares)
        for deployment, share in shares.items():
            assert within(counts[deployment], share, n)


def test_the_precedence_in_docs_is_the_plan_functions_docstring() -> None:
    import inspect
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "routing.md").read_text()
    block = doc.split("```text\n", 1)[1].split("```", 1)[0]
    text = inspect.getdoc(RouteTable.plan) or ""
    assert " ".join(block.split()) in " ".join(text.split())


@pytest.mark.parametrize(
    ("weights", "current", "backup"),
    [
        (None, {"bedrock/claude-3-5-haiku": 1.0}, {"google/gemini-1-5-flash": 1.0}),
        (
            {"bedrock": 0, "google": 200, "meta": 100},
            {"google/gemini-1-5-flash": 1.0},
            {"google/gemini-1-5-flash": 1.0},
        ),
        (
            {"bedrock": 50, "google": 150, "meta": 100},
            {"bedrock/claude-3-5-haiku": 0.5, "google/gemini-1-5-flash": 0.5},
            {"google/gemini-1-5-flash": 1.0},
        ),
        (
            {"bedrock": 50, "google": 50},
            {"bedrock/claude-3-5-haiku": 0.5, "google/gemini-1-5-flash": 0.5},
            {"google/gemini-1-5-flash": 0.5, "bedrock/claude-3-haiku": 0.5},
        ),
        (
            {"google": 70, "meta": 30},
            {"google/gemini-1-5-flash": 0.7, "meta/llama-3-1-70b": 0.3},
            {"google/gemini-1-5-flash": 0.7, "meta/llama-3-1-70b": 0.3},
        ),
    ],
)
def test_the_examples_in_docs_routing(config, weights, current, backup) -> None:  # type: ignore[no-untyped-def]
    runtime = {"traffic": TrafficSetting(weights).to_json()} if weights else {}
    t = table(config, runtime)
    assert first_choice_shares(t, "current", now=0.0, is_open=lambda d: False) == (
        pytest.approx(current)
    )
    assert first_choice_shares(t, "backup", now=0.0, is_open=lambda d: False) == (
        pytest.approx(backup)
    )
