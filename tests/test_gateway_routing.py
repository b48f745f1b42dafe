"""Routing decisions: weights, strategies, canary share, transitions, names."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from quality_gates.config import parse_config_text, render_starter
from quality_gates.errors import NotFound
from quality_gates.gateway._routing import RouteTable, effective_weights
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


def test_the_rest_of_the_chain_follows_the_weighted_pick_in_chain_order(config) -> None:  # type: ignore[no-untyped-def]
    runtime = {"traffic": TrafficSetting({"google": 100}).to_json()}
    plan = table(config, runtime).plan(
        "current", now=0.0, draw=lambda: 0.5, is_open=lambda d: False, p95=lambda d: None
    )
    assert [d.model_id for d in plan.deployments] == [
        "gemini-1-5-flash",
        "claude-3-5-haiku",
        "llama-3-1-70b",
    ]


def test_no_weights_send_everything_to_the_primary(config) -> None:  # type: ignore[no-untyped-def]
    counts = first_hops(table(config), n=500)
    assert counts == {"bedrock": 500}


def test_an_open_breaker_takes_its_deployment_out_of_the_weighted_draw(config) -> None:  # type: ignore[no-untyped-def]
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


def test_priority_strategy_keeps_chain_order_and_skips_open_breakers(config) -> None:  # type: ignore[no-untyped-def]
    t = table(config, {"traffic": TrafficSetting({"meta": 100}).to_json()}, routing="priority")
    plan = t.plan(
        "current",
        now=0.0,
        draw=lambda: 0.0,
        is_open=lambda d: d.startswith("bedrock"),
        p95=lambda d: None,
    )
    assert [d.provider for d in plan.deployments] == ["google", "meta", "bedrock"]


def test_latency_strategy_prefers_the_lowest_recent_p95(config) -> None:  # type: ignore[no-untyped-def]
    p95 = {"bedrock/claude-3-5-haiku": 900.0, "google/gemini-1-5-flash": 300.0}
    t = table(config, routing="latency")
    plan = t.plan("current", now=0.0, draw=lambda: 0.0, is_open=lambda d: False, p95=p95.get)
    assert [d.provider for d in plan.deployments] == ["google", "bedrock", "meta"]


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


def test_effective_weights_default_to_the_current_models_provider(config) -> None:  # type: ignore[no-untyped-def]
    assert effective_weights(config, "production", {}, "claude-3-5-haiku", 0.0) == {
        "bedrock": 100.0
    }
    runtime = {"traffic": TrafficSetting({"google": 70, "meta": 30, "bedrock": 0}).to_json()}
    assert effective_weights(config, "production", runtime, "claude-3-5-haiku", 0.0) == {
        "google": 70.0,
        "meta": 30.0,
    }


def test_the_route_view_says_when_weights_choose_another_model_than_the_alias() -> None:
    """Issue 16: after a rollback to gemini and a failback that restored bedrock:100, every
    request went to claude-3-haiku on bedrock, and nothing said so."""
    from quality_gates.config import parse_config_text, render_starter
    from quality_gates.gateway._routing import RouteTable, first_choice_shares
    from quality_gates.gateway.route_view import AliasRoute

    config = parse_config_text(render_starter("r"), "q.yaml").config
    runtime = {"traffic": {"weights": {"bedrock": 100.0}, "start": 0.0, "duration": 0.0}}
    table = RouteTable(config, "production", {"current": "gemini-1-5-flash"}, runtime)
    shares = first_choice_shares(table, "current", now=1.0, is_open=lambda _d: False)
    assert shares == {"bedrock/claude-3-haiku": 1.0}
    route = AliasRoute("production", "current", "gemini-1-5-flash", shares, {"bedrock": 100.0})
    warning = route.warning()
    assert warning is not None
    assert "`current` names gemini-1-5-flash, yet its requests go first to bedrock/" in warning
    healthy = RouteTable(config, "production", {"current": "claude-3-5-haiku"}, runtime)
    own = first_choice_shares(healthy, "current", now=1.0, is_open=lambda _d: False)
    assert own == {"bedrock/claude-3-5-haiku": 1.0}
    assert AliasRoute("production", "current", "claude-3-5-haiku", own).warning() is None
