"""Anthropic Messages (`POST {base}/v1/messages`) with its SSE event types.

Streams run message_start, content_block_start, content_block_delta..., content_block_stop,
message_delta (stop reason, output tokens), message_stop, with `ping` anywhere and `error`
events when the stream breaks. Errors are `{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from quality_gates.errors import ContentFiltered, ProviderError
from quality_gates.providers._base import Answer, HttpChatProvider, StreamEnd, Wire, dumps
from quality_gates.providers._http import loads_or_none, retry_after_seconds
from quality_gates.providers._status import ERROR_CLASSES, class_for_status, make_error
from quality_gates.providers._types import ChatRequest, FinishReason, Usage

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the API requires max_tokens
FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}
ERROR_TYPES = {
    "invalid_request_error": "bad_request",
    "authentication_error": "auth",
    "permission_error": "auth",
    "not_found_error": "bad_request",
    "request_too_large": "bad_request",
    "rate_limit_error": "rate_limited",
    "api_error": "server_error",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
}


def _error_fields(body: Any) -> tuple[str, str]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("message") or ""), str(error.get("type") or "")
    return "", ""


class AnthropicProvider(HttpChatProvider):
    """The Anthropic API; `api_key` goes in `x-api-key`."""

    protocol = "anthropic"

    def __init__(self, name: str, base_url: str, *, api_key: str | None = None, **kw: Any):
        super().__init__(name, base_url, **kw)
        self._headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": API_VERSION,
        }
        if api_key:
            self._headers["x-api-key"] = api_key
        root = self.base_url if self.base_url.endswith("/v1") else f"{self.base_url}/v1"
        self._url = f"{root}/messages"
        self._models_url = f"{root}/models"

    def build(self, request: ChatRequest, *, stream: bool) -> Wire:
        """System messages become `system`; the rest keep their order."""
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        payload: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
        }
        if system:
            payload["system"] = system
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.stop:
            payload["stop_sequences"] = list(request.stop)
        headers = self._headers
        if stream:
            payload["stream"] = True
            headers = {**headers, "accept": "text/event-stream"}
        return Wire(self._url, headers, dumps(payload))

    def read_answer(self, data: Any, request: ChatRequest) -> Answer:
        """Text blocks joined; `stop_reason` and `usage`."""
        text = "".join(
            block.get("text", "") for block in data["content"] if block.get("type") == "text"
        )
        finish = FINISH.get(str(data.get("stop_reason")), "other")
        if finish == "content_filter" and not text:
            raise ContentFiltered(f"{self.name}: the model refused", provider=self.name)
        usage = data.get("usage") or {}
        return Answer(
            text,
            finish,
            Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)),
            data.get("id"),
        )

    def read_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """`error.type` names the class; the status decides when it does not."""
        message, kind = _error_fields(loads_or_none(body))
        named = ERROR_TYPES.get(kind)
        cls = ERROR_CLASSES[named] if named else class_for_status(status)
        text = message or body[:200].decode("utf-8", "replace")
        return make_error(cls, self.name, status, text, retry_after_seconds(headers))

    async def read_stream(self, response: aiohttp.ClientResponse) -> AsyncIterator[str | StreamEnd]:
        """Text deltas; input tokens from message_start, output tokens from message_delta."""
        input_tokens = output_tokens = 0
        finish: FinishReason | None = None
        async for event in self.sse_events(response):
            kind = event.event
            if kind in ("ping", "") or not event.data:
                continue
            data = json.loads(event.data)
            if kind == "error":
                message, error_type = _error_fields(data)
                named = ERROR_TYPES.get(error_type, "server_error")
                raise make_error(ERROR_CLASSES[named], self.name, 200, message or "stream error")
            if kind == "message_start":
                usage = data["message"].get("usage") or {}
                input_tokens = int(usage.get("input_tokens") or 0)
                output_tokens = int(usage.get("output_tokens") or 0)
            elif kind == "content_block_delta":
                delta = data["delta"]
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield delta["text"]
            elif kind == "message_delta":
                stop = data.get("delta", {}).get("stop_reason")
                finish = FINISH.get(str(stop), "other") if stop else finish
                output_tokens = int((data.get("usage") or {}).get("output_tokens") or 0)
            elif kind == "message_stop":
                yield StreamEnd(finish or "stop", Usage(input_tokens, output_tokens))
                return

    def models_wire(self) -> Wire:
        """`GET /v1/models`."""
        return Wire(self._models_url, self._headers, b"")
