"""Recent latency per deployment (for latency-aware routing) and active probes of providers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping

from quality_gates.gateway._breaker import BreakerBoard
from quality_gates.gateway._routing import Deployment
from quality_gates.providers import ChatProvider, ProbeResult

log = logging.getLogger("quality_gates.gateway")
LATENCY_SAMPLES = 200
LATENCY_HORIZON_S = 300.0
P95_REFRESH_S = 1.0


class LatencyWindow:
    """The last few hundred latencies of one deployment and their P95 (refreshed each second)."""

    __slots__ = ("_computed_at", "_p95", "samples")

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=LATENCY_SAMPLES)
        self._p95: float | None = None
        self._computed_at = 0.0

    def add(self, now: float, latency_ms: float) -> None:
        """Record one successful call."""
        self.samples.append((now, latency_ms))

    def p95(self, now: float) -> float | None:
        """P95 over samples younger than the horizon, or None."""
        if now - self._computed_at >= P95_REFRESH_S:
            values = sorted(v for t, v in self.samples if now - t <= LATENCY_HORIZON_S)
            self._p95 = values[min(len(values) - 1, int(0.95 * len(values)))] if values else None
            self._computed_at = now
        return self._p95


class LatencyBoard:
    """Latency windows by deployment id."""

    def __init__(self) -> None:
        self.windows: dict[str, LatencyWindow] = {}

    def add(self, deployment: str, now: float, latency_ms: float) -> None:
        """Record one successful call."""
        window = self.windows.get(deployment)
        if window is None:
            window = self.windows[deployment] = LatencyWindow()
        window.add(now, latency_ms)

    def p95(self, deployment: str) -> float | None:
        """Recent P95 (ms) of the deployment, if it has answered lately."""
        window = self.windows.get(deployment)
        return window.p95(time.time()) if window is not None else None


class Prober:
    """Probes every provider the routes use, every `interval`, and feeds their breakers."""

    def __init__(
        self,
        interval: float,
        breakers: BreakerBoard,
        providers: Callable[[], Mapping[str, ChatProvider]],
        deployments: Callable[[], list[Deployment]],
        on_result: Callable[[Deployment, ProbeResult], None] | None = None,
        on_provider: Callable[[str, ProbeResult, float], None] | None = None,
    ) -> None:
        self.interval = interval
        self.breakers = breakers
        self.providers = providers
        self.deployments = deployments
        self.on_result = on_result
        self.on_provider = on_provider  # once per provider and round (telemetry's sample)
        self.last: dict[str, ProbeResult] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Probe in the background until closed."""
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="qg-probes")

    async def _run(self) -> None:
        while True:
            try:
                await self.probe_all()
            except Exception:
                log.exception("probe round failed")
            await asyncio.sleep(self.interval)

    async def probe_all(self) -> dict[str, ProbeResult]:
        """One round: each provider once, its result fed to each of its deployments."""
        providers = self.providers()
        by_provider: dict[str, list[Deployment]] = {}
        for deployment in self.deployments():
            by_provider.setdefault(deployment.provider, []).append(deployment)
        names = [n for n in by_provider if n in providers]
        results = await asyncio.gather(
            *(self._probe(providers[n]) for n in names), return_exceptions=False
        )
        now = time.time()
        for name, result in zip(names, results, strict=True):
            self.last[name] = result
            if self.on_provider is not None:
                self.on_provider(name, result, now)
            for deployment in by_provider[name]:
                self.breakers.record(deployment.id, result.healthy, now, probe=True)
                if self.on_result is not None:
                    self.on_result(deployment, result)
        return dict(self.last)

    async def _probe(self, provider: ChatProvider) -> ProbeResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(max(self.interval, 1.0)):
                return await provider.probe()
        except Exception as exc:  # a probe must never take the loop down
            return ProbeResult(
                provider.name,
                False,
                (time.perf_counter() - started) * 1000.0,
                getattr(
                    exc, "error_class", "timeout" if isinstance(exc, TimeoutError) else "connection"
                ),
                str(exc) or type(exc).__name__,
            )

    async def close(self) -> None:
        """Stop probing."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
