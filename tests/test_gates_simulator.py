"""Acceptance of the offline gate with the simulator playing the models, over real HTTP
through the real adapters: 97% vs 97% APPROVE, 92% vs 97% REJECT, 96.5% vs 97% on 200 items
CONDITIONAL with a suggested sample size."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_workspace

from quality_gates.config import load_config
from quality_gates.gates.offline import OfflineOptions, run_offline
from quality_gates.gates.verdict import GateVerdict
from quality_gates.providers import build_provider
from quality_gates.simulator import SimulatorSpec, run_simulators, spec_from_provider

pytestmark = pytest.mark.integration
SEED = 1

CONFIG = """\
version: 1
providers:
  - name: sim
    kind: simulator
    protocol: {protocol}
    port: 1
    seed: {seed}
    faults:
      latency_p50_ms: 2ms
      latency_p95_ms: 5ms
      answer_key: {key}
      models:
        cand-1: {{accuracy: {candidate}}}
        base-1: {{accuracy: {baseline}}}
models:
  - {{id: candidate, provider: sim, name: cand-1}}
  - {{id: baseline, provider: sim, name: base-1}}
environments:
  production:
    aliases: {{current: baseline}}
gates:
  moderation: none
  pii: false
"""


def _dataset(path: Path, n: int) -> None:
    with path.open("w") as handle:
        for i in range(n):
            handle.write(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "input": f"What is the code of item {i}?",
                        "expected": f"code-{i}",
                    }
                )
                + "\n"
            )


def _gate(tmp_path: Path, n: int, candidate: float, baseline: float, protocol: str) -> Any:
    root = tmp_path / "ws"
    root.mkdir()
    dataset = root / "items.jsonl"
    _dataset(dataset, n)
    text = CONFIG.format(
        protocol=protocol, seed=SEED, key=dataset, candidate=candidate, baseline=baseline
    )
    ws = make_workspace(root, f"sqlite:///{root / 'state.db'}", text)
    config = load_config(ws.config_path).config

    async def run() -> Any:
        provider_cfg = config.provider("sim")
        assert provider_cfg is not None
        spec: SimulatorSpec = spec_from_provider(provider_cfg, config.models, base_dir=root, port=0)
        async with run_simulators([spec]) as sims:
            url = sims["sim"].base_url
            return await run_offline(
                ws.conn,
                config,
                OfflineOptions(
                    model_ref="candidate",
                    dataset=str(dataset),
                    baseline="baseline",
                    concurrency=32,
                    actor="t",
                ),
                config_dir=root,
                factory=lambda p, models: build_provider(p, models, base_url=url),
            )

    try:
        return asyncio.run(run())
    finally:
        ws.database.close_shared()


@pytest.mark.parametrize(
    ("n", "candidate", "baseline", "verdict", "protocol"),
    [
        (1000, 0.97, 0.97, GateVerdict.APPROVE, "openai"),
        (1000, 0.92, 0.97, GateVerdict.REJECT, "anthropic"),
        (200, 0.965, 0.97, GateVerdict.CONDITIONAL, "gemini"),
    ],
)
def test_offline_gate_against_the_simulator(
    tmp_path: Path,
    n: int,
    candidate: float,
    baseline: float,
    verdict: GateVerdict,
    protocol: str,
) -> None:
    result = _gate(tmp_path, n, candidate, baseline, protocol)
    summary = result.summary
    assert summary["metrics"]["candidate"]["error_rate"]["value"] == 0
    measured = summary["metrics"]["candidate"]["accuracy"]["value"]
    assert measured == pytest.approx(candidate, abs=0.03)
    assert result.verdict is verdict, summary["reasons"]
    if verdict is GateVerdict.CONDITIONAL:
        assert summary["suggested_items"] > n


def test_operating_characteristics_over_seeds() -> None:
    """Over 24 simulator seeds (independent errors per model): equal accuracy never REJECTs,
    a 5-point drop never APPROVEs; the fixed seed above is one of these, not a lucky pick of
    a rule that fails elsewhere."""
    from quality_gates.gates import stats
    from quality_gates.simulator._answers import normalise, unit_hash

    def decide(seed: int, n: int, cand: float, base: float) -> str:
        questions = [normalise(f"What is the code of item {i}?") for i in range(n)]
        c = [unit_hash(seed, "cand-1", q) < cand for q in questions]
        b = [unit_hash(seed, "base-1", q) < base for q in questions]
        worse = sum(1 for x, y in zip(b, c, strict=True) if x and not y)
        better = sum(1 for x, y in zip(b, c, strict=True) if y and not x)
        p_ni, p_inf = stats.paired_binary_noninferiority(n, worse, better, 0.02)
        return "APPROVE" if p_ni < 0.05 else ("REJECT" if p_inf < 0.05 else "CONDITIONAL")

    equal = [decide(s, 1000, 0.97, 0.97) for s in range(1, 25)]
    worse = [decide(s, 1000, 0.92, 0.97) for s in range(1, 25)]
    assert "REJECT" not in equal
    assert "APPROVE" not in worse
    assert equal.count("APPROVE") >= 16
    assert worse.count("REJECT") >= 16
    assert decide(SEED, 1000, 0.97, 0.97) == "APPROVE"
