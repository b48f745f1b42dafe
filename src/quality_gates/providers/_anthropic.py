"""Anthropic Messages (`POST {base}/v1/messages`) with its SSE event types.

Streams run message_start, content_block_start, content_block_delta..., content_block_stop,
message_delta (stop reason, output tokens), message_stop, with `ping` anywhere and `error`
events when the stream breaks. Errors are `{"type": "error", "error": {"type", "message"}}`.

Tools are `tools[{name, description, input_schema}]`; calls come back as `tool_use` blocks
(streamed as `input_json_delta` pieces) and results go in `tool_result` blocks of a user
turn. The Messages API has no JSON mode: a JSON response format is asked for as a forced
call of one tool (`json_response`) whose input schema is the requested schema, and its
input comes back as the answer's text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from quality_gates.errors import ContentFiltered, ProviderError
from quality_gates.providers._base import Answer, HttpChatProvider, StreamEnd, Wire, dumps
from quality_gates.providers._features import (
    JSON_TOOL,
    ToolIndex,
    arguments_object,
    json_text,
    json_tool_schema,
    merged,
    refusal,
    unsupported,
)
from quality_gates.providers._http import loads_or_none, retry_after_seconds
from quality_gates.providers._status import ERROR_CLASSES, class_for_status, make_error
from quality_gates.providers._types import (
    ChatRequest,
    FinishReason,
    Message,
    RequestExtras,
    ToolCall,
    ToolCallDelta,
    Usage,
)

LACKS = {
    "n": "the Messages API returns one answer per request",
    "seed": "the Messages API has no seed",
    "presence_penalty": "the Messages API has no presence penalty",
    "frequency_penalty": "the Messages API has no frequency penalty",
    "logprobs": "the Messages API returns no log probabilities",
}

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the API requires max_tokens
FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
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


def _usage(data: Any) -> Usage:
    """Anthropic counts cache reads and writes apart from `input_tokens`; OpenAI's prompt
    tokens include them."""
    cached = int(data.get("cache_read_input_tokens") or 0)
    written = int(data.get("cache_creation_input_tokens") or 0)
    return Usage(
        int(data.get("input_tokens") or 0) + cached + written,
        int(data.get("output_tokens") or 0),
        cached_tokens=cached,
    )


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
    for image in m.images:
        source = (
            {"type": "url", "url": image.url}
            if image.url
            else {"type": "base64", "media_type": image.media_type, "data": image.data}
        )
        blocks.append({"type": "image", "source": source})
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": arguments_object(c)}
        for c in m.tool_calls
    ]
    return blocks


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Turns in Messages form: tool results in user turns, consecutive roles merged."""
    if all(m.parts is None for m in messages):
        return [{"role": m.role, "content": m.content} for m in messages if m.role != "system"]
    turns: list[tuple[str, list[Any]]] = [
        ("user" if m.role == "tool" else m.role, _blocks(m)) for m in messages if m.role != "system"
    ]
    return [{"role": role, "content": blocks} for role, blocks in merged(turns)]


def _tools(extras: RequestExtras, name: str) -> dict[str, Any]:
    """`tools` and `tool_choice` (or the forced JSON tool)."""
    schema = json_tool_schema(extras)
    if schema is not None:
        if extras.tools:
            raise refusal(name, "response_format", "not together with tools on this protocol")
        tool = {"name": JSON_TOOL, "description": "Reply with the answer", "input_schema": schema}
        return {"tools": [tool], "tool_choice": {"type": "tool", "name": JSON_TOOL}}
    if not extras.tools:
        return {}
    out: dict[str, Any] = {
        "tools": [
            {
                "name": t.name,
                "description": t.description,
                "input_schema": t.parameters or {"type": "object", "properties": {}},
            }
            for t in extras.tools
        ]
    }
    choice = extras.tool_choice
    kind = {"auto": "auto", "required": "any", "none": "none", None: "auto"}.get(choice, "tool")
    tool_choice: dict[str, Any] = {"type": kind}
    if kind == "tool":
        tool_choice["name"] = choice
    if extras.parallel_tool_calls is False and kind != "none":
        tool_choice["disable_parallel_tool_use"] = True
    if choice is not None or extras.parallel_tool_calls is False:
        out["tool_choice"] = tool_choice
    return out


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
            "messages": _messages(request.messages),
        }
        if system:
            payload["system"] = system
        extras = request.extras
        if extras is not None:
            unsupported(request, self.name, LACKS, stream=stream)
            payload.update(_tools(extras, self.name))
            if extras.top_p is not None:
                payload["top_p"] = extras.top_p
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
        """Text blocks joined, tool_use blocks as tool calls; `stop_reason` and `usage`."""
        text = "".join(
            block.get("text", "") for block in data["content"] if block.get("type") == "text"
        )
        calls = tuple(
            ToolCall(str(b["id"]), str(b["name"]), json_text(b.get("input") or {}))
            for b in data["content"]
            if b.get("type") == "tool_use"
        )
        finish = FINISH.get(str(data.get("stop_reason")), "other")
        if calls and calls[0].name == JSON_TOOL and _json_mode(request):
            text, calls, finish = calls[0].arguments, (), "stop"
        if finish == "content_filter" and not text:
            raise ContentFiltered(f"{self.name}: the model refused", provider=self.name)
        return Answer(text, finish, _usage(data.get("usage") or {}), data.get("id"), calls)

    def read_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """`error.type` names the class; the status decides when it does not."""
        message, kind = _error_fields(loads_or_none(body))
        named = ERROR_TYPES.get(kind)
        cls = ERROR_CLASSES[named] if named else class_for_status(status)
        text = message or body[:200].decode("utf-8", "replace")
        return make_error(cls, self.name, status, text, retry_after_seconds(headers))

    async def read_stream(
        self, body: AsyncIterator[bytes], json_mode: bool = False
    ) -> AsyncIterator[str | ToolCallDelta | StreamEnd]:
        """Text and tool-call deltas; input tokens from message_start, output tokens from
        message_delta."""
        input_tokens = output_tokens = 0
        usage = Usage()
        tools = ToolIndex()
        finish: FinishReason | None = None
        async for event in self.sse_events(body):
            kind = event.event
            if kind in ("ping", "") or not event.data:
                continue
            data = orjson.loads(event.data)
            if kind == "error":
                message, error_type = _error_fields(data)
                named = ERROR_TYPES.get(error_type, "server_error")
                raise make_error(ERROR_CLASSES[named], self.name, 200, message or "stream error")
            if kind == "message_start":
                usage = _usage(data["message"].get("usage") or {})
                input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
            elif kind == "content_block_start":
                block = data.get("content_block") or {}
                if block.get("type") == "tool_use" and not json_mode:
                    index = tools.open(int(data.get("index") or 0))
                    yield ToolCallDelta(index, str(block.get("id")), str(block.get("name")))
            elif kind == "content_block_delta":
                delta = data["delta"]
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield delta["text"]
                elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                    if json_mode:
                        yield delta["partial_json"]
                        continue
                    position = tools.get(int(data.get("index") or 0))
                    if position is not None:
                        yield ToolCallDelta(position, arguments=delta["partial_json"])
            elif kind == "message_delta":
                stop = data.get("delta", {}).get("stop_reason")
                finish = FINISH.get(str(stop), "other") if stop else finish
                output_tokens = int((data.get("usage") or {}).get("output_tokens") or 0)
            elif kind == "message_stop":
                if json_mode and finish == "tool_calls":
                    finish = "stop"
                yield StreamEnd(
                    finish or "stop",
                    Usage(input_tokens, output_tokens, cached_tokens=usage.cached_tokens),
                )
                return

    def read_stream_of(
        self, body: AsyncIterator[bytes], request: ChatRequest
    ) -> AsyncIterator[str | ToolCallDelta | StreamEnd]:
        """The JSON tool's input streams as the answer's text."""
        return self.read_stream(body, json_mode=_json_mode(request))

    def models_wire(self) -> Wire:
        """`GET /v1/models`."""
        return Wire(self._models_url, self._headers, b"")


def _json_mode(request: ChatRequest) -> bool:
    return request.extras is not None and request.extras.response_format is not None
