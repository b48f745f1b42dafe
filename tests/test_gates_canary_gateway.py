"""The canary gate end to end: simulators play the models, the real gateway routes the
canary share and records telemetry, the gate reads it back and promotes or rolls back.

Acceptance: a candidate with +40% latency is rolled back; one equal to baseline is promoted.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.conftest import Workspace, make_workspace
from tests.gateway_support import FAST_GATEWAY, running_gateway

from quality_gates.config import load_config, render_starter
from quality_gates.gates.canary import CanaryOptions, run_canary
from quality_gates.gates.verdict import GateVerdict
from quality_gates.providers import build_provider
from quality_gates.simulator import run_simulators, spec_from_provider
from quality_gates.store import settings
from quality_gates.store.registry import get_alias

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CANDIDATE, BASELINE = "gemini-1-5-flash", "claude-3-5-haiku"

GATES = """
gates:
  moderation: none
  pii: false
  canary:
    min_requests: 40
    looks: 2
"""


def _workspace(root: Path, candidate_p50_ms: float) -> Workspace:
    text = render_starter("canary-e2e")
    # Baseline (bedrock) at 40 ms median; the candidate (google) at the given median, same spread.
    text = text.replace(
        "    seed: 1\n",
        "    seed: 1\n    faults: {latency_p50_ms: 40ms, latency_p95_ms: 60ms}\n",
        1,
    ).replace(
        "    seed: 2\n",
        f"    seed: 2\n    faults: {{latency_p50_ms: {candidate_p50_ms}ms, "
        f"latency_p95_ms: {candidate_p50_ms * 1.5}ms}}\n",
        1,
    )
    text = text[: text.index("\ngates:")] + "\n" + FAST_GATEWAY + GATES
    return make_workspace(root, f"sqlite:///{root / 'state.db'}", text)


async def _traffic(url: str, stop: asyncio.Event, rps: float = 80) -> int:
    sent = 0
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            # Distinct prompts: the gateway's cache must not answer for the models.
            body = {"model": "current", "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"Say hello #{sent}"}]}  # fmt: skip
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.post(f"{url}/v1/chat/completions", json=body) as reply:
                    await reply.read()

        tasks = set()
        while not stop.is_set():
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            await asyncio.sleep(1 / rps)
        await asyncio.gather(*tasks)
    return sent


def _run(tmp_path: Path, candidate_p50_ms: float) -> tuple[Any, Workspace]:
    ws = _workspace(tmp_path / "ws", candidate_p50_ms)
    config = load_config(ws.config_path).config

    async def main() -> Any:
        specs = [
            spec_from_provider(p, config.models, base_dir=ws.root, port=0) for p in config.providers
        ]
        async with run_simulators(specs) as sims:
            adapters = {
                name: build_provider(config.provider(name), config.models,  # type: ignore[arg-type]
                                     base_url=sim.base_url)
                for name, sim in sims.items()
            }  # fmt: skip
            async with running_gateway(ws, adapters) as (url, _app):
                stop = asyncio.Event()
                load = asyncio.create_task(_traffic(url, stop))
                try:
                    return await run_canary(
                        ws.conn,
                        config,
                        CanaryOptions(model_ref=CANDIDATE, traffic=30, duration_s=8,
                                      actor="tester"),
                    )  # fmt: skip
                finally:
                    stop.set()
                    await load
                    for adapter in adapters.values():
                        await adapter.close()

    return asyncio.run(main()), ws


def test_forty_percent_slower_candidate_is_rolled_back(tmp_path: Path) -> None:
    result, ws = _run(tmp_path, candidate_p50_ms=56)
    try:
        assert result.verdict is GateVerdict.REJECT, result.summary["reasons"]
        latency = next(m for m in result.looks[-1].metrics if m.metric == "latency_ms")
        assert latency.outcome == "fail"
        assert latency.n_canary >= 40
        assert settings.get(ws.conn, "production", "canary")["percent"] == 0.0
        assert get_alias(ws.conn, "production", "current").model_id == BASELINE
    finally:
        ws.database.close_shared()


def test_candidate_equal_to_baseline_is_promoted(tmp_path: Path) -> None:
    result, ws = _run(tmp_path, candidate_p50_ms=40)
    try:
        assert result.verdict is GateVerdict.APPROVE, result.summary["reasons"]
        assert get_alias(ws.conn, "production", "current").model_id == CANDIDATE
        assert get_alias(ws.conn, "production", "previous-stable").model_id == BASELINE
        assert settings.get(ws.conn, "production", "canary") is None
        # The performance gate's production path reads the same traffic from the roll-ups.
        import time

        from quality_gates.gates.performance import from_telemetry

        measured = from_telemetry(ws.conn, "production", BASELINE, 120, time.time())
        assert measured.requests >= 200
        p95 = measured.latency.quantile(0.95)
        assert p95 is not None
        assert 20 < p95 < 1500
    finally:
        ws.database.close_shared()
