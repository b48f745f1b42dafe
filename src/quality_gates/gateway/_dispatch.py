"""One request's trip upstream: deployments in plan order under one deadline, retries of
retryable errors within the budget, failover before the first byte, breakers fed by every
outcome.

Panic routing (Envoy's panic threshold, at its extreme): when no deployment of the route
could serve (each refused by a breaker that opened on its own, or tried and failed), the
deployments behind automatically opened breakers are tried anyway, within the deadline and
the retry budget. Breakers protect a healthy route from a bad deployment; when every
deployment is degraded (30% errors everywhere, say) refusing them all would turn a 30% error
rate into 100%. A breaker forced open by a person or the watch is never tried.

The dispatcher returns what happened (an answer or an open stream, plus every attempt) and
leaves HTTP to the caller. Errors a client caused (bad request, content filtered) end the
trip at once: another provider would refuse them too, or should not be asked to.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from quality_gates.config import GatewaySettings
from quality_gates.errors import (
    ConnectionFailed,
    ProviderError,
    ProviderTimeout,
    ServerError,
)
from quality_gates.gateway._breaker import BreakerBoard
from quality_gates.gateway._health import LatencyBoard
from quality_gates.gateway._limits import Limit, RateLimiter, RetryBudget
from quality_gates.gateway._metrics import GatewayMetrics
from quality_gates.gateway._routing import Deployment, RoutePlan
from quality_gates.gateway._telemetry import AttemptRecord
from quality_gates.providers import ChatProvider, ChatRequest, ChatResponse, StreamChunk

# A call other than a chat completion (embeddings), made with the deployment's model and
# the attempt's timeout in the ChatRequest and answering what to record.
Invoke = Callable[[ChatProvider, ChatRequest], Awaitable[ChatResponse]]
# Outcomes that say nothing about a deployment's health: the request itself was refused.
CLIENT_FAULTS = ("bad_request", "content_filtered")


# A route tried again after every deployment failed needs this much of its deadline left.
ROUTE_RETRY_ROOM = 1.0
ROUTE_RETRY_LABEL = "(route)"  # qg_gateway_retries_total's provider label for a route retry


class NoDeployment(Exception):
    """Nothing could be tried: every breaker open or every provider over its quota."""

    def __init__(self, message: str, retry_after: float | None, error_class: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.error_class = error_class
        # what an earlier pass of the same route tried (see Dispatcher.run's route retry)
        self.attempts: list[AttemptRecord] = []


@dataclass
class Trip:
    """What the dispatcher did for one request."""

    attempts: list[AttemptRecord] = field(default_factory=list)
    deployment: Deployment | None = None
    response: ChatResponse | None = None
    first: StreamChunk | None = None
    stream: AsyncIterator[StreamChunk] | None = None
    first_chunk_at: float | None = None
    hops: int = 0
    error: ProviderError | None = None


def _translate(exc: BaseException, provider: str) -> ProviderError:
    """Anything an adapter let escape becomes a classified provider error."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, TimeoutError):
        return ProviderTimeout(
            f"{provider}: no answer within the attempt timeout", provider=provider
        )
    if isinstance(exc, ConnectionError | OSError):
        return ConnectionFailed(f"{provider}: {exc}", provider=provider)
    return ServerError(f"{provider}: unexpected {type(exc).__name__}: {exc}", provider=provider)


class Dispatcher:
    """Calls providers for a plan, as the gateway's settings say."""

    def __init__(
        self,
        settings: GatewaySettings,
        environment: str,
        providers: Callable[[], Mapping[str, ChatProvider]],
        breakers: BreakerBoard,
        latency: LatencyBoard,
        limiter: RateLimiter,
        provider_limits: Callable[[], Mapping[str, Limit]],
        budget: RetryBudget,
        metrics: GatewayMetrics,
    ) -> None:
        self.settings = settings
        self.environment = environment
        self.providers = providers
        self.breakers = breakers
        self.latency = latency
        self.limiter = limiter
        self.provider_limits = provider_limits
        self.budget = budget
        self.metrics = metrics
        self.rng = random.Random()

    async def run(
        self,
        plan: RoutePlan,
        request: ChatRequest,
        *,
        stream: bool,
        deadline: float,
        tokens_estimate: int,
        invoke: Invoke | None = None,
    ) -> Trip:
        """Try the plan's deployments in order until one answers (or starts streaming).
        `invoke` calls something other than a chat completion (embeddings) the same way.
        When every deployment failed with a retryable error, the route is tried once more
        after `retry.route_retry_after`, within the deadline and the retry budget; the trip
        then holds both passes' attempts."""
        first = await self._pass(plan, request, stream, deadline, tokens_estimate, invoke)
        if first.deployment is not None or not await self._route_retry(first.error, deadline):
            return first
        try:
            again = await self._pass(plan, request, stream, deadline, tokens_estimate, invoke)
        except NoDeployment as exc:
            exc.attempts = first.attempts  # the first pass says what failed
            raise
        again.attempts[:0] = first.attempts
        return again

    async def _route_retry(self, error: ProviderError | None, deadline: float) -> bool:
        """Every deployment failed: wait, and say to try the route once more, when the error
        may pass (retryable), the deadline leaves room for it and the retry budget allows."""
        after = self.settings.retry.route_retry_after
        if after <= 0 or error is None or not error.retryable:
            return False
        wait = self.rng.uniform(after / 2.0, after)
        if deadline - asyncio.get_running_loop().time() < wait + ROUTE_RETRY_ROOM:
            return False
        if not self.budget.withdraw():
            self.metrics.retry_budget_exhausted.labels(self.environment).inc()
            return False
        self.metrics.retries.labels(self.environment, ROUTE_RETRY_LABEL).inc()
        await asyncio.sleep(wait)
        return True

    async def _pass(
        self,
        plan: RoutePlan,
        request: ChatRequest,
        stream: bool,
        deadline: float,
        tokens_estimate: int,
        invoke: Invoke | None,
    ) -> Trip:
        """One pass over the plan's deployments."""
        loop = asyncio.get_running_loop()
        trip = Trip()
        providers = self.providers()
        limits = self.provider_limits()
        refused: list[NoDeployment] = []
        panic: list[Deployment] = []  # refused by a breaker that opened on its own
        tried = 0
        for deployment in plan.deployments:
            provider = providers.get(deployment.provider)
            if provider is None:
                continue
            now = time.time()
            if not self.breakers.allow(deployment.id, now):
                breaker = self.breakers.get(deployment.id)
                wait = breaker.settings.open_for - (now - breaker.opened_at)
                refused.append(
                    NoDeployment(f"{deployment.id}: circuit open", max(wait, 1.0), "circuit_open")
                )
                if breaker.forced is None:
                    panic.append(deployment)
                continue
            limit = limits.get(deployment.provider)
            if limit is not None and not limit.unlimited:
                verdict = await self.limiter.check(
                    f"provider:{deployment.provider}", limit, tokens_estimate, now
                )
                if not verdict.allowed:
                    self.metrics.rate_limited.labels(self.environment, "provider").inc()
                    refused.append(
                        NoDeployment(
                            f"{deployment.provider} is over its {verdict.which} quota",
                            verdict.retry_after,
                            "rate_limited",
                        )
                    )
                    continue
            if tried:
                trip.hops += 1
            tried += 1
            done = await self._try_deployment(
                trip,
                deployment,
                provider,
                request,
                stream=stream,
                deadline=deadline,
                loop=loop,
                invoke=invoke,
            )
            if done:
                trip.deployment = deployment
                return trip
            if trip.error is not None and (
                trip.error.error_class in CLIENT_FAULTS or loop.time() >= deadline
            ):
                return trip
            if trip.error is not None:
                self.metrics.failovers.labels(
                    self.environment, deployment.provider, trip.error.error_class
                ).inc()
        for deployment in panic:
            if loop.time() >= deadline:
                break
            provider = providers[deployment.provider]
            limit = limits.get(deployment.provider)
            if limit is not None and not limit.unlimited:
                verdict = await self.limiter.check(
                    f"provider:{deployment.provider}", limit, tokens_estimate, time.time()
                )
                if not verdict.allowed:
                    continue
            if tried:
                trip.hops += 1
            tried += 1
            self.metrics.panic.labels(self.environment, deployment.provider).inc()
            done = await self._try_deployment(
                trip, deployment, provider, request, stream=stream, deadline=deadline, loop=loop
            )
            if done:
                trip.deployment = deployment
                return trip
            if trip.error is not None and trip.error.error_class in CLIENT_FAULTS:
                return trip
        if trip.error is None and refused:
            first = min(refused, key=lambda r: r.retry_after or 0.0)
            raise NoDeployment(
                "; ".join(str(r) for r in refused), first.retry_after, first.error_class
            )
        if trip.error is None:
            raise NoDeployment(f"no deployment serves {plan.model_id}", None, "no_route")
        return trip

    async def _try_deployment(
        self,
        trip: Trip,
        deployment: Deployment,
        provider: ChatProvider,
        request: ChatRequest,
        *,
        stream: bool,
        deadline: float,
        loop: asyncio.AbstractEventLoop,
        invoke: Invoke | None = None,
    ) -> bool:
        retries = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                trip.error = ProviderTimeout(
                    f"the request deadline ({self.settings.deadline:g} s) ran out",
                    provider=deployment.provider,
                )
                return False
            timeout = min(self.settings.attempt_timeout, remaining)
            call = ChatRequest(
                model=deployment.provider_model,
                messages=request.messages,
                temperature=request.temperature,
                max_tokens=request.max_tokens,
                stop=request.stop,
                timeout=timeout,
                request_id=request.request_id,
                extras=request.extras,
            )
            started = time.perf_counter()
            ts = time.time()
            try:
                if stream:
                    async with asyncio.timeout(timeout):
                        iterator = provider.stream(call).__aiter__()
                        try:
                            first = await iterator.__anext__()
                        except StopAsyncIteration:
                            raise ServerError(
                                f"{deployment.provider}: the stream ended before any data",
                                provider=deployment.provider,
                            ) from None
                    trip.first, trip.stream = first, iterator
                    trip.first_chunk_at = time.perf_counter()
                elif invoke is not None:
                    async with asyncio.timeout(timeout):
                        trip.response = await invoke(provider, call)
                elif provider.keeps_deadline:  # it gives up by call.timeout itself
                    trip.response = await provider.complete(call)
                else:
                    async with asyncio.timeout(timeout):
                        trip.response = await provider.complete(call)
            except Exception as exc:
                error = _translate(exc, deployment.provider)
                elapsed = (time.perf_counter() - started) * 1000.0
                self._attempt(trip, deployment, ts, elapsed, None, error)
                trip.error = error
                if not self._should_retry(error, retries, deadline - loop.time()):
                    return False
                retries += 1
                self.metrics.retries.labels(self.environment, deployment.provider).inc()
                await asyncio.sleep(self._backoff(error, retries))
                continue
            elapsed = (time.perf_counter() - started) * 1000.0
            trip.error = None
            if stream:
                # The stream's health is recorded when it ends (see record_stream_end).
                trip.attempts.append(
                    AttemptRecord(
                        len(trip.attempts) + 1,
                        ts,
                        deployment.provider,
                        deployment.model_id,
                        deployment.id,
                        "ok",
                        None,
                        200,
                        elapsed,
                        elapsed,
                    )
                )
            else:
                self._attempt(
                    trip,
                    deployment,
                    ts,
                    elapsed,
                    trip.response.ttft_ms if trip.response else None,
                    None,
                )
            return True

    def _should_retry(self, error: ProviderError, retries: int, remaining: float) -> bool:
        retry = self.settings.retry
        if not error.retryable or retries >= retry.max_retries:
            return False
        wait = error.retry_after or 0.0
        if wait > retry.max_retry_after or wait >= remaining:
            return False  # the next deployment will answer sooner than this one

        if not self.budget.withdraw():
            self.metrics.retry_budget_exhausted.labels(self.environment).inc()
            return False
        return True

    def _backoff(self, error: ProviderError, retries: int) -> float:
        retry = self.settings.retry
        ceiling = min(retry.max_backoff, retry.backoff * (2 ** (retries - 1)))
        jittered = self.rng.uniform(0.0, ceiling)  # full jitter
        return max(jittered, error.retry_after or 0.0)

    def _attempt(
        self,
        trip: Trip,
        deployment: Deployment,
        ts: float,
        elapsed_ms: float,
        ttft_ms: float | None,
        error: ProviderError | None,
    ) -> None:
        """Record one finished attempt: telemetry row, breaker, latency, metrics."""
        now = time.time()
        if error is None:
            trip.attempts.append(
                AttemptRecord(
                    len(trip.attempts) + 1,
                    ts,
                    deployment.provider,
                    deployment.model_id,
                    deployment.id,
                    "ok",
                    None,
                    200,
                    elapsed_ms,
                    ttft_ms,
                )
            )
            self.breakers.record(deployment.id, True, now)
            self.latency.add(deployment.id, now, elapsed_ms)
            outcome = "ok"
        else:
            trip.attempts.append(
                AttemptRecord(
                    len(trip.attempts) + 1,
                    ts,
                    deployment.provider,
                    deployment.model_id,
                    deployment.id,
                    "error",
                    error.error_class,
                    error.status or error.http_status,
                    elapsed_ms,
                    None,
                )
            )
            # A refused request says nothing about the deployment's health.
            self.breakers.record(deployment.id, error.error_class in CLIENT_FAULTS, now)
            outcome = error.error_class
        self.metrics.series(deployment.model_id, deployment.provider).attempt(
            outcome, elapsed_ms / 1000.0
        )

    def record_stream_end(
        self,
        trip: Trip,
        elapsed_ms: float,
        error: ProviderError | None,
        *,
        client_left: bool = False,
    ) -> None:
        """A stream finished (cleanly, broken, or left by its client): update its attempt,
        breaker and latency. A client that left says nothing of the provider: neither a
        breaker success nor a failure, and no latency sample (its pauses would be in it)."""
        deployment = trip.deployment
        if deployment is None or not trip.attempts:
            return
        attempt = trip.attempts[-1]
        attempt.latency_ms = elapsed_ms
        now = time.time()
        if client_left:
            attempt.status, attempt.error_class, attempt.http_status = (
                "cancelled",
                "client_disconnected",
                499,
            )
            outcome = "client_disconnected"
        elif error is None:
            self.breakers.record(deployment.id, True, now)
            self.latency.add(deployment.id, now, elapsed_ms)
            outcome = "ok"
        else:
            attempt.status, attempt.error_class = "error", error.error_class
            attempt.http_status = error.http_status
            self.breakers.record(deployment.id, False, now)
            outcome = error.error_class
        self.metrics.series(deployment.model_id, deployment.provider).attempt(
            outcome, elapsed_ms / 1000.0
        )
