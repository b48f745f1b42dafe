"""Issue 16's routing bullets through a running `serve`, with real requests: which model and
provider answered each one (`x-qg-model`, `x-qg-provider`) after the levers an on-call
engineer pulls (failover, rollback, failback, a hand-set distribution under latency
routing), and that `status` prints the route the requests then take."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tests.test_e2e_serve import NO_PROBES, serve, simulators, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


def _answered_by(url: str, n: int, model: str = "current") -> Counter[str]:
    """provider/model of `n` requests, each a distinct prompt; every answer must be a 200."""
    seen: Counter[str] = Counter()
    for i in range(n):
        body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": f"question {i} {n}"}]}
        )
        request = urllib.request.Request(
            f"{url}/v1/chat/completions",
            data=body.encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=15) as resp:
            assert resp.status == 200
            seen[f"{resp.headers['x-qg-provider']}/{resp.headers['x-qg-model']}"] += 1
    return seen


def _weights_live(ws: Any, weights: dict[str, float] | None) -> None:
    from quality_gates.store import settings

    def applied() -> bool:
        value = settings.get(ws.conn, "production", "traffic")
        now = None if value is None else value.get("weights")
        return bool(now == weights) if weights is not None else now is None

    wait_for(applied, 10)


def test_the_alias_decides_the_model_across_failover_rollback_and_failback(
    tmp_path: Path, qg: Any
) -> None:
    """Bullet 1: after failback restored bedrock, `current` named gemini-1-5-flash and 20 of
    20 requests were answered by claude-3-haiku on bedrock."""
    with simulators(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}", NO_PROBES) as (
        ws,
        _sims,
    ):
        args = ws.cli_args()
        with serve(ws) as url:
            wait_for(lambda: ws.conn.scalar("SELECT COUNT(*) FROM gateway_instances") > 0, 10)
            assert _answered_by(url, 10) == {"bedrock/claude-3-5-haiku": 10}
            out = qg(*args, "failover", "--from", "bedrock", "--to", "google", "--reason", "x")
            assert out.code == 0, out.err
            _weights_live(ws, {"bedrock": 0.0, "google": 200.0, "meta": 100.0})
            wait_for(lambda: _answered_by(url, 1) == {"google/gemini-1-5-flash": 1}, 10)
            assert _answered_by(url, 20) == {"google/gemini-1-5-flash": 20}
            rollback = qg(*args, "rollback", "--model-id", "current", "--previous-model",
                          "backup", "--reason", "provider outage")  # fmt: skip
            assert rollback.code == 0, rollback.err
            back = qg(*args, "failback", "--provider", "bedrock", "--mode", "immediate",
                      "--pause", "0")  # fmt: skip
            assert back.code == 0, back.out + back.err
            _weights_live(ws, {"bedrock": 100.0, "google": 100.0, "meta": 100.0})
            # the gateway has the restored weights once a bedrock model is served there again
            wait_for(
                lambda: _answered_by(url, 1, "claude-3-haiku") == {"bedrock/claude-3-haiku": 1},
                10,
            )
            assert _answered_by(url, 20) == {"google/gemini-1-5-flash": 20}
            status = qg(*args, "status")
            assert "production  current -> gemini-1-5-flash: google 100%; chain" in status.out
            # what the model id names still goes where the weights say: bedrock keeps its own
            assert _answered_by(url, 5, "claude-3-haiku") == {"bedrock/claude-3-haiku": 5}


def test_a_hand_set_distribution_holds_under_latency_routing(tmp_path: Path, qg: Any) -> None:
    """Bullet 5: `google:70,meta:30` under latency routing sent 20 of 20 requests to google
    (the strategy ignored the weights and nothing said so)."""
    with simulators(tmp_path / "ws", f"sqlite:///{tmp_path / 'ws' / 'state.db'}", NO_PROBES) as (
        ws,
        _sims,
    ):
        args = ws.cli_args()
        edit = qg(*args, "config", "set", "environments.production.routing", "latency")
        assert edit.code == 0, edit.err
        with serve(ws) as url:
            wait_for(lambda: ws.conn.scalar("SELECT COUNT(*) FROM gateway_instances") > 0, 10)
            moved = qg(*args, "config", "set", "--traffic-distribution", "google:70,meta:30")
            assert moved.code == 0, moved.err
            said = " ".join(moved.out.split())
            assert "route: current -> claude-3-5-haiku: google/gemini-1-5-flash 70%, meta/" in (
                said
            )
            _weights_live(ws, {"google": 70.0, "meta": 30.0})
            wait_for(lambda: "bedrock/claude-3-5-haiku" not in _answered_by(url, 2), 10)
            seen = _answered_by(url, 120)
            assert set(seen) == {"google/gemini-1-5-flash", "meta/llama-3-1-70b"}
            # 70/30 of 120: 84 expected, sd 5.0; 4.5 sd either side
            assert 61 <= seen["google/gemini-1-5-flash"] <= 107, seen
            reset = qg(*args, "config", "set", "--traffic-distribution", "reset")
            assert reset.code == 0, reset.err
            _weights_live(ws, None)
            wait_for(lambda: _answered_by(url, 1) == {"bedrock/claude-3-5-haiku": 1}, 10)
            assert _answered_by(url, 10) == {"bedrock/claude-3-5-haiku": 10}
