"""Over 10,000 requests the simulator delivers what it was told: error rates and accuracy
within 1 percentage point, latency P50 and P95 within 10%, measured by a client over HTTP."""

from __future__ import annotations

import asyncio
import statistics

import pytest
from tests.simulators import adapter, instant, spec

from quality_gates.errors import Overloaded, ProviderError, RateLimited, ServerError
from quality_gates.providers import ChatRequest, Message
from quality_gates.simulator import run_simulators
from quality_gates.simulator._answers import parse_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REQUESTS = 10_000
CONCURRENCY = 250
CONFIGURED = {
    "latency_p50_ms": 100,
    "latency_p95_ms": 300,
    "server_error_rate": 0.03,
    "overloaded_rate": 0.01,
    "rate_limit_rate": 0.02,
    "accuracy": 0.9,
}


async def test_ten_thousand_requests_match_the_configured_behaviour() -> None:
    items = [
        {"input": f"What is item {i} called?", "expected": f"item-{i}"} for i in range(REQUESTS)
    ]
    faults = instant(**CONFIGURED)
    async with run_simulators([spec("openai", faults=faults, seed=2024)]) as sims:
        sims["openai"].app.behaviour.key.add(parse_items(items))
        provider = adapter("openai", sims["openai"].base_url, max_connections=CONCURRENCY)
        latencies: list[float] = []
        errors: dict[type, int] = {ServerError: 0, Overloaded: 0, RateLimited: 0}
        correct = answered = 0
        queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)

        async def worker() -> None:
            nonlocal correct, answered
            while not queue.empty():
                item = queue.get_nowait()
                request = ChatRequest("model-x", (Message("user", item["input"]),), timeout=30)
                try:
                    answer = await provider.complete(request)
                except ProviderError as exc:
                    errors[type(exc)] += 1
                    continue
                latencies.append(answer.latency_ms)
                answered += 1
                correct += answer.text == item["expected"]

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), 120)
        await provider.close()

    assert answered + sum(errors.values()) == REQUESTS
    assert abs(errors[ServerError] / REQUESTS - 0.03) < 0.01
    assert abs(errors[Overloaded] / REQUESTS - 0.01) < 0.01
    assert abs(errors[RateLimited] / REQUESTS - 0.02) < 0.01
    assert abs(sum(errors.values()) / REQUESTS - 0.06) < 0.01
    assert abs(correct / answered - 0.9) < 0.01
    quantiles = statistics.quantiles(latencies, n=100)
    p50, p95 = quantiles[49], quantiles[94]
    assert p50 == pytest.approx(100, rel=0.10), p50
    assert p95 == pytest.approx(300, rel=0.10), p95
