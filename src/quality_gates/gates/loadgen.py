"""Load generation for the performance gate: open loop (constant rate) or closed loop.

Open loop schedules request i at t0 + i / rps whatever happened before, and measures its
latency from that scheduled time, so a slow server cannot slow the generator down and hide
its own queueing (no coordinated omission). Closed loop runs C workers back to back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from quality_gates.telemetry import LatencyHistogram

# In-flight cap for the open loop: past it, requests are counted as not sent (the client,
# not the server, is saturated) instead of piling up without bound.
MAX_IN_FLIGHT = 20_000
TICK_S = 0.001


@dataclass
class Sample:
    """One request's outcome: error class None when it succeeded."""

    error_class: str | None
    ttft_ms: float | None = None


Send = Callable[[], Awaitable[Sample]]


@dataclass
class LoadResult:
    """What the load produced."""

    mode: str
    offered_rps: float | None
    concurrency: int | None
    duration_s: float
    sent: int = 0
    ok: int = 0
    not_sent: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    ttft: LatencyHistogram = field(default_factory=LatencyHistogram)
    elapsed_s: float = 0.0
    # (finished, failed) after each request: the command line's progress.
    listener: Callable[[int, int], None] | None = None

    def record(self, latency_ms: float, sample: Sample) -> None:
        """Count one finished request."""
        if sample.error_class is None:
            self.ok += 1
            self.latency.add(latency_ms)
            if sample.ttft_ms is not None:
                self.ttft.add(sample.ttft_ms)
        else:
            self.errors[sample.error_class] = self.errors.get(sample.error_class, 0) + 1
        if self.listener is not None:
            failed = sum(self.errors.values())
            self.listener(self.ok + failed, failed)

    @property
    def completed(self) -> int:
        """Requests that finished, well or not."""
        return self.ok + sum(self.errors.values())

    @property
    def throughput(self) -> float:
        """Successful requests per second of the run."""
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0


async def _timed(send: Send, scheduled: float, result: LoadResult) -> None:
    try:
        sample = await send()
    except Exception as exc:  # a generator must count failures, whatever raised them
        sample = Sample(getattr(exc, "error_class", type(exc).__name__))
    result.record((time.perf_counter() - scheduled) * 1000.0, sample)


async def open_loop(
    send: Send,
    rps: float,
    duration_s: float,
    listener: Callable[[int, int], None] | None = None,
) -> LoadResult:
    """`rps` requests per second for `duration_s`, latency from each scheduled start."""
    result = LoadResult("open", rps, None, duration_s, listener=listener)
    pending: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    total = int(rps * duration_s)
    index = 0
    while index < total:
        now = time.perf_counter()
        due = min(total, int((now - start) * rps) + 1)
        while index < due:
            scheduled = start + index / rps
            index += 1
            if len(pending) >= MAX_IN_FLIGHT:
                result.not_sent += 1
                continue
            task = asyncio.create_task(_timed(send, scheduled, result))
            pending.add(task)
            task.add_done_callback(pending.discard)
            result.sent += 1
        next_at = start + index / rps
        await asyncio.sleep(max(0.0, min(TICK_S, next_at - time.perf_counter())))
    if pending:
        await asyncio.gather(*pending)
    result.elapsed_s = max(duration_s, time.perf_counter() - start)
    return result


async def closed_loop(
    send: Send,
    concurrency: int,
    duration_s: float,
    listener: Callable[[int, int], None] | None = None,
) -> LoadResult:
    """`concurrency` workers sending back to back for `duration_s`."""
    result = LoadResult("closed", None, concurrency, duration_s, listener=listener)
    start = time.perf_counter()
    stop = start + duration_s

    async def worker() -> None:
        while time.perf_counter() < stop:
            result.sent += 1
            await _timed(send, time.perf_counter(), result)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - start
    return result
