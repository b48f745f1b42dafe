"""The offline gate on tool calls and structured outputs, with the simulator playing the
models over real HTTP: dataset items carry `tools` or a `response_format`; the `tool_call`
and `json_schema` scorers pass the well-formed answers and fail a model whose tool
arguments are cut off or whose JSON breaks its schema."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import make_workspace

from quality_gates.config import load_config
from quality_gates.errors import UsageError
from quality_gates.gates.datasets import DatasetItem
from quality_gates.gates.offline import OfflineOptions, run_offline
from quality_gates.gates.scorers import Answer, ScorerContext, build
from quality_gates.gates.verdict import GateVerdict
from quality_gates.providers import Message, build_provider
from quality_gates.simulator import run_simulators, spec_from_provider

pytestmark = pytest.mark.integration

CONFIG = """\
version: 1
providers:
  - name: sim
    kind: simulator
    protocol: {protocol}
    port: 1
    seed: 5
    faults:
      latency_p50_ms: 1ms
      latency_p95_ms: 2ms
      models:
        cand-1: {{malformed_tool_args_rate: {broken}, invalid_json_rate: {broken}}}
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
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer", "confidence"],
}


def _dataset(path: Path, n: int) -> None:
    with path.open("w") as handle:
        for i in range(n):
            if i % 2:
                item: dict[str, Any] = {
                    "id": f"t{i}",
                    "input": f"Weather in city {i}?",
                    "tools": [WEATHER],
                    "assertions": [{"type": "tool_call", "name": "get_weather"}],
                }
            else:
                item = {
                    "id": f"j{i}",
                    "input": f"Question {i}, as JSON",
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "reply", "schema": SCHEMA},
                    },
                    "assertions": [{"type": "json_schema", "schema": SCHEMA}],
                }
            handle.write(json.dumps(item) + "\n")


def _gate(tmp_path: Path, protocol: str, broken: float) -> Any:
    root = tmp_path / "ws"
    root.mkdir()
    dataset = root / "items.jsonl"
    _dataset(dataset, 60)
    text = CONFIG.format(protocol=protocol, broken=broken)
    ws = make_workspace(root, f"sqlite:///{root / 'state.db'}", text)
    config = load_config(ws.config_path).config

    async def run() -> Any:
        provider_cfg = config.provider("sim")
        assert provider_cfg is not None
        spec = spec_from_provider(provider_cfg, config.models, base_dir=root, port=0)
        async with run_simulators([spec]) as sims:
            url = sims["sim"].base_url
            return await run_offline(
                ws.conn,
                config,
                OfflineOptions(
                    model_ref="candidate",
                    dataset=str(dataset),
                    baseline="baseline",
                    concurrency=8,
                    actor="t",
                ),
                config_dir=root,
                factory=lambda p, models: build_provider(p, models, base_url=url),
            )

    try:
        return asyncio.run(run())
    finally:
        ws.database.close_shared()


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini", "bedrock"])
def test_tool_calls_and_json_pass_on_every_protocol(tmp_path: Path, protocol: str) -> None:
    result = _gate(tmp_path, protocol, 0.0)
    metrics = result.summary["metrics"]
    assert metrics["candidate"]["accuracy"]["value"] == 1.0, result.summary["reasons"]
    assert metrics["baseline"]["accuracy"]["value"] == 1.0
    assert result.verdict is not GateVerdict.REJECT


def test_broken_tool_arguments_and_json_reject_the_candidate(tmp_path: Path) -> None:
    result = _gate(tmp_path, "openai", 1.0)
    metrics = result.summary["metrics"]
    assert metrics["candidate"]["accuracy"]["value"] == 0.0
    assert metrics["baseline"]["accuracy"]["value"] == 1.0
    assert result.verdict is GateVerdict.REJECT


async def test_tool_call_scorer_matches_exactly_or_as_a_subset() -> None:
    item = DatasetItem("x", (Message("user", "q"),))
    call = {"id": "c", "name": "get_weather", "arguments": '{"city": "Oslo", "days": 2}'}
    answer = Answer("", tool_calls=[call])
    ctx = ScorerContext()
    subset = build({"type": "tool_call", "name": "get_weather", "arguments": {"city": "Oslo"}}, ctx)
    assert (await subset.score(item, answer)).passed
    exact = build(
        {
            "type": "tool_call",
            "name": "get_weather",
            "arguments": {"city": "Oslo"},
            "match": "exact",
        },
        ctx,
    )
    assert not (await exact.score(item, answer)).passed
    other = build({"type": "tool_call", "name": "get_time"}, ctx)
    missed = await other.score(item, answer)
    assert not missed.passed
    assert "made: get_weather" in missed.detail
    cut = Answer("", tool_calls=[{**call, "arguments": '{"city": "Os'}])
    broken = await subset.score(item, cut)
    assert not broken.passed
    assert "not valid JSON" in broken.detail
    with pytest.raises(UsageError, match="match"):
        build({"type": "tool_call", "name": "f", "match": "fuzzy"}, ctx)
