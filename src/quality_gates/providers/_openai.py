"""OpenAI-compatible Chat Completions (`POST {base}/v1/chat/completions`, SSE streaming).

Covers OpenAI and the servers that copy its API: Meta's Llama API, vLLM, Ollama, Together,
Groq. Errors are `{"error": {"message", "type", "code"}}`; vLLM puts the fields at the top.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import orjson

from quality_gates.errors import ContentFiltered, Overloaded, ProviderError
from quality_gates.providers._base import Answer, HttpChatProvider, StreamEnd, Wire, dumps
from quality_gates.providers._embeddings import EmbedRequest, openai_body, openai_vectors
from quality_gates.providers._features import unsupported
from quality_gates.providers._http import loads_or_none, retry_after_seconds
from quality_gates.providers._relay import EventReader, SseItems
from quality_gates.providers._sse import ServerSentEvent
from quality_gates.providers._status import ERROR_CLASSES, class_for_status, make_error
from quality_gates.providers._types import (
    ChatRequest,
    Choice,
    FinishReason,
    Message,
    RequestExtras,
    ToolCall,
    ToolCallDelta,
    Usage,
)

FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
# An OpenAI-compatible server takes the whole request as it is: nothing to refuse.
LACKS: dict[str, str] = {}
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
    prompt = data.get("prompt_tokens_details")
    completion = data.get("completion_tokens_details")
    if not prompt and not completion:
        return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))
    return Usage(
        int(data.get("prompt_tokens") or 0),
        int(data.get("completion_tokens") or 0),
        cached_tokens=int((prompt or {}).get("cached_tokens") or 0),
        reasoning_tokens=int((completion or {}).get("reasoning_tokens") or 0),
    )


def message_json(m: Message) -> dict[str, Any]:
    """One message in Chat Completions form."""
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
        for image in m.images:
            url = image.url or f"data:{image.media_type};base64,{image.data}"
            source: dict[str, Any] = {"url": url}
            if image.detail:
                source["detail"] = image.detail
            parts.append({"type": "image_url", "image_url": source})
        out["content"] = parts
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in m.tool_calls
        ]
    if m.name:
        out["name"] = m.name
    return out


def extras_json(extras: RequestExtras, dropped: frozenset[str]) -> dict[str, Any]:
    """The fields beyond plain chat, as OpenAI names them."""
    out: dict[str, Any] = {}
    if extras.tools:
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters or {"type": "object", "properties": {}},
                    **({"strict": True} if t.strict else {}),
                },
            }
            for t in extras.tools
        ]
    choice = extras.tool_choice
    if choice is not None:
        out["tool_choice"] = (
            choice
            if choice in ("auto", "none", "required")
            else {"type": "function", "function": {"name": choice}}
        )
    if extras.parallel_tool_calls is not None and extras.tools:
        out["parallel_tool_calls"] = extras.parallel_tool_calls
    fmt = extras.response_format
    if fmt is not None:
        if fmt.type == "json_object":
            out["response_format"] = {"type": "json_object"}
        else:
            spec: dict[str, Any] = {"name": fmt.name, "strict": fmt.strict}
            if fmt.schema is not None:
                spec["schema"] = fmt.schema
            out["response_format"] = {"type": "json_schema", "json_schema": spec}
    if extras.n != 1 and "n" not in dropped:
        out["n"] = extras.n
    for name in ("seed", "top_p", "presence_penalty", "frequency_penalty"):
        value = getattr(extras, name)
        if value is not None and name not in dropped:
            out[name] = value
    if extras.logprobs and "logprobs" not in dropped:
        out["logprobs"] = True
        if extras.top_logprobs is not None:
            out["top_logprobs"] = extras.top_logprobs
    return out


def _tool_calls(message: Any) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(str(c["id"]), str(c["function"]["name"]), c["function"].get("arguments") or "")
        for c in message.get("tool_calls") or ()
    )


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


class ChunkReader(EventReader):
    """`chat.completion.chunk` events, one at a time, until `[DONE]`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.finish: FinishReason | None = None
        self.usage: Usage | None = None
        self.shape: tuple[bytes, bytes] | None = None  # see plain_text

    def read(self, event: ServerSentEvent) -> Iterator[str | ToolCallDelta]:
        """Text and tool-call deltas of choice 0 (a generator: what an event holds before a
        malformed part of it is still read, as it arrived)."""
        data = event.data
        if data.startswith("[DONE]"):
            self.done = True
            return
        if not data:
            return
        chunk = orjson.loads(data)
        if isinstance(chunk, dict) and chunk.get("error"):
            message, kind, code = _error_fields(chunk)
            named = ERROR_TYPES.get(code) or ERROR_TYPES.get(kind) or "server_error"
            raise make_error(ERROR_CLASSES[named], self.name, 200, message or "stream error")
        self.usage = _usage(chunk.get("usage")) or self.usage
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                yield content
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                yield ToolCallDelta(
                    int(call.get("index") or 0),
                    call.get("id"),
                    function.get("name"),
                    function.get("arguments") or "",
                )
            if choice.get("finish_reason"):
                self.finish = FINISH.get(str(choice["finish_reason"]), "other")

    def end(self) -> StreamEnd | None:
        """The finish reason and usage, if a chunk gave a finish reason."""
        return StreamEnd(self.finish, self.usage) if self.finish is not None else None

    def plain_text(self, data: bytes) -> str | None:
        """The content of a chunk that holds only choice 0's text delta (no usage, no tool
        calls, no finish reason, no error), which `read` would yield alone; else None. The
        bytes around that text become the reader's `shape` (a stream's plain chunks mostly
        differ in their text alone; the relay reads the next ones by their string)."""
        text = self._read_plain(data)
        if text is not None:
            self.shape = _shape_of(data, text)
        return text

    def _read_plain(self, data: bytes) -> str | None:
        if data[:1] != b"{":
            return None
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None  # `read` says why
        if chunk.get("usage") is not None or chunk.get("error"):
            return None
        choices = chunk.get("choices")
        if choices.__class__ is not list or len(choices) != 1:
            return None
        choice = choices[0]
        if (
            choice.__class__ is not dict
            or choice.get("index", 0) != 0
            or choice.get("finish_reason")
        ):
            return None
        delta = choice.get("delta")
        if delta.__class__ is not dict or delta.get("tool_calls"):
            return None
        content = delta.get("content")
        return content if content.__class__ is str and content else None


def _json_string(literal: bytes) -> str | None:
    """The string `literal` is, when it is one JSON string and nothing else."""
    if literal[:1] != b'"':
        return None
    try:
        value = orjson.loads(literal)
    except orjson.JSONDecodeError:
        return None
    return value if value.__class__ is str else None


_SLOT_PROBE = "\x00qg-slot"


def _shape_of(data: bytes, text: str) -> tuple[bytes, bytes] | None:
    """The bytes before and after the JSON string of choice 0's delta content in `data`, a
    plain chunk whose content is `text`; None when that string cannot be told apart (the
    slot is proved by parsing the chunk with another string in it)."""
    start = data.find(b'"content":') + len(b'"content":')
    if start < len(b'"content":'):
        return None
    while data[start : start + 1] in (b" ", b"\t", b"\n", b"\r"):
        start += 1
    if data[start : start + 1] != b'"':
        return None
    end = start + 1
    while True:  # the closing quote: one not escaped by an odd run of backslashes
        end = data.find(b'"', end)
        if end < 0:
            return None
        escapes = 0
        while data[end - 1 - escapes] == 0x5C:
            escapes += 1
        end += 1
        if escapes % 2 == 0:
            break
    head, tail = data[:start], data[end:]
    if _json_string(data[start:end]) != text:
        return None
    try:
        probe = orjson.loads(head + orjson.dumps(_SLOT_PROBE) + tail)
        if probe["choices"][0]["delta"]["content"] != _SLOT_PROBE:
            return None
    except (orjson.JSONDecodeError, LookupError, TypeError):
        return None
    return head, tail


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
        self._embeddings_url = f"{root}/embeddings"

    def build(self, request: ChatRequest, *, stream: bool) -> Wire:
        """The Chat Completions request."""
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": [
                {"role": m.role, "content": m.content} if m.parts is None else message_json(m)
                for m in request.messages
            ],
        }
        if request.extras is not None:
            dropped = unsupported(request, self.name, LACKS, stream=stream)
            payload.update(extras_json(request.extras, dropped))
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
        """`choices[0].message.content` (and tool calls), its finish reason and `usage`; the
        other choices of an n > 1 request."""
        choices = data["choices"]
        if len(choices) > 1:
            choices = sorted(choices, key=lambda c: c.get("index", 0))
        choice = choices[0]
        message = choice["message"]
        text = message.get("content") or ""
        calls = _tool_calls(message) if message.get("tool_calls") else ()
        finish = FINISH.get(str(choice.get("finish_reason")), "other")
        if finish == "content_filter" and not text:
            raise ContentFiltered(f"{self.name}: the answer was filtered", provider=self.name)
        more: tuple[Choice, ...] = ()
        if len(choices) > 1:
            more = tuple(
                Choice(
                    c["message"].get("content") or "",
                    FINISH.get(str(c.get("finish_reason")), "other"),
                    _tool_calls(c["message"]),
                    c.get("logprobs"),
                )
                for c in choices[1:]
            )
        return Answer(
            text,
            finish,
            _usage(data.get("usage")),
            data.get("id"),
            calls,
            choice.get("logprobs"),
            more,
        )

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

    async def read_stream(
        self, body: AsyncIterator[bytes]
    ) -> AsyncIterator[str | ToolCallDelta | StreamEnd]:
        """`chat.completion.chunk` events until `[DONE]`; usage arrives in the last chunk;
        tool-call deltas keep the upstream's index and id."""
        async for item in SseItems(body, ChunkReader(self.name)):
            yield item

    def stream_reader(self, request: ChatRequest) -> ChunkReader:
        """The chunks are read one event at a time, so a relay may push them."""
        return ChunkReader(self.name)

    def embed_wires(self, request: EmbedRequest) -> list[Wire]:
        """`POST /v1/embeddings` with every input."""
        return [Wire(self._embeddings_url, self._headers, dumps(openai_body(request)))]

    def read_embeddings(self, data: Any, request: EmbedRequest) -> tuple[list[list[float]], int]:
        """`data[].embedding` in index order; `usage.prompt_tokens`."""
        vectors, usage = openai_vectors(data)
        return vectors, usage.input_tokens if usage else 0

    def models_wire(self) -> Wire:
        """`GET /v1/models`."""
        return Wire(self._models_url, self._headers, b"")
