"""OpenAI-compatible Chat Completions (`POST {base}/v1/chat/completions`, SSE streaming).

Covers OpenAI and the servers that copy its API: Meta's Llama API, vLLM, Ollama, Together,
Groq. Errors are `{"error": {"message", "type", "code"}}`; vLLM puts the fields at the top.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from quality_gates.errors import ContentFiltered, Overloaded, ProviderError
from quality_gates.providers._base import Answer, HttpChatProvider, StreamEnd, Wire, dumps
from quality_gates.providers._http import loads_or_none, retry_after_seconds
from quality_gates.providers._status import ERROR_CLASSES, class_for_status, make_error
from quality_gates.providers._types import ChatRequest, FinishReason, Usage

FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
}
CONTENT_FILTER_CODES = ("content_filter", "content_policy_violation", "moderation_blocked")
# `error.type` / `error.code` values that name a class more precisely than the status does.
ERROR_TYPES = {
    "rate_limit_exceeded": "rate_limited",
    "insufficient_quota": "rate_limited",
    "server_error": "server_error",
    "overloaded": "overloaded",
    "overloaded_error": "overloaded",
    "invalid_api_key": "auth",
    "authentication_error": "auth",
    "timeout": "timeout",
}


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


def _error_fields(body: Any) -> tuple[str, str, str]:
    """(message, type, code) from any of the error shapes OpenAI-compatible servers send."""
    if not isinstance(body, dict):
        return "", "", ""
    error = body.get("error", body)
    if isinstance(error, str):
        return error, "", ""
    if not isinstance(error, dict):
        return "", "", ""
    return (
        str(error.get("message") or ""),
        str(error.get("type") or ""),
        str(error.get("code") or ""),
    )


class OpenAIProvider(HttpChatProvider):
    """An OpenAI-compatible endpoint; `api_key` goes in `Authorization: Bearer`."""

    protocol = "openai"

    def __init__(self, name: str, base_url: str, *, api_key: str | None = None, **kw: Any):
        super().__init__(name, base_url, **kw)
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        root = self.base_url if self.base_url.endswith("/v1") else f"{self.base_url}/v1"
        self._url = f"{root}/chat/completions"
        self._models_url = f"{root}/models"

    def build(self, request: ChatRequest, *, stream: bool) -> Wire:
        """The Chat Completions request."""
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.max_tokens is not None:
            payload["max_tokens"] = request.max_tokens
        if request.stop:
            payload["stop"] = list(request.stop)
        headers = self._headers
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
            headers = {**headers, "accept": "text/event-stream"}
        return Wire(self._url, headers, dumps(payload))

    def read_answer(self, data: Any, request: ChatRequest) -> Answer:
        """`choices[0].message.content`, its finish reason and `usage`."""
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        finish = FINISH.get(str(choice.get("finish_reason")), "other")
        if finish == "content_filter" and not text:
            raise ContentFiltered(f"{self.name}: the answer was filtered", provider=self.name)
        return Answer(text, finish, _usage(data.get("usage")), data.get("id"))

    def read_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The status decides, except a content-filter code or an explicit overload."""
        message, kind, code = _error_fields(loads_or_none(body))
        cls = class_for_status(status)
        if code in CONTENT_FILTER_CODES or kind in CONTENT_FILTER_CODES:
            cls = ContentFiltered
        elif status >= 500 and "overloaded" in (ERROR_TYPES.get(code), ERROR_TYPES.get(kind)):
            cls = Overloaded
        text = message or body[:200].decode("utf-8", "replace")
        return make_error(cls, self.name, status, text, retry_after_seconds(headers))

    async def read_stream(self, response: aiohttp.ClientResponse) -> AsyncIterator[str | StreamEnd]:
        """`chat.completion.chunk` events until `[DONE]`; usage arrives in the last chunk."""
        finish: FinishReason | None = None
        usage: Usage | None = None
        async for event in self.sse_events(response):
            if event.data.startswith("[DONE]"):
                break
            if not event.data:
                continue
            data = json.loads(event.data)
            if isinstance(data, dict) and data.get("error"):
                message, kind, code = _error_fields(data)
                named = ERROR_TYPES.get(code) or ERROR_TYPES.get(kind) or "server_error"
                raise make_error(ERROR_CLASSES[named], self.name, 200, message or "stream error")
            usage = _usage(data.get("usage")) or usage
            for choice in data.get("choices") or ():
                if choice.get("index", 0) != 0:
                    continue
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield content
                if choice.get("finish_reason"):
                    finish = FINISH.get(str(choice["finish_reason"]), "other")
        if finish is not None:
            yield StreamEnd(finish, usage)

    def models_wire(self) -> Wire:
        """`GET /v1/models`."""
        return Wire(self._models_url, self._headers, b"")
