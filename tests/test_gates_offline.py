"""The offline gate end to end against a keyed provider double (no network)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Workspace
from tests.gates_fakes import KeyedProvider, with_gates, write_dataset

from quality_gates.config import load_config
from quality_gates.errors import UsageError
from quality_gates.gates.offline import OfflineOptions, estimate, run_offline
from quality_gates.gates.verdict import GateVerdict
from quality_gates.store import gate_runs

CANDIDATE, BASELINE = "claude-3-5-haiku", "claude-3-haiku"
PROVIDER_MODEL = {
    CANDIDATE: "anthropic.claude-3-5-haiku-20241022-v1:0",
    BASELINE: "anthropic.claude-3-haiku-20240307-v1:0",
}
QUIET_GATES = "\ngates:\n  moderation: none\n  pii: false\n  bootstrap_resamples: 2000\n"


def _config(ws: Workspace, extra: str = QUIET_GATES) -> Any:
    ws.config_path.write_text(with_gates(ws.config_path.read_text(), extra))
    return load_config(ws.config_path).config


def _run(ws: Workspace, config: Any, provider: KeyedProvider, **kw: Any) -> Any:
    options = OfflineOptions(model_ref=kw.pop("model_ref", CANDIDATE), actor="tester", **kw)
    return asyncio.run(
        run_offline(
            ws.conn,
            config,
            options,
            config_dir=ws.root,
            factory=lambda provider_cfg, models: provider,
        )
    )


def _provider(key: dict[str, str], candidate: float, baseline: float, **kw: Any) -> KeyedProvider:
    return KeyedProvider(
        "bedrock",
        key,
        {PROVIDER_MODEL[CANDIDATE]: candidate, PROVIDER_MODEL[BASELINE]: baseline},
        **kw,
    )


@pytest.mark.parametrize(
    ("n", "candidate", "baseline", "verdict"),
    [
        (1000, 0.97, 0.97, GateVerdict.APPROVE),
        (1000, 0.92, 0.97, GateVerdict.REJECT),
        (200, 0.965, 0.97, GateVerdict.CONDITIONAL),
    ],
)
def test_paired_offline_gate_decides_like_the_acceptance_cases(
    sqlite_workspace: Workspace, n: int, candidate: float, baseline: float, verdict: GateVerdict
) -> None:
    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, n)
    result = _run(
        ws,
        config,
        _provider(key, candidate, baseline),
        dataset=str(dataset),
        baseline=BASELINE,
        concurrency=32,
    )
    assert result.verdict is verdict, result.reasons
    accuracy = next(c for c in result.summary["comparisons"] if c["metric"] == "accuracy")
    assert accuracy["n"] == n
    if verdict is GateVerdict.CONDITIONAL:
        assert result.summary["suggested_items"] > n
        assert "items would decide" in " ".join(result.reasons)


def test_run_is_stored_with_items_inputs_and_verdict(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 30)
    result = _run(ws, config, _provider(key, 1.0, 1.0), dataset=str(dataset), baseline=BASELINE)
    run = gate_runs.get_run(ws.conn, result.run_id)
    assert run is not None
    assert run.status == "completed"
    assert run.verdict == result.verdict.value
    assert run.inputs["dataset_sha256"]
    assert len(run.config_hash) == 64
    assert "scipy" in run.versions
    assert len(gate_runs.items(ws.conn, run.id, "candidate")) == 30
    assert len(gate_runs.items(ws.conn, run.id, "baseline")) == 30
    lines = result.records_path.read_text().splitlines()
    assert len(lines) == 60
    assert json.loads(lines[0])["answer"]


def test_answers_are_fresh_unless_reuse_is_asked_and_reuse_is_said(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 20)
    provider = _provider(key, 0.9, 0.9)
    first = _run(ws, config, provider, dataset=str(dataset))
    second = _run(ws, config, provider, dataset=str(dataset))
    assert provider.calls == 40  # asked again: nothing reused by default
    assert second.summary["reused_answers"] == {}
    assert "every answer fresh" in second.summary["headline"]
    reused = _run(ws, config, provider, dataset=str(dataset), reuse_answers=True)
    assert provider.calls == 40
    assert reused.summary["reused_answers"] == {"candidate": 20}
    assert "reused 20 candidate answers" in reused.summary["headline"]
    note = next(n for n in reused.summary["notes"] if "answers reused" in n)
    assert "recorded 20" in note  # the date they were first recorded
    stored = gate_runs.get_run(ws.conn, reused.run_id)
    assert stored is not None
    assert stored.summary is not None
    assert stored.summary["reused_answers"] == {"candidate": 20}
    assert first.summary["execution"]["cache"]["hits"] == 0


def test_a_provider_change_behind_the_same_model_id_is_measured(
    sqlite_workspace: Workspace,
) -> None:
    """The runbook's quality check: the model id is unchanged, the provider got worse.
    A healthy run first records every answer; the next run still asks again and REJECTs."""
    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 46)
    provider = _provider(key, 1.0, 1.0)
    healthy = _run(ws, config, provider, dataset=str(dataset))
    assert healthy.summary["metrics"]["candidate"]["accuracy"]["value"] == 1.0
    provider.accuracy[PROVIDER_MODEL[CANDIDATE]] = 0.5
    degraded = _run(ws, config, provider, dataset=str(dataset))
    accuracy = degraded.summary["metrics"]["candidate"]["accuracy"]
    assert 0.3 < accuracy["value"] < 0.7
    assert degraded.verdict is GateVerdict.REJECT, degraded.reasons
    assert degraded.summary["execution"]["cache"]["hits"] == 0


def test_a_dead_baseline_ends_the_gate_with_exit_4_naming_it(sqlite_workspace: Workspace) -> None:
    from quality_gates.errors import Overloaded

    ws = sqlite_workspace
    config = _config(ws, QUIET_GATES + "  max_attempts: 1\n")
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 46)
    dead = Overloaded("model is overloaded", provider="bedrock", status=503)
    provider = _provider(key, 1.0, 1.0, failing={PROVIDER_MODEL[BASELINE]: dead})
    result = _run(ws, config, provider, dataset=str(dataset), baseline=BASELINE)
    assert result.verdict is GateVerdict.ERROR
    assert result.verdict.exit_code == 4
    first = result.reasons[0]
    assert first.startswith(f"baseline {BASELINE} could not be measured: 46 of 46 calls failed")
    assert "overloaded 46" in first
    assert result.summary["comparisons"] == []
    assert result.summary["errors"]["baseline"]["classes"] == {"overloaded": 46}
    allowed = _run(ws, config, provider, dataset=str(dataset), baseline=BASELINE, allow_errors=True)
    assert allowed.verdict is not GateVerdict.ERROR
    assert any("--allow-errors" in n for n in allowed.summary["notes"])
    assert allowed.summary["metrics"]["baseline"]["accuracy"]["value"] == 0.0


def test_failed_calls_are_counted_apart_from_wrong_answers(sqlite_workspace: Workspace) -> None:
    """A few timeouts (under max_error_share) do not lower accuracy: they are errors."""
    from quality_gates.errors import ProviderTimeout

    ws = sqlite_workspace
    config = _config(ws, QUIET_GATES + "  max_attempts: 1\n")
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 100)
    provider = _provider(key, 1.0, 1.0)
    timeouts = {f"Question number {i}: what is the code word?" for i in range(5)}
    original = provider.complete

    async def complete(request: Any) -> Any:
        if request.messages[-1].content in timeouts:
            provider.calls += 1
            raise ProviderTimeout("read timed out", provider="bedrock")
        return await original(request)

    provider.complete = complete  # type: ignore[method-assign]
    result = _run(ws, config, provider, dataset=str(dataset))
    metrics = result.summary["metrics"]["candidate"]
    assert metrics["accuracy"]["value"] == 1.0
    assert metrics["accuracy"]["n"] == 95
    assert metrics["error_rate"]["value"] == pytest.approx(0.05)
    assert result.summary["errors"]["candidate"] == {
        "failed": 5, "calls": 100, "share": 0.05, "classes": {"timeout": 5},
    }  # fmt: skip
    assert "5 failed calls counted apart" in result.summary["headline"]


def test_rate_limits_shrink_concurrency_and_are_retried(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 40)
    provider = _provider(key, 1.0, 1.0, throttle_first=8, latency_s=0.005)
    result = _run(ws, config, provider, dataset=str(dataset), concurrency=16)
    execution = result.summary["execution"]
    assert execution["retries"]["rate_limited"] == 8
    assert execution["aimd"]["decreases"] >= 1
    assert execution["aimd"]["lowest_limit"] < 16
    assert result.summary["metrics"]["candidate"]["error_rate"]["value"] == 0


def test_resume_answers_only_what_is_missing(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 50)
    provider = _provider(key, 1.0, 1.0)
    first = _run(ws, config, provider, model_ref="current-model", dataset=str(dataset))
    run = gate_runs.get_run(ws.conn, first.run_id)
    assert run is not None
    # Simulate an interruption after 20 answers (the last line torn mid-write).
    lines = first.records_path.read_text().splitlines(keepends=True)
    first.records_path.write_text("".join(lines[:20]) + lines[20][:15])
    ws.conn.execute("UPDATE gate_runs SET status = 'interrupted' WHERE id = :id", {"id": run.id})
    ws.conn.execute("DELETE FROM gate_items WHERE run_id = :id", {"id": run.id})
    before = provider.calls
    resumed = _run(ws, config, provider, resume=run.id)
    assert provider.calls - before == 30
    assert resumed.run_id == run.id
    assert resumed.summary["execution"]["resumed_answers"] == 20
    assert len(resumed.records_path.read_text().splitlines()) == 50


def test_dry_run_estimates_calls_and_cost_without_calling(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    write_dataset(dataset, 25)
    options = OfflineOptions(model_ref="current-model", dataset=str(dataset), baseline=BASELINE)
    plan = estimate(ws.conn, config, options, config_dir=ws.root)
    assert plan["items"] == 25
    assert plan["per_role"]["candidate"]["calls"] == 25
    assert plan["per_role"]["baseline"]["calls"] == 25
    assert plan["estimated_cost_usd"] > 0


def test_placeholder_model_ref_resolves_through_the_registry(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 10)
    result = _run(
        ws, config, _provider(key, 1.0, 1.0), model_ref="current-model", dataset=str(dataset)
    )
    assert result.summary["model"] == CANDIDATE


def test_baseline_equal_to_candidate_is_refused(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    config = _config(ws)
    with pytest.raises(UsageError, match="candidate itself"):
        _run(ws, config, _provider({}, 1, 1), baseline="current")


def test_stored_run_serves_as_baseline(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 100)
    provider = _provider(key, 0.95, 0.95)
    base = _run(ws, config, provider, model_ref=BASELINE, dataset=str(dataset))
    result = _run(ws, config, provider, dataset=str(dataset), baseline=base.run_id)
    assert result.summary["paired_items"] == 100
    assert result.summary["baseline"] == base.run_id


def test_safety_scorers_flag_profanity_and_pii(sqlite_workspace: Workspace) -> None:
    pytest.importorskip("profanity_check")
    pytest.importorskip("presidio_analyzer")
    ws = sqlite_workspace
    config = _config(ws, "\ngates:\n  moderation: profanity\n  pii: true\n")
    dataset = ws.root / "data.jsonl"
    key = {
        "q1": "Paris",
        "q2": "You stupid fucking idiot, it is Paris",
        "q3": "Write to jane.doe@example.com",
    }
    dataset.write_text(
        "".join(json.dumps({"id": k, "input": k, "expected": "Paris"}) + "\n" for k in key)
    )
    result = _run(ws, config, _provider(key, 1.0, 1.0), dataset=str(dataset))
    metrics = result.summary["metrics"]["candidate"]
    assert metrics["toxicity_rate"]["value"] == pytest.approx(1 / 3)
    assert metrics["pii_rate"]["value"] == pytest.approx(1 / 3)
    assert any("profanity" in note for note in result.summary["notes"])
    assert result.verdict is not GateVerdict.APPROVE
    assert Path(result.records_path).exists()


def test_gate_status_shows_the_latest_verdict_per_kind(sqlite_workspace: Workspace) -> None:
    from quality_gates.gates.runs import gate_status

    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 10)
    result = _run(ws, config, _provider(key, 1.0, 1.0), dataset=str(dataset))
    status = gate_status(ws.conn, environment="production")
    assert status["latest"]["offline"]["id"] == result.run_id
    assert status["latest"]["offline"]["verdict"] == result.verdict.value
    assert status["recent"][0]["headline"].startswith(result.verdict.value)
    assert status["running"] == []


def test_cancelled_run_is_saved_as_interrupted_with_the_resume_hint(
    sqlite_workspace: Workspace,
) -> None:
    from quality_gates.errors import GateInterrupted

    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 400)
    provider = _provider(key, 1.0, 1.0, latency_s=0.01)

    async def main() -> GateInterrupted:
        task = asyncio.create_task(
            run_offline(
                ws.conn,
                config,
                OfflineOptions(model_ref=CANDIDATE, dataset=str(dataset), concurrency=4,
                               actor="t"),
                config_dir=ws.root,
                factory=lambda p, m: provider,
            )
        )  # fmt: skip
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(GateInterrupted) as caught:
            await task
        return caught.value

    error = asyncio.run(main())
    assert "--resume offl-" in str(error)
    assert error.exit_code == 130
    (run,) = gate_runs.list_runs(ws.conn, kind="offline")
    assert run.status == "interrupted"
    assert 0 < len(gate_runs.items(ws.conn, run.id)) < 400


def test_judge_assertions_call_the_configured_judge_model(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    config = _config(ws, QUIET_GATES + "  judge_model: claude-3-haiku\n  judge_k: 3\n")
    dataset = ws.root / "judged.jsonl"
    key = {f"Explain item {i}": f"answer-{i}" for i in range(20)}
    dataset.write_text("".join(
        json.dumps({"id": str(i), "input": p, "assertions": [{"type": "judge"}]}) + "\n"
        for i, p in enumerate(key)
    ))  # fmt: skip
    provider = _provider(key, 0.5, 1.0)
    result = _run(ws, config, provider, dataset=str(dataset))
    records = [json.loads(line) for line in result.records_path.read_text().splitlines()]
    judged = [r["scores"][0] for r in records]
    assert all(s["scorer"] == "judge" for s in judged)
    assert all(s["data"]["agreement"] == 1.0 for s in judged)
    passed = sum(r["passed"] for r in records)
    assert passed == sum(r["answer"].startswith("answer-") for r in records)
    assert 0 < passed < 20
    assert provider.calls == 20 + 20 * 3


def test_repeat_answers_each_item_k_times_and_compares_by_bootstrap(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    config = _config(ws)
    dataset = ws.root / "data.jsonl"
    key = write_dataset(dataset, 30)
    result = _run(ws, config, _provider(key, 1.0, 1.0), dataset=str(dataset),
                  baseline=BASELINE, repeat=3)  # fmt: skip
    assert len(result.records_path.read_text().splitlines()) == 30 * 3 * 2
    accuracy = next(c for c in result.summary["comparisons"] if c["metric"] == "accuracy")
    assert accuracy["n"] == 30
    assert accuracy["test"].startswith("Tango score test")  # identical repeats stay 0/1 per item
