"""Pipelines chain the gates into one verdict; batch compares models."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Workspace
from tests.gates_fakes import KeyedProvider, with_gates, write_dataset
from tests.test_gates_offline import PROVIDER_MODEL, QUIET_GATES

from quality_gates.config import load_config
from quality_gates.gates.pipeline import PipelineOptions, run_batch, run_pipeline
from quality_gates.gates.verdict import GateVerdict
from quality_gates.store import gate_runs


def _setup(ws: Workspace, candidate: float) -> tuple[Any, KeyedProvider]:
    ws.config_path.write_text(with_gates(ws.config_path.read_text(), QUIET_GATES))
    key = write_dataset(ws.root / "data.jsonl", 300)
    provider = KeyedProvider(
        "bedrock",
        key,
        {PROVIDER_MODEL["claude-3-haiku"]: candidate,
         PROVIDER_MODEL["claude-3-5-haiku"]: 0.97},
        latency_s=0.002,
    )  # fmt: skip
    return load_config(ws.config_path).config, provider


def test_staging_pipeline_runs_offline_then_performance(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    config, provider = _setup(ws, 0.97)
    options = PipelineOptions(
        kind="staging",
        model_ref="previous-stable",
        dataset=str(ws.root / "data.jsonl"),
        performance_duration_s=0.5,
        actor="t",
    )
    verdict, summary = asyncio.run(
        run_pipeline(ws.conn, config, options, config_dir=ws.root,
                     factory=lambda p, m: provider)
    )  # fmt: skip
    assert [s["stage"] for s in summary["stages"]] == ["offline", "performance"]
    assert verdict.value == summary["verdict"]
    children = gate_runs.list_runs(ws.conn, parent_id=summary["run_id"])
    assert {c.kind for c in children} == {"offline", "performance"}


def test_a_rejected_stage_stops_the_pipeline(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    config, provider = _setup(ws, 0.60)
    options = PipelineOptions(
        kind="staging",
        model_ref="previous-stable",
        dataset=str(ws.root / "data.jsonl"),
        actor="t",
    )
    verdict, summary = asyncio.run(
        run_pipeline(ws.conn, config, options, config_dir=ws.root,
                     factory=lambda p, m: provider)
    )  # fmt: skip
    assert verdict is GateVerdict.REJECT
    assert summary["stages"][1] == {
        "stage": "performance",
        "verdict": "SKIPPED",
        "detail": "skipped: an earlier stage stopped the pipeline",
    }


def test_batch_ranks_models(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    config, provider = _setup(ws, 0.80)
    verdict, summary = asyncio.run(
        run_batch(ws.conn, config, ["claude-3-haiku", "current"], environment="production",
                  dataset=str(ws.root / "data.jsonl"), baseline=None, config_dir=ws.root,
                  actor="t", factory=lambda p, m: provider)
    )  # fmt: skip
    assert [r["model"] for r in summary["models"]] == ["claude-3-haiku", "claude-3-5-haiku"]
    assert summary["headline"].startswith("ranking by accuracy on answered items: claude-3-5-haiku")
    assert summary["headline"].endswith("every answer fresh")
    assert verdict is GateVerdict.REJECT  # 80% is below the 95% accuracy threshold
