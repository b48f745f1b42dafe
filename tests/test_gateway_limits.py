"""Rate limits, the retry budget and the admission queue."""

from __future__ import annotations

import asyncio

import pytest

from quality_gates.gateway._limits import (
    Admission,
    Limit,
    MemoryRateLimiter,
    QueueFull,
    QueueTimeout,
    RetryBudget,
)


async def test_rpm_limit_refuses_with_a_retry_after() -> None:
    limiter = MemoryRateLimiter()
    limit = Limit(rpm=3)
    now = 600.0  # the start of a minute
    for _ in range(3):
        assert (await limiter.check("key:a", limit, 1, now)).allowed
    verdict = await limiter.check("key:a", limit, 1, now + 1)
    assert not verdict.allowed
    assert verdict.which == "rpm"
    assert 1.0 <= verdict.retry_after <= 61.0
    assert (await limiter.check("key:b", limit, 1, now + 1)).allowed  # other scopes unaffected


async def test_the_previous_minute_still_counts_in_the_sliding_window() -> None:
    limiter = MemoryRateLimiter()
    limit = Limit(rpm=10)
    for _ in range(10):
        assert (await limiter.check("s", limit, 1, 600.0)).allowed
    assert not (await limiter.check("s", limit, 1, 661.0)).allowed  # 9.8 of 10 still in window
    assert (await limiter.check("s", limit, 1, 690.0)).allowed  # half of it has slid away


async def test_tpm_counts_estimates_and_corrections() -> None:
    limiter = MemoryRateLimiter()
    limit = Limit(tpm=1000)
    assert (await limiter.check("p", limit, 600, 0.0)).allowed
    await limiter.add_tokens("p", 300, 1.0)
    verdict = await limiter.check("p", limit, 200, 2.0)
    assert not verdict.allowed
    assert verdict.which == "tpm"


def test_retry_budget_allows_a_share_of_requests() -> None:
    budget = RetryBudget(ratio=0.25, min_per_second=0)
    budget.balance = 0.0
    for _ in range(20):
        budget.deposit()
    granted = sum(budget.withdraw() for _ in range(10))
    assert granted == 5


async def test_admission_queue_waits_then_times_out_and_refuses_when_full() -> None:
    admission = Admission(limit=1)
    await admission.acquire()
    with pytest.raises(QueueFull):
        await admission.acquire()  # no queue configured
    admission.configure(True, 1, 0.2)
    waiter = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0.01)
    assert admission.queue_depth == 1
    with pytest.raises(QueueFull):
        await admission.acquire()  # queue of one is full
    admission.release()
    await waiter  # got the slot handed over
    assert admission.inflight == 1
    with pytest.raises(QueueTimeout):
        await admission.acquire()
    admission.release()
    assert admission.inflight == 0
