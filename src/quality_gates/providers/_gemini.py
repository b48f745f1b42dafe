"""Google Gemini `models/{model}:generateContent` and `:streamGenerateContent?alt=sse`.

The key goes in `x-goog-api-key`. Errors are `{"error": {"code", "message", "status",
"details"}}` with google.rpc codes; a 429 says how long to wait in a RetryInfo detail.

Tools are `tools[].functionDeclarations` (with `parametersJsonSchema`, so any JSON Schema
an OpenAI client sends is carried as it is) and `toolConfig.functionCallingConfig`; calls
come back whole as `functionCall` parts (one delta each when streamed; Gemini may give no
id, so one is made from the response id and position) and results go in
`functionResponse` parts. JSON answers use `responseMimeType` and `responseJsonSchema`;
n is `candidateCount`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from quality_gates.errors import ContentFiltered, ProviderError
from quality_gates.providers._base import Answer, HttpChatProvider, StreamEnd, Wire, dumps
from quality_gates.providers._embeddings import EmbedRequest, gemini_body, gemini_vectors
from quality_gates.providers._features import (
    arguments_object,
    call_id,
    json_text,
    merged,
    tool_result_object,
    unsupported,
)
from quality_gates.providers._http import loads_or_none, retry_after_seconds
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
from quality_gates.units import parse_duration

API_VERSION = "v1beta"
ROLES = {"user": "user", "assistant": "model"}
FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
}
STATUSES = {
    "INVALID_ARGUMENT": "bad_request",
    "FAILED_PRECONDITION": "bad_request",
    "NOT_FOUND": "bad_request",
    "UNAUTHENTICATED": "auth",
    "PERMISSION_DENIED": "auth",
    "RESOURCE_EXHAUSTED": "rate_limited",
    "INTERNAL": "server_error",
    "UNKNOWN": "server_error",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "timeout",
}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
KEY_REASONS = ("API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED")
LACKS = {
    "logprobs": "this gateway does not translate Gemini's logprobs result",
    "image_url": "generateContent reads only inline data or uploaded files, not http(s) URLs",
}
MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


def _retry_delay(error: dict[str, Any]) -> float | None:
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("@type") == RETRY_INFO:
            try:
                return parse_duration(str(detail.get("retryDelay", "")), bare_unit="s")
            except ValueError:
                return None
    return None


def _reason(error: dict[str, Any]) -> str:
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("@type") == ERROR_INFO:
            return str(detail.get("reason") or "")
    return ""


def _usage(data: Any) -> Usage | None:
    """`promptTokenCount` includes cached content; thinking is counted apart from the
    candidates, and OpenAI counts reasoning within completion tokens."""
    if not isinstance(data, dict):
        return None
    thoughts = int(data.get("thoughtsTokenCount") or 0)
    return Usage(
        int(data.get("promptTokenCount") or 0),
        int(data.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=int(data.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


def _parts(m: Message, names: dict[str, str]) -> list[dict[str, Any]]:
    if m.role == "tool":
        name = names.get(m.tool_call_id or "", m.name or "")
        response = {"name": name, "response": tool_result_object(m.content)}
        return [{"functionResponse": response}]
    parts: list[dict[str, Any]] = [{"text": m.content}] if m.content else []
    parts += [{"inlineData": {"mimeType": i.media_type, "data": i.data}} for i in m.images]
    parts += [{"functionCall": {"name": c.name, "args": arguments_object(c)}} for c in m.tool_calls]
    return parts


def _contents(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Turns in Gemini form: function responses in user turns (named after the call they
    answer), consecutive roles merged."""
    if all(m.parts is None for m in messages):
        return [
            {"role": ROLES[m.role], "parts": [{"text": m.content}]}
            for m in messages
            if m.role != "system"
        ]
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    turns = [
        ("user" if m.role == "tool" else ROLES[m.role], _parts(m, names))
        for m in messages
        if m.role != "system"
    ]
    return [{"role": role, "parts": parts} for role, parts in merged(turns)]


def _extras(extras: RequestExtras, payload: dict[str, Any], config: dict[str, Any]) -> None:
    if extras.tools:
        declarations = []
        for t in extras.tools:
            declaration: dict[str, Any] = {"name": t.name, "description": t.description}
            if t.parameters:
                declaration["parametersJsonSchema"] = t.parameters
            declarations.append(declaration)
        payload["tools"] = [{"functionDeclarations": declarations}]
        choice = extras.tool_choice
        if choice is not None:
            calling: dict[str, Any] = {"mode": MODES.get(choice, "ANY")}
            if choice not in MODES:
                calling["allowedFunctionNames"] = [choice]
            payload["toolConfig"] = {"functionCallingConfig": calling}
    fmt = extras.response_format
    if fmt is not None:
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema is not None:
            config["responseJsonSchema"] = fmt.schema
    if extras.n != 1:
        config["candidateCount"] = extras.n
    for field, key in (
        ("seed", "seed"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        value = getattr(extras, field)
        if value is not None:
            config[key] = value


def _candidate(candidate: Any, response_id: str) -> tuple[str, tuple[ToolCall, ...]]:
    parts = (candidate.get("content") or {}).get("parts") or []
    text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
    calls = []
    for i, part in enumerate(p for p in parts if isinstance(p.get("functionCall"), dict)):
        call = part["functionCall"]
        ident = str(call.get("id") or call_id(response_id, candidate.get("index", 0), i))
        calls.append(ToolCall(ident, str(call["name"]), json_text(call.get("args") or {})))
    return text, tuple(calls)


class GeminiProvider(HttpChatProvider):
    """The Gemini API (Google AI Studio keys)."""

    protocol = "gemini"

    def __init__(self, name: str, base_url: str, *, api_key: str | None = None, **kw: Any):
        super().__init__(name, base_url, **kw)
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        if api_key:
            self._headers["x-goog-api-key"] = api_key
        versioned = self.base_url.rsplit("/", 1)[-1] in ("v1", "v1beta", "v1alpha")
        self._root = self.base_url if versioned else f"{self.base_url}/{API_VERSION}"

    def _model_url(self, model: str, method: str) -> str:
        name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
        return f"{self._root}/{name}:{method}"

    def build(self, request: ChatRequest, *, stream: bool) -> Wire:
        """System messages become `systemInstruction`; assistant turns are role `model`."""
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        payload: dict[str, Any] = {"contents": _contents(request.messages)}
        if system:
            payload["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.stop:
            config["stopSequences"] = list(request.stop)
        if request.extras is not None:
            unsupported(request, self.name, LACKS, stream=stream)
            _extras(request.extras, payload, config)
        if config:
            payload["generationConfig"] = config
        if stream:
            url = self._model_url(request.model, "streamGenerateContent") + "?alt=sse"
            headers = {**self._headers, "accept": "text/event-stream"}
        else:
            url, headers = self._model_url(request.model, "generateContent"), self._headers
        return Wire(url, headers, dumps(payload))

    def _blocked(self, data: dict[str, Any]) -> None:
        reason = (data.get("promptFeedback") or {}).get("blockReason")
        if reason and not data.get("candidates"):
            raise ContentFiltered(f"{self.name}: prompt blocked ({reason})", provider=self.name)

    def read_answer(self, data: Any, request: ChatRequest) -> Answer:
        """The first candidate's text and function calls, finish reason and
        `usageMetadata`; the other candidates of candidateCount > 1."""
        self._blocked(data)
        response_id = str(data.get("responseId") or "")
        candidates = sorted(data["candidates"], key=lambda c: c.get("index", 0))
        candidate = candidates[0]
        text, calls = _candidate(candidate, response_id)
        finish = "tool_calls" if calls else FINISH.get(str(candidate.get("finishReason")), "other")
        if finish == "content_filter" and not text:
            raise ContentFiltered(
                f"{self.name}: answer blocked ({candidate.get('finishReason')})",
                provider=self.name,
            )
        more = []
        for other in candidates[1:]:
            other_text, other_calls = _candidate(other, response_id)
            other_finish = FINISH.get(str(other.get("finishReason")), "other")
            more.append(
                Choice(other_text, "tool_calls" if other_calls else other_finish, other_calls)
            )
        return Answer(
            text,
            finish,
            _usage(data.get("usageMetadata")),
            data.get("responseId"),
            calls,
            more=tuple(more),
        )

    def read_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """google.rpc status names the class; RetryInfo gives the wait."""
        data = loads_or_none(body)
        if isinstance(data, list) and data:
            data = data[0]  # some Google front ends wrap the error in a list
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            text = body[:200].decode("utf-8", "replace")
            cls = class_for_status(status)
            return make_error(cls, self.name, status, text, retry_after_seconds(headers))
        named = STATUSES.get(str(error.get("status")))
        if _reason(error) in KEY_REASONS:
            named = "auth"  # Google answers a bad key with 400 INVALID_ARGUMENT
        cls = ERROR_CLASSES[named] if named else class_for_status(status)
        wait = _retry_delay(error)
        if wait is None:
            wait = retry_after_seconds(headers)
        return make_error(cls, self.name, status, str(error.get("message") or ""), wait)

    async def read_stream(
        self, body: AsyncIterator[bytes]
    ) -> AsyncIterator[str | ToolCallDelta | StreamEnd]:
        """Each event is a GenerateContentResponse; the last carries finishReason and usage.
        A function call arrives whole: one delta with its id, name and arguments."""
        finish: FinishReason | None = None
        usage: Usage | None = None
        calls = 0
        async for event in self.sse_events(body):
            if not event.data:
                continue
            data = orjson.loads(event.data)
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                error = data["error"]
                named = STATUSES.get(str(error.get("status")), "server_error")
                raise make_error(
                    ERROR_CLASSES[named],
                    self.name,
                    int(error.get("code") or 200),
                    str(error.get("message") or "stream error"),
                )
            self._blocked(data)
            usage = _usage(data.get("usageMetadata")) or usage
            for candidate in data.get("candidates") or ():
                if candidate.get("index", 0) != 0:
                    continue
                for part in (candidate.get("content") or {}).get("parts") or ():
                    if part.get("text") and not part.get("thought"):
                        yield part["text"]
                    call = part.get("functionCall")
                    if isinstance(call, dict):
                        ident = call.get("id") or call_id(data.get("responseId"), 0, calls)
                        args = json_text(call.get("args") or {})
                        yield ToolCallDelta(calls, str(ident), str(call["name"]), args)
                        calls += 1
                if candidate.get("finishReason"):
                    finish = FINISH.get(str(candidate["finishReason"]), "other")
                    if calls and finish == "stop":
                        finish = "tool_calls"
        if finish is not None:
            yield StreamEnd(finish, usage)

    def embed_wires(self, request: EmbedRequest) -> list[Wire]:
        """`batchEmbedContents` with every input."""
        url = self._model_url(request.model, "batchEmbedContents")
        name = url.rsplit("/", 1)[-1].partition(":")[0]
        prefix = "tunedModels" if request.model.startswith("tunedModels/") else "models"
        body = gemini_body(request, f"{prefix}/{name}")
        return [Wire(url, self._headers, dumps(body))]

    def read_embeddings(self, data: Any, request: EmbedRequest) -> tuple[list[list[float]], int]:
        """`embeddings[].values` (Gemini counts no tokens here)."""
        return gemini_vectors(data), 0

    def models_wire(self) -> Wire:
        """`GET /v1beta/models`."""
        return Wire(f"{self._root}/models", self._headers, b"")
