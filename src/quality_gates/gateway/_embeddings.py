"""`POST /v1/embeddings`: the same path as chat completions (emergency stop, aliases and
failover chains, breakers, provider quotas, key limits, admission, telemetry), with the
provider's embeddings call in place of a completion.

The answer is OpenAI's `CreateEmbeddingResponse`; `encoding_format: base64` (what the
openai SDK asks for by default) packs each vector as little-endian float32. Embeddings are
never cached.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from quality_gates.errors import ProviderTimeout, ServerError
from quality_gates.gateway._dispatch import NoDeployment
from quality_gates.gateway._telemetry import RequestRecord
from quality_gates.gateway._wire import Answer, ApiError
from quality_gates.providers import (
    ChatProvider,
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    EmbedResponse,
    Message,
)

if TYPE_CHECKING:
    from quality_gates.gateway._gateway import Gateway
    from quality_gates.gateway.keys import ApiKey

MAX_INPUTS = 2048
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A validated embeddings request."""

    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    base64: bool = False


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value" if param else None)


def parse_embeddings(raw: bytes) -> EmbeddingsRequest:
    """Validate a request body; ApiError 400 names the first problem."""
    try:
        body = orjson.loads(raw)
    except ValueError as exc:
        raise _bad(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object with model and input")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("model is required: an alias or a model id", "model")
    value = body.get("input")
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs:
        raise _bad("input must be a string or a non-empty list of strings", "input")
    if not all(isinstance(text, str) and text for text in inputs):
        raise _bad(
            "input must hold non-empty strings (token arrays are not translated for providers)",
            "input",
        )
    if len(inputs) > MAX_INPUTS:
        raise _bad(f"input has {len(inputs)} items: at most {MAX_INPUTS}", "input")
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        raise _bad("dimensions must be a positive integer", "dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise _bad("encoding_format must be float or base64", "encoding_format")
    for name in body:
        if name not in ("model", "input", "dimensions", "encoding_format", "user"):
            raise _bad(f"Unrecognized request argument supplied: {name}", name)
    return EmbeddingsRequest(model.strip(), tuple(inputs), dimensions, encoding == "base64")


def _vector(values: list[float], as_base64: bool) -> Any:
    if not as_base64:
        return values
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


class Embeddings:
    """Answers embeddings requests on a Gateway's services."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def embed(self, raw: bytes, key: ApiKey | None) -> Answer:
        """Answer one request body (already authenticated)."""
        gw, s = self.gateway, self.gateway.s
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + s.settings.deadline
        request = parse_embeddings(raw)
        rec = RequestRecord(
            id=gw.new_id("embd"),
            ts=time.time(),
            environment=s.environment,
            alias="(unknown)",
            key_name=key.name if key else None,
        )
        if s.emergency is not None and s.emergency.mode == "shutdown":
            exc = ApiError(503, "the service is stopped for an emergency", code="service_shutdown")
            gw.finish_error(rec, exc, started)
            raise exc
        try:
            plan = gw.plan_for(request.model, rec)
            await gw.admit()
        except ApiError as exc:
            gw.finish_error(rec, exc, started)
            raise
        try:
            return await self._serve(request, rec, plan, key, started, deadline)
        except ApiError as exc:
            gw.finish_error(rec, exc, started)
            raise
        finally:
            s.admission.release()

    async def _serve(
        self,
        request: EmbeddingsRequest,
        rec: RequestRecord,
        plan: Any,
        key: ApiKey | None,
        started: float,
        deadline: float,
    ) -> Answer:
        gw, s = self.gateway, self.gateway.s
        tokens = sum(len(text) for text in request.inputs) // CHARS_PER_TOKEN + 1
        if key is not None:
            await gw.check_key(key, tokens)
        s.budget.deposit()
        rec.cache = "bypass"
        results: dict[str, EmbedResponse] = {}

        async def invoke(provider: ChatProvider, call: ChatRequest) -> ChatResponse:
            done = await provider.embed(
                EmbedRequest(call.model, request.inputs, request.dimensions, call.timeout)
            )
            results["last"] = done
            return ChatResponse(
                "", "stop", done.usage, done.latency_ms, done.latency_ms, done.provider, call.model
            )

        # The dispatcher's trip (deployments in order, retries, breakers, attempt records)
        # is the same for embeddings; it builds each attempt's model and timeout from this
        # carrier, and `invoke` makes the embeddings call instead of a chat completion.
        carrier = ChatRequest(
            model=plan.model_id, messages=(Message("user", ""),), request_id=rec.id
        )
        try:
            trip = await s.dispatcher.run(
                plan,
                carrier,
                stream=False,
                deadline=deadline,
                tokens_estimate=tokens,
                invoke=invoke,
            )
        except NoDeployment as exc:
            rec.attempts = exc.attempts  # a first pass's, when the route was tried again
            raise gw.no_deployment_error(request.model, exc) from None
        rec.attempts, rec.hops = trip.attempts, trip.hops
        deployment = trip.deployment
        done = results.get("last")
        if deployment is None or done is None:
            error = trip.error or ProviderTimeout("no deployment answered")
            raise gw.upstream_error(plan, error or ServerError("no answer"), len(trip.attempts))
        rec.model_id, rec.provider, rec.deployment = (
            deployment.model_id,
            deployment.provider,
            deployment.id,
        )
        rec.input_tokens = done.usage.input_tokens
        rec.cost = deployment.cost(done.usage)
        rec.finish_reason = "stop"
        body = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": _vector(vector, request.base64),
                    }
                    for i, vector in enumerate(done.vectors)
                ],
                "model": deployment.model_id,
                "usage": {
                    "prompt_tokens": done.usage.input_tokens,
                    "total_tokens": done.usage.input_tokens,
                },
            }
        )
        gw.finish(rec, started)
        return Answer(200, body, gw.headers(rec))
