"""Runs a dataset through models: bounded concurrency with AIMD back-off on 429, retries by
error class, the answer store (read only when reuse was asked for), and one result record
per answer as soon as it completes.

Written against `ChatProvider` only: the engine never knows the wire protocol. Items are
pulled from the dataset iterator through a bounded queue, so memory does not grow with the
dataset; each finished record goes to `on_record` (the JSONL writer, the tally, the bar).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from quality_gates.errors import ProviderError, RateLimited
from quality_gates.gates.cache import ResponseCache, request_key
from quality_gates.gates.datasets import DatasetItem
from quality_gates.gates.scorers import Answer, Scorer, ScoreResult
from quality_gates.providers import (
    ChatProvider,
    ChatRequest,
    ChatResponse,
    RequestExtras,
    ResponseFormat,
    Tool,
)

DEFAULT_MAX_ATTEMPTS = 4
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 8.0
MAX_ANSWER_CHARS = 20_000  # kept per record; longer answers are cut in the results file


@dataclass
class ModelTarget:
    """A model as the engine calls it: its provider adapter, model name and prices."""

    model_id: str
    provider: ChatProvider
    provider_name: str
    provider_model: str
    input_per_1k: float = 0.0
    output_per_1k: float = 0.0
    timeout_s: float = 60.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for one call."""
        return (input_tokens * self.input_per_1k + output_tokens * self.output_per_1k) / 1000


class AdaptiveLimit:
    """Concurrency that halves on a 429 and grows by one per window of successes (AIMD).

    A 429 only shrinks the limit if its request started after the last decrease, so one
    burst of throttled requests counts once (as TCP counts one loss per window).
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.limit = float(self.maximum)
        self.in_flight = 0
        self.decreases = 0
        self.min_seen = self.maximum
        self._last_decrease = 0.0
        self._not_before = 0.0
        self._cond = asyncio.Condition()

    async def acquire(self) -> float:
        """Wait for a slot; returns the ticket (start time) to hand back to `release`."""
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < int(self.limit))
            self.in_flight += 1
        pause = self._not_before - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        return time.monotonic()

    async def release(self, ticket: float, *, throttled: bool, retry_after: float | None) -> None:
        """Give the slot back, adjusting the limit for how the call went."""
        async with self._cond:
            self.in_flight -= 1
            now = time.monotonic()
            if throttled:
                if ticket >= self._last_decrease:
                    self.limit = max(1.0, self.limit / 2)
                    self._last_decrease = now
                    self.decreases += 1
                    self.min_seen = min(self.min_seen, int(self.limit))
                if retry_after:
                    self._not_before = max(self._not_before, now + retry_after)
            else:
                self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
            self._cond.notify_all()


@dataclass
class RunStats:
    """Counters for one run: calls, retries by class, errors by class."""

    calls: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


class Caller:
    """Calls models with retries by error class, the cache and the adaptive limit."""

    def __init__(
        self,
        *,
        concurrency: int,
        cache: ResponseCache,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        seed: int = 0,
    ) -> None:
        self.limit = AdaptiveLimit(concurrency)
        self.cache = cache
        self.max_attempts = max_attempts
        self.stats = RunStats()
        self._random = random.Random(seed)
        self.targets: dict[str, ModelTarget] = {}

    async def call(
        self, target: ModelTarget, request: ChatRequest, *, tries: list[int] | None = None
    ) -> ChatResponse:
        """One request with retries; raises the last ProviderError when they run out.
        `tries`, when given, holds the number of attempts made (this request's alone)."""
        attempt = 0
        while True:
            attempt += 1
            if tries is not None:
                tries[:] = [attempt]
            ticket = await self.limit.acquire()
            throttled, retry_after = False, None
            try:
                self.stats.calls += 1
                return await target.provider.complete(request)
            except ProviderError as exc:
                throttled = isinstance(exc, RateLimited)
                retry_after = exc.retry_after
                if not exc.retryable or attempt >= self.max_attempts:
                    raise
                self.stats.retries[exc.error_class] = self.stats.retries.get(exc.error_class, 0) + 1
            finally:
                await self.limit.release(ticket, throttled=throttled, retry_after=retry_after)
            # Full jitter (AWS architecture blog), never shorter than the server asked for.
            backoff = self._random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
            await asyncio.sleep(max(backoff, retry_after or 0.0))

    async def model_call(self, model_id: str, request: ChatRequest) -> ChatResponse:
        """For judges: call a model by id (cached like any other answer)."""
        target = self.targets[model_id]
        key = request_key(target.provider_name, request)
        cached = self.cache.get(key)
        if cached is not None:
            return ChatResponse(
                text=cached["text"],
                finish_reason="stop",
                usage=_usage(cached),
                latency_ms=cached.get("latency_ms", 0.0),
                ttft_ms=cached.get("ttft_ms", 0.0),
                provider=target.provider_name,
                model=target.provider_model,
            )
        request = ChatRequest(
            model=target.provider_model,
            messages=request.messages,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            timeout=target.timeout_s,
        )
        response = await self.call(target, request)
        self.cache.put(key, _cache_entry(response))
        return response

    async def answer(
        self,
        target: ModelTarget,
        item: DatasetItem,
        *,
        temperature: float | None,
        max_tokens: int | None,
        salt: str,
    ) -> Answer:
        """The model's answer to one item (a stored one only when the run reuses answers);
        errors become an Answer with `error_class`, never an exception."""
        request = ChatRequest(
            model=target.provider_model,
            messages=item.messages,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=target.timeout_s,
            request_id=f"{item.id}:{salt}",
            extras=item_extras(item),
        )
        key = request_key(target.provider_name, request, salt)
        cached = self.cache.get(key)
        if cached is not None:
            return Answer(
                text=cached["text"],
                latency_ms=cached.get("latency_ms", 0.0),
                ttft_ms=cached.get("ttft_ms", 0.0),
                input_tokens=cached.get("input_tokens", 0),
                output_tokens=cached.get("output_tokens", 0),
                cost=target.cost(cached.get("input_tokens", 0), cached.get("output_tokens", 0)),
                finish_reason=cached.get("finish_reason", "stop"),
                cached=True,
                attempts=0,
                stored_at=cached.get("stored_at"),
                tool_calls=list(cached.get("tool_calls") or ()),
            )
        started = time.perf_counter()
        tries = [0]
        try:
            response = await self.call(target, request, tries=tries)
        except ProviderError as exc:
            self.stats.errors[exc.error_class] = self.stats.errors.get(exc.error_class, 0) + 1
            return Answer(
                text="",
                latency_ms=(time.perf_counter() - started) * 1000,
                error_class=exc.error_class,
                error=str(exc)[:300],
                attempts=tries[0],
            )
        self.cache.put(key, _cache_entry(response))
        return Answer(
            text=response.text,
            latency_ms=response.latency_ms,
            ttft_ms=response.ttft_ms,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            cost=target.cost(response.usage.input_tokens, response.usage.output_tokens),
            finish_reason=response.finish_reason,
            attempts=tries[0],
            tool_calls=_calls(response),
        )


def item_extras(item: DatasetItem) -> RequestExtras | None:
    """The item's `tools` (OpenAI function tools) and `response_format`, as a request carries
    them (dataset fields beyond input/expected land in `metadata`)."""
    raw_tools = item.metadata.get("tools")
    raw_format = item.metadata.get("response_format")
    if not raw_tools and not raw_format:
        return None
    tools = tuple(
        Tool(
            str(t["function"]["name"]),
            str(t["function"].get("description") or ""),
            t["function"].get("parameters"),
        )
        for t in raw_tools or ()
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    )
    fmt = None
    if isinstance(raw_format, dict) and raw_format.get("type") == "json_object":
        fmt = ResponseFormat("json_object")
    elif isinstance(raw_format, dict) and raw_format.get("type") == "json_schema":
        spec = raw_format.get("json_schema") or {}
        fmt = ResponseFormat(
            "json_schema", str(spec.get("name") or "response"), spec.get("schema"), True
        )
    return RequestExtras(tools=tools, response_format=fmt)


def _usage(entry: dict[str, Any]) -> Any:
    from quality_gates.providers import Usage

    return Usage(entry.get("input_tokens", 0), entry.get("output_tokens", 0))


def _calls(response: ChatResponse) -> list[dict[str, str]]:
    return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls]


def _cache_entry(response: ChatResponse) -> dict[str, Any]:
    return {
        "tool_calls": _calls(response),
        "text": response.text,
        "finish_reason": response.finish_reason,
        "input_tokens": response.usage.input_tokens,
        "output_tokens": response.usage.output_tokens,
        "latency_ms": response.latency_ms,
        "ttft_ms": response.ttft_ms,
        "stored_at": time.time(),
    }


@dataclass(frozen=True)
class Unit:
    """One answer to get: an item, for a role (candidate or baseline), repetition r."""

    item: DatasetItem
    role: str
    repeat: int


ScorersFor = Callable[[DatasetItem], list[Scorer]]
RecordSink = Callable[[dict[str, Any]], None]


async def score_answer(
    item: DatasetItem, answer: Answer, accuracy: list[Scorer], safety: list[Scorer]
) -> tuple[bool, float, list[ScoreResult], dict[str, bool]]:
    """(passed, score, results, safety flags) for one answer. A failed call fails the item."""
    if answer.failed:
        return False, 0.0, [], {}
    results = [await s.score(item, answer) for s in accuracy]
    flags = {}
    for scorer in safety:
        result = await scorer.score(item, answer)
        flags[result.scorer] = not result.passed
        results.append(result)
    graded = [r for s, r in zip(accuracy, results, strict=False) if s.role == "accuracy"]
    passed = all(r.passed for r in results[: len(accuracy)])
    score = sum(r.score for r in graded) / len(graded) if graded else float(passed)
    return passed, score, results, flags


async def run_units(
    units: Iterable[Unit],
    *,
    caller: Caller,
    targets: dict[str, ModelTarget],
    scorers_for: ScorersFor,
    safety: list[Scorer],
    on_record: RecordSink,
    concurrency: int,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> None:
    """Answer and score every unit with `concurrency` workers; records go to `on_record`
    in completion order. The unit iterator is consumed lazily (bounded queue)."""
    queue: asyncio.Queue[Unit | None] = asyncio.Queue(maxsize=concurrency * 2)
    workers = max(1, concurrency)

    async def produce() -> None:
        for unit in units:
            await queue.put(unit)
        for _ in range(workers):
            await queue.put(None)

    async def work() -> None:
        while True:
            unit = await queue.get()
            if unit is None:
                return
            target = targets[unit.role]
            answer = await caller.answer(
                target,
                unit.item,
                temperature=temperature,
                max_tokens=max_tokens,
                salt=f"r{unit.repeat}" if unit.repeat else "",
            )
            passed, score, results, flags = await score_answer(
                unit.item, answer, scorers_for(unit.item), safety
            )
            on_record(_record(unit, target, answer, passed, score, results, flags))

    producer = asyncio.create_task(produce())
    try:
        await asyncio.gather(*(work() for _ in range(workers)))
    finally:
        producer.cancel()
    await asyncio.gather(producer, return_exceptions=True)


def _record(
    unit: Unit,
    target: ModelTarget,
    answer: Answer,
    passed: bool,
    score: float,
    results: list[ScoreResult],
    flags: dict[str, bool],
) -> dict[str, Any]:
    item = unit.item
    return {
        "id": item.id,
        "role": unit.role,
        "model": target.model_id,
        "repeat": unit.repeat,
        "passed": passed,
        "score": round(score, 6),
        "latency_ms": round(answer.latency_ms, 3),
        "ttft_ms": round(answer.ttft_ms, 3),
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
        "cost": answer.cost,
        "cached": answer.cached,
        "stored_at": answer.stored_at,
        "attempts": answer.attempts,
        "error_class": answer.error_class,
        "error": answer.error,
        "flags": flags,
        "scores": [r.to_json() for r in results],
        "input": item.prompt[:2000],
        "expected": item.expected,
        "answer": answer.text[:MAX_ANSWER_CHARS],
    }
