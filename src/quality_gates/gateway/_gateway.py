"""The gateway's request path for `POST /v1/chat/completions`.

admission (concurrency, queue) -> key limits -> route plan (alias, canary, weights, strategy)
-> cache -> dispatcher (deadline, retries, failover, breakers) -> answer or SSE stream ->
telemetry record. Everything slow or fallible off this path (store, probes, Redis sync)
lives in background services; this module only reads their latest state.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from quality_gates.config import GatewaySettings
from quality_gates.errors import (
    NotFound,
    ProviderError,
    ProviderTimeout,
    ServerError,
)
from quality_gates.gateway._breaker import BreakerBoard
from quality_gates.gateway._cache import CachedAnswer, ResponseCache, cache_key
from quality_gates.gateway._chat_answers import completion_json, is_plain
from quality_gates.gateway._dispatch import Dispatcher, NoDeployment, Trip
from quality_gates.gateway._health import LatencyBoard
from quality_gates.gateway._limits import (
    Admission,
    Limit,
    QueueFull,
    QueueTimeout,
    RateLimiter,
    RetryBudget,
)
from quality_gates.gateway._metrics import GatewayMetrics
from quality_gates.gateway._output_check import answer_with_calls, check_answer
from quality_gates.gateway._redact import redact
from quality_gates.gateway._routing import Deployment, RoutePlan, RouteTable
from quality_gates.gateway._streaming import CLIENT_DISCONNECTED, SSE_HEADERS, LiveStream
from quality_gates.gateway._telemetry import RequestRecord, TelemetryWriter
from quality_gates.gateway._wire import (
    DONE_EVENT,
    Answer,
    ApiError,
    CompletionRequest,
    chunk_event,
    completion_body,
    parse_request,
)
from quality_gates.gateway.keys import ApiKey
from quality_gates.gateway.runtime import CacheMode
from quality_gates.providers import ChatRequest, ChatResponse, StreamChunk

CHARS_PER_TOKEN = 4
UNKNOWN_ALIAS = "(unknown)"
AUTH_FAILED = "auth_failed"  # error class of a refused key: counted, never in the roll-ups
NO_ROUTE = "none"  # the model, provider and cache labels of a request refused before routing
# A tap sees each answered request (record, prompt text, answer text) after it is answered;
# it must return at once (the watch plane's sampler only queues a share of them).
AnswerTap = Callable[[RequestRecord, str, str], None]
# A record tap sees every finished request record (the OpenTelemetry export); it must return
# at once and never keep the request waiting.
RecordTap = Callable[[RequestRecord], None]


@dataclass(frozen=True)
class EmergencyMode:
    """The `emergency` runtime setting as the request path needs it."""

    mode: str
    reason: str
    retry_after: float


def parse_emergency(value: object) -> EmergencyMode | None:
    """The stored `emergency` value, or None when there is no emergency."""
    if not isinstance(value, dict) or value.get("mode") not in ("degraded", "shutdown"):
        return None
    return EmergencyMode(
        str(value["mode"]), str(value.get("reason") or ""), float(value.get("retry_after") or 60)
    )


def error_class_of(exc: ApiError) -> str:
    """The error class an answer is counted under: the error's own, `bad_request` for a
    400, else its code (`body_too_large`, `method_not_allowed`, ...) or `http_<status>`."""
    if exc.error_class:
        return exc.error_class
    if exc.status == 400:
        return "bad_request"
    return exc.code or f"http_{exc.status}"


def estimate_tokens(request: CompletionRequest) -> int:
    """Tokens a request will use, before the provider says (for tpm admission)."""
    return request.prompt_chars() // CHARS_PER_TOKEN + 1 + (request.max_tokens or 0) // 4


@dataclass
class Services:
    """The gateway's parts, assembled by create_app (tests may assemble their own)."""

    settings: GatewaySettings
    environment: str
    table: RouteTable
    breakers: BreakerBoard
    latency: LatencyBoard
    dispatcher: Dispatcher
    limiter: RateLimiter
    budget: RetryBudget
    admission: Admission
    cache: ResponseCache | None
    telemetry: TelemetryWriter | None
    metrics: GatewayMetrics
    key_limits: Mapping[str, Limit]
    default_key_limit: Limit
    cache_mode: CacheMode = field(default_factory=CacheMode)
    emergency: EmergencyMode | None = None
    answer_tap: AnswerTap | None = None
    record_tap: RecordTap | None = None


class Gateway:
    """Answers chat completion requests."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.rng = random.Random()
        # Request ids: a random per-process prefix and a counter (uuid4 costs more per call).
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count(1)
        self._env = services.environment
        self._lenient = frozenset(services.settings.lenient_fields)

    async def chat(
        self, raw: bytes, key: ApiKey | None, *, use_cache: bool = True, ask_cache: bool = False
    ) -> Answer | LiveStream:
        """Answer one request body (already authenticated). `use_cache` False (cache-control
        no-cache/no-store) neither reads nor records; `ask_cache` (x-qg-cache: allow) asks
        for a fresh cached answer where the config would not serve one."""
        s = self.s
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.settings.deadline
        try:
            request = parse_request(raw, self._lenient)
        except ApiError as invalid:
            self.refused(invalid)
            raise
        rec = RequestRecord(
            id=f"chatcmpl-{self._id_prefix}{next(self._ids):012x}",
            ts=time.time(),
            environment=self._env,
            alias=UNKNOWN_ALIAS,  # until the name resolves: no client string in telemetry
            key_name=key.name if key else None,
            stream=request.stream,
        )
        if s.settings.telemetry.store_text:
            rec.prompt = redact(
                "\n".join(f"{m.role}: {m.content}" for m in request.messages),
                s.settings.telemetry.max_text_chars,
            )
        emergency = s.emergency
        if emergency is not None and emergency.mode == "shutdown":
            # A controlled stop: refused before anything starts, so nothing is half-done.
            exc = ApiError(
                503,
                f"the service is stopped for an emergency ({emergency.reason}); "
                f"retry after {emergency.retry_after:g} s",
                code="service_shutdown",
                retry_after=emergency.retry_after,
                error_class="shutdown",
            )
            self._finish_error(rec, exc, started)
            raise exc
        try:
            plan = self._plan(request, rec)
            await self._admit(s.admission)
        except ApiError as exc:
            self._finish_error(rec, exc, started)
            raise
        try:
            response = await self._serve(
                request, rec, plan, key, started, deadline, use_cache, ask_cache
            )
        except ApiError as exc:
            s.admission.release()
            self._finish_error(rec, exc, started)
            raise
        except asyncio.CancelledError:
            # The client left before the answer (see _http.chat_completions): its upstream
            # call is cancelled with it, and no attempt says anything about the provider.
            s.admission.release()
            rec.status, rec.http_status, rec.error_class = CLIENT_DISCONNECTED
            self.finish(rec, started)
            raise
        except BaseException:
            s.admission.release()
            raise
        if not isinstance(response, LiveStream):
            s.admission.release()  # a live stream releases its slot when it ends
        return response

    async def _admit(self, admission: Admission) -> None:
        try:
            await admission.acquire()
        except QueueFull:
            self.s.metrics.queue_rejected.labels(self._env, "full").inc()
            raise ApiError(
                503,
                f"the gateway is at its concurrency limit ({admission.limit} requests)"
                + (" and the queue is full" if admission.queue_enabled else ""),
                code="overloaded",
                retry_after=1.0,
                error_class="overloaded",
            ) from None
        except QueueTimeout:
            self.s.metrics.queue_rejected.labels(self._env, "timeout").inc()
            raise ApiError(
                503,
                f"waited {admission.queue_timeout:g} s in the queue without a free slot",
                code="queue_timeout",
                retry_after=1.0,
                error_class="overloaded",
            ) from None

    async def _check_key(self, key: ApiKey, tokens: int) -> None:
        s = self.s
        limit = s.key_limits.get(key.name, s.default_key_limit)
        if limit.unlimited:
            return
        admission = s.admission
        waited = 0.0
        while True:
            verdict = await s.limiter.check(f"key:{key.name}", limit, tokens, time.time())
            if verdict.allowed:
                return
            wait = verdict.retry_after
            if admission.has_room() and waited + wait <= admission.queue_timeout:
                admission.waiting_for_rate += 1
                try:
                    await asyncio.sleep(wait)
                finally:
                    admission.waiting_for_rate -= 1
                waited += wait
                continue
            s.metrics.rate_limited.labels(self._env, "key").inc()
            raise ApiError(
                429,
                f"key {key.name!r} is over its {verdict.which} limit "
                f"({limit.rpm if verdict.which == 'rpm' else limit.tpm} per minute)",
                code="rate_limit_exceeded",
                retry_after=wait,
                error_class="rate_limited",
            )

    def _plan(self, request: CompletionRequest, rec: RequestRecord) -> RoutePlan:
        """Resolve the request's model to its ordered deployments (404 if unknown)."""
        return self.plan_for(request.model, rec)

    def plan_for(self, model: str, rec: RequestRecord) -> RoutePlan:
        """Resolve `model` (an alias or model id) to its ordered deployments (404 if
        unknown); the record learns the alias and whether it is a canary request."""
        s = self.s
        now = time.time()
        try:
            plan = s.table.plan(
                model,
                now=now,
                draw=self.rng.random,
                is_open=lambda d: s.breakers.is_open(d, now),
                p95=s.latency.p95,
            )
        except NotFound as exc:
            raise ApiError(404, str(exc), param="model", code="model_not_found") from None
        rec.alias, rec.canary = plan.alias, plan.canary
        return plan

    def _may_serve_cached(self, request: CompletionRequest, plan: RoutePlan, asked: bool) -> bool:
        """Whether a fresh cache hit may answer: never for a canary request (it is there to
        measure the candidate), else when asked or where the config serves hits."""
        if plan.canary:
            return False
        if asked:
            return True
        mode = self.s.table.env.cache_serve or self.s.settings.cache.serve
        return mode == "always" or (mode == "deterministic" and request.temperature == 0)

    async def _serve(
        self,
        request: CompletionRequest,
        rec: RequestRecord,
        plan: RoutePlan,
        key: ApiKey | None,
        started: float,
        deadline: float,
        use_cache: bool,
        ask_cache: bool = False,
    ) -> Answer | LiveStream:
        s = self.s
        tokens = estimate_tokens(request)
        if key is not None:
            await self._check_key(key, tokens)
        s.budget.deposit()
        now = time.time()
        key_hash = None
        # Tools, structured outputs, images and n change the answer beyond what the cache
        # key holds: such requests go upstream every time.
        if s.cache is not None and use_cache and request.extras is None and not request.rich:
            key_hash = cache_key(
                self._env,
                plan.model_id,
                request.messages,
                request.temperature,
                request.max_tokens,
                request.stop,
            )
            if self._may_serve_cached(request, plan, ask_cache):
                found = await s.cache.get(key_hash, now)
                if found is not None and found[1]:
                    s.metrics.cache.labels(self._env, "hit").inc()
                    return self._from_cache(request, rec, found[0], "hit", started)
                s.metrics.cache.labels(self._env, "miss").inc()
            else:
                rec.cache = "record"  # answered fresh, recorded for emergency stale serving
        else:
            rec.cache = "bypass"
        chat = ChatRequest(
            model=plan.model_id,
            messages=request.messages,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            stop=request.stop,
            request_id=rec.id,
            extras=request.extras,
        )
        try:
            trip = await s.dispatcher.run(
                plan, chat, stream=request.stream, deadline=deadline, tokens_estimate=tokens
            )
        except NoDeployment as exc:
            stale = await self._stale(key_hash, request, rec, started)
            if stale is not None:
                return stale
            rec.attempts = exc.attempts  # a first pass's, when the route was tried again
            raise self.no_deployment_error(request.model, exc) from None
        rec.attempts, rec.hops = trip.attempts, trip.hops
        deployment = trip.deployment
        if deployment is None:
            error = trip.error or ProviderTimeout("no deployment answered")
            if error.error_class not in ("bad_request", "content_filtered"):
                stale = await self._stale(key_hash, request, rec, started)
                if stale is not None:
                    return stale
            raise self._upstream_error(plan, error, len(trip.attempts))
        if trip.stream is not None:
            return self._stream(
                request, rec, deployment, trip, trip.stream, started, deadline, key_hash
            )
        if trip.response is None:
            raise self._upstream_error(plan, ServerError("no answer"), len(trip.attempts))
        return await self._complete(request, rec, deployment, trip.response, started, key_hash)

    @staticmethod
    def no_deployment_error(requested: str, exc: NoDeployment) -> ApiError:
        """Nothing could be tried (every breaker open, every quota spent): 429 when quotas
        refused it (a client may retry after), else 503."""
        return ApiError(
            429 if exc.error_class == "rate_limited" else 503,
            f"no deployment can take {requested!r} now: {exc}",
            code=exc.error_class,
            retry_after=exc.retry_after,
            error_class=exc.error_class,
        )

    def _upstream_error(self, plan: RoutePlan, error: ProviderError, attempts: int) -> ApiError:
        client_fault = error.error_class in ("bad_request", "content_filtered")
        message = (
            str(error)
            if client_fault
            else f"{plan.model_id}: every deployment failed ({attempts} attempts); "
            f"last: {error.error_class} from {error.provider or '?'}: {error.message}"
        )
        return ApiError(
            error.http_status,
            message,
            code=error.error_class,
            retry_after=error.retry_after if error.error_class == "rate_limited" else None,
            error_class=error.error_class,
        )

    async def _complete(
        self,
        request: CompletionRequest,
        rec: RequestRecord,
        deployment: Deployment,
        response: ChatResponse,
        started: float,
        key_hash: str | None,
    ) -> Answer | LiveStream:
        s = self.s
        usage = response.usage
        rec.model_id, rec.provider, rec.deployment = (
            deployment.model_id,
            deployment.provider,
            deployment.id,
        )
        rec.input_tokens, rec.output_tokens = usage.input_tokens, usage.output_tokens
        rec.cost = deployment.cost(usage)
        rec.finish_reason = response.finish_reason
        rec.ttft_ms = response.ttft_ms or None
        if request.extras is not None:
            rec.output_check = check_answer(request.extras, response)
        if s.settings.telemetry.store_text:
            rec.answer = redact(response.text, s.settings.telemetry.max_text_chars)
        if key_hash is not None and s.cache is not None and response.finish_reason != "error":
            await s.cache.put(
                key_hash,
                CachedAnswer(
                    response.text,
                    response.finish_reason,
                    usage.input_tokens,
                    usage.output_tokens,
                    deployment.model_id,
                    deployment.provider,
                    deployment.id,
                    time.time(),
                ),
            )
        if is_plain(response):
            body = completion_body(
                rec.id,
                int(rec.ts),
                deployment.model_id,
                response.text,
                response.finish_reason,
                usage.input_tokens,
                usage.output_tokens,
            )
        else:
            body = completion_json(rec.id, int(rec.ts), deployment.model_id, response)
        self._finish_ok(rec, started)
        if s.answer_tap is not None:
            s.answer_tap(
                rec, request.prompt_text(), answer_with_calls(response.text, response.tool_calls)
            )
        return Answer(200, body, self.headers(rec))

    def _stream(
        self,
        request: CompletionRequest,
        rec: RequestRecord,
        deployment: Deployment,
        trip: Trip,
        iterator: AsyncIterator[StreamChunk],
        started: float,
        deadline: float,
        key_hash: str | None,
    ) -> Answer | LiveStream:
        rec.model_id, rec.provider, rec.deployment = (
            deployment.model_id,
            deployment.provider,
            deployment.id,
        )
        rec.ttft_ms = ((trip.first_chunk_at or time.perf_counter()) - started) * 1000.0
        return LiveStream(
            self, request, rec, deployment, trip, iterator, started, deadline, key_hash
        )

    async def _stale(
        self,
        key_hash: str | None,
        request: CompletionRequest,
        rec: RequestRecord,
        started: float,
    ) -> Answer | None:
        s = self.s
        if key_hash is None or s.cache is None or not s.cache_mode.stale_allowed:
            return None
        found = await s.cache.get(key_hash, time.time())
        if found is None:
            return None
        s.metrics.stale_served.labels(self._env).inc()
        s.metrics.cache.labels(self._env, "stale").inc()
        return self._from_cache(request, rec, found[0], "stale", started)

    def _from_cache(
        self,
        request: CompletionRequest,
        rec: RequestRecord,
        answer: CachedAnswer,
        kind: str,
        started: float,
    ) -> Answer:
        rec.cache = kind
        rec.model_id, rec.provider, rec.deployment = (
            answer.model_id,
            answer.provider,
            answer.deployment,
        )
        rec.input_tokens, rec.output_tokens = answer.input_tokens, answer.output_tokens
        rec.finish_reason = answer.finish_reason
        headers = self.headers(rec)
        if kind == "stale":
            headers["x-qg-cache-age"] = str(int(time.time() - answer.stored_at))
        if request.stream:
            created = int(rec.ts)
            events = [
                chunk_event(rec.id, created, answer.model_id, role=True, content=""),
                chunk_event(rec.id, created, answer.model_id, content=answer.text),
                chunk_event(rec.id, created, answer.model_id, finish=answer.finish_reason),
            ]
            if request.include_usage:
                events.append(
                    chunk_event(
                        rec.id,
                        created,
                        answer.model_id,
                        usage=(answer.input_tokens, answer.output_tokens),
                    )
                )
            events.append(DONE_EVENT)
            rec.ttft_ms = (time.perf_counter() - started) * 1000.0
            self._finish_ok(rec, started)
            return Answer(200, b"".join(events), {**SSE_HEADERS, **headers}, "text/event-stream")
        body = completion_body(
            rec.id,
            int(rec.ts),
            answer.model_id,
            answer.text,
            answer.finish_reason,
            answer.input_tokens,
            answer.output_tokens,
        )
        self._finish_ok(rec, started)
        return Answer(200, body, headers)

    def headers(self, rec: RequestRecord) -> dict[str, str]:
        """Response headers that say what happened."""
        headers = {"x-request-id": rec.id, "x-qg-cache": rec.cache}
        if rec.model_id:
            headers["x-qg-model"] = rec.model_id
        if rec.provider:
            headers["x-qg-provider"] = rec.provider
        if rec.hops:
            headers["x-qg-failover-hops"] = str(rec.hops)
        if rec.canary:
            headers["x-qg-canary"] = "1"
        if self.s.emergency is not None:
            headers["x-qg-degraded"] = "1"
        return headers

    def _finish_ok(self, rec: RequestRecord, started: float) -> None:
        self.finish(rec, started)

    def _finish_error(self, rec: RequestRecord, exc: ApiError, started: float) -> None:
        rec.http_status = exc.status
        rec.error_class = exc.error_class or exc.code
        rec.status = "error" if exc.status >= 500 and exc.error_class != "shutdown" else "rejected"
        self.finish(rec, started)

    # -- for the other endpoints on the same path (embeddings, the Messages API) --------

    def new_id(self, prefix: str) -> str:
        """A fresh request id (`prefix-...`)."""
        return f"{prefix}-{self._id_prefix}{next(self._ids):012x}"

    async def admit(self) -> None:
        """Take an admission slot (503 when full or the queue timed out)."""
        await self._admit(self.s.admission)

    async def check_key(self, key: ApiKey, tokens: int) -> None:
        """Hold `key` to its rpm/tpm (429 when over)."""
        await self._check_key(key, tokens)

    def upstream_error(self, plan: RoutePlan, error: ProviderError, attempts: int) -> ApiError:
        """The client's error for a trip that ended without an answer."""
        return self._upstream_error(plan, error, attempts)

    def finish_error(self, rec: RequestRecord, exc: ApiError, started: float) -> None:
        """Close a request's record as refused or failed."""
        self._finish_error(rec, exc, started)

    def auth_failure(self, reason: str, token: str | None) -> None:
        """Count a refused key (401): a `rejected` request row whose key_name is
        `invalid:<hash of the token>` (never the token), kept out of the roll-ups so a flood
        of bad keys cannot dilute the client metrics."""
        self.s.metrics.auth_failures.labels(self._env, reason).inc()
        self.s.metrics.series(NO_ROUTE, NO_ROUTE).request("401", NO_ROUTE, AUTH_FAILED)
        fingerprint = hashlib.sha256(token.encode()).hexdigest()[:12] if token else None
        rec = RequestRecord(
            id=f"chatcmpl-{self._id_prefix}{next(self._ids):012x}",
            ts=time.time(),
            environment=self._env,
            alias="",
            key_name=f"invalid:{fingerprint}" if fingerprint else None,
            status="rejected",
            http_status=401,
            error_class=AUTH_FAILED,
        )
        if self.s.telemetry is not None:
            self.s.telemetry.record(rec)

    def refused(self, exc: ApiError) -> None:
        """Count a chat request refused before it had a record (a malformed or oversized
        body, a wrong method): metrics only, as nothing about it was routed."""
        self.s.metrics.series(NO_ROUTE, NO_ROUTE).request(
            str(exc.status), NO_ROUTE, error_class_of(exc)
        )

    def finish(self, rec: RequestRecord, started: float) -> None:
        """Close a request's record: latency, metrics, telemetry."""
        s = self.s
        rec.latency_ms = (time.perf_counter() - started) * 1000.0
        series = s.metrics.series(rec.model_id or NO_ROUTE, rec.provider or NO_ROUTE)
        series.request(str(rec.http_status), rec.cache, rec.error_class or "")
        series.duration.observe(rec.latency_ms / 1000.0)
        if rec.stream and rec.ttft_ms is not None:
            series.ttft.observe(rec.ttft_ms / 1000.0)
        series.tokens_in += rec.input_tokens
        series.tokens_out += rec.output_tokens
        series.cost += rec.cost
        if rec.output_check is not None:
            series.output(rec.output_check)
        if s.telemetry is not None:
            s.telemetry.record(rec)
        if s.record_tap is not None:
            s.record_tap(rec)
