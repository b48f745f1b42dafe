"""Chat Completions answers beyond plain text: tool calls, several choices, logprobs and
usage details, whole and as stream chunks (the plain ones stay in _wire.py, on the hot
path)."""

from __future__ import annotations

from typing import Any

import orjson

from quality_gates.gateway._wire import finish_reason
from quality_gates.providers import ChatResponse, Choice, ToolCall, ToolCallDelta, Usage


def is_plain(response: ChatResponse) -> bool:
    """An answer the plain body carries whole."""
    usage = response.usage
    return (
        not response.tool_calls
        and not response.more
        and response.logprobs is None
        and not usage.cached_tokens
        and not usage.reasoning_tokens
    )


def usage_json(usage: Usage) -> dict[str, Any]:
    """`usage` with the cached and reasoning token details where the provider gave them."""
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    if usage.cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def _calls(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def _choice(index: int, choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.text if choice.text or not choice.tool_calls else None,
        "refusal": None,
    }
    if choice.tool_calls:
        message["tool_calls"] = _calls(choice.tool_calls)
    finish = "tool_calls" if choice.tool_calls else finish_reason(choice.finish_reason)
    return {
        "index": index,
        "message": message,
        "finish_reason": finish,
        "logprobs": choice.logprobs,
    }


def completion_json(request_id: str, created: int, model: str, response: ChatResponse) -> bytes:
    """A `chat.completion` object with every choice, tool call and usage detail."""
    first = Choice(response.text, response.finish_reason, response.tool_calls, response.logprobs)
    choices = [_choice(0, first)] + [_choice(i, c) for i, c in enumerate(response.more, 1)]
    return orjson.dumps(
        {
            "id": request_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": usage_json(response.usage),
        }
    )


def tool_chunk_event(
    request_id: str,
    created: int,
    model: str,
    deltas: tuple[ToolCallDelta, ...],
) -> bytes:
    """One SSE chunk carrying tool-call deltas: the first of a call has its id, type and
    name, the rest only arguments, all under the call's stable index."""
    calls = []
    for delta in deltas:
        call: dict[str, Any] = {"index": delta.index}
        function: dict[str, Any] = {"arguments": delta.arguments}
        if delta.id is not None:
            call["id"], call["type"] = delta.id, "function"
            function["name"] = delta.name or ""
        call["function"] = function
        calls.append(call)
    payload = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None, "logprobs": None}
        ],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def usage_chunk_event(request_id: str, created: int, model: str, usage: Usage) -> bytes:
    """The closing usage chunk with token details."""
    payload = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_json(usage),
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"
