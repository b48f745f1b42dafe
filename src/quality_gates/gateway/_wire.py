"""The OpenAI Chat Completions wire format: request validation, responses, SSE chunks, errors.

Bad input becomes an ApiError (4xx) naming the field and what would be accepted, in the
OpenAI error shape `{"error": {"message", "type", "param", "code"}}`; it never becomes a 5xx.
Plain text chat is read here; tools, tool history, images, structured outputs, n and the
other sampling fields in _chat_fields.py. Nothing is accepted and ignored in silence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from quality_gates.gateway._chat_fields import (
    PLAIN_FIELDS,
    ROLES,
    _number,
    parse_extras,
    rich_message,
)
from quality_gates.providers import Message, RequestExtras

MAX_STOP = 4
FINISH_REASONS = {"stop", "length", "content_filter", "tool_calls"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    """An answer other than 200, in the OpenAI error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
        error_class: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type or ERROR_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        self.retry_after = retry_after
        self.error_class = error_class

    def body(self) -> bytes:
        """The JSON body."""
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.error_type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )

    def headers(self) -> dict[str, str]:
        """Retry-After when known."""
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, math.ceil(self.retry_after)))}


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value" if param else None)


@dataclass(slots=True)  # built on every request: slots cost less than frozen
class CompletionRequest:
    """A validated chat completion request."""

    model: str
    messages: tuple[Message, ...]
    stream: bool = False
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    include_usage: bool = False
    extras: RequestExtras | None = None
    rich: bool = False  # some message carries tool calls, a tool result or images

    def prompt_chars(self) -> int:
        """Characters of all messages (for the token estimate of rate limits)."""
        return sum(len(m.content) for m in self.messages)

    def prompt_text(self) -> str:
        """What the client said: its user messages, newest last."""
        return "\n".join(m.content for m in self.messages if m.role == "user")


def _content(value: Any, index: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for j, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _bad(
                    f"messages[{index}].content[{j}]: only text parts are supported "
                    '({"type": "text", "text": "..."})',
                    f"messages[{index}].content",
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad(
                    f"messages[{index}].content[{j}].text must be a string",
                    f"messages[{index}].content",
                )
            parts.append(text)
        return "".join(parts)
    raise _bad(
        f"messages[{index}].content must be a string or a list of text parts",
        f"messages[{index}].content",
    )


MAX_OUTPUT_TOKENS = 1_000_000  # far above any model's output limit


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(f"{name} must be a positive integer, got {value!r}", name)
    if value > MAX_OUTPUT_TOKENS:
        # Else it reaches the token quota as an estimate and comes back 429, which clients
        # retry for ever: it is a bad request, not a busy gateway.
        raise _bad(f"{name} must be at most {MAX_OUTPUT_TOKENS:,}, got {value:,}", name)
    return value


def parse_request(raw: bytes, lenient: frozenset[str] = frozenset()) -> CompletionRequest:
    """Validate a request body; ApiError 400 names the first problem found. `lenient`
    names fields to ignore where the route cannot honour them (gateway.lenient_fields)."""
    try:
        body = orjson.loads(raw)
    except ValueError as exc:  # orjson.JSONDecodeError, also for bytes that are not UTF-8
        raise _bad(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object with model and messages")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("model is required: an alias such as current, or a model id", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list of {role, content}", "messages")
    parsed = []
    rich = False
    for i, item in enumerate(messages):
        if not isinstance(item, dict):
            raise _bad(f"messages[{i}] must be an object with role and content", "messages")
        role = item.get("role")
        if role not in ROLES:
            raise _bad(
                f"messages[{i}].role {role!r} is not supported: use system, developer, user, "
                "assistant or tool",
                f"messages[{i}].role",
            )
        content = item.get("content")
        if isinstance(content, str) and role != "tool" and "tool_calls" not in item:
            parsed.append(Message(ROLES[role], content))
        elif role == "tool" or item.get("tool_calls") or not _text_parts(content):
            parsed.append(rich_message(item, i))
            rich = True
        else:
            parsed.append(Message(ROLES[role], _content(content, i)))
    extras = None if body.keys() <= PLAIN_FIELDS else parse_extras(body, lenient)
    if extras is None and rich and any(image.url for m in parsed for image in m.images):
        extras = RequestExtras(lenient=lenient)  # the adapter decides on image URLs
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("stream must be true or false", "stream")
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= MAX_STOP:
        stops = tuple(stop)
    else:
        raise _bad(f"stop must be a string or a list of up to {MAX_STOP} strings", "stop")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("stream_options must be an object", "stream_options")
        include_usage = bool(options.get("include_usage"))
    max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    return CompletionRequest(
        model=model.strip(),
        messages=tuple(parsed),
        stream=stream,
        temperature=_number(body, "temperature", 0.0, 2.0),
        max_tokens=max_tokens,
        stop=stops,
        include_usage=include_usage,
        extras=extras,
        rich=rich,
    )


def _text_parts(content: Any) -> bool:
    """Content that plain text chat can read: a list of text parts only."""
    return isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" for p in content
    )


def finish_reason(value: str | None) -> str:
    """The provider-neutral finish reason as OpenAI names it."""
    return value if value in FINISH_REASONS else "stop"


def completion_body(
    request_id: str,
    created: int,
    model: str,
    text: str,
    finish: str | None,
    input_tokens: int,
    output_tokens: int,
) -> bytes:
    """A `chat.completion` object."""
    return orjson.dumps(
        {
            "id": request_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": finish_reason(finish),
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
        }
    )


def chunk_event(
    request_id: str,
    created: int,
    model: str,
    *,
    content: str | None = None,
    role: bool = False,
    finish: str | None = None,
    usage: tuple[int, int] | None = None,
) -> bytes:
    """One SSE `chat.completion.chunk` event."""
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    payload: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if usage is not None
        else [
            {
                "index": 0,
                "delta": delta,
                "finish_reason": finish_reason(finish) if finish else None,
                "logprobs": None,
            }
        ],
    }
    if usage is not None:
        payload["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def content_event_frame(request_id: str, created: int, model: str) -> tuple[bytes, bytes]:
    """(head, tail) of a stream's text chunks: `head + orjson.dumps(text) + tail` is
    `chunk_event(..., content=text)`, with the fixed part encoded once per stream."""
    prefix = orjson.dumps(
        {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model}
    )
    head = b"data: " + prefix[:-1] + b',"choices":[{"index":0,"delta":{"content":'
    return head, b'},"finish_reason":null,"logprobs":null}]}\n\n'


def error_event(message: str, error_class: str, status: int = 502) -> bytes:
    """The SSE event that ends a stream broken after its first byte (never a clean finish)."""
    return (
        b"data: "
        + orjson.dumps(
            {
                "error": {
                    "message": message,
                    "type": "server_error",
                    "param": None,
                    "code": error_class,
                    "status": status,
                }
            }
        )
        + b"\n\n"
    )


DONE_EVENT = b"data: [DONE]\n\n"


class Answer:
    """A complete HTTP answer sent straight as ASGI messages (a framework Response object
    costs more to build than the whole JSON body on this path)."""

    __slots__ = ("body", "headers", "media_type", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        media_type: str = "application/json",
    ) -> None:
        self.status, self.body, self.headers, self.media_type = (
            status,
            body,
            headers or {},
            media_type,
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raw = [
            (b"content-type", self.media_type.encode()),
            (b"content-length", str(len(self.body)).encode()),
        ]
        raw += [(k.encode(), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": self.body})


def error_answer(exc: ApiError) -> Answer:
    """The answer for an ApiError."""
    return Answer(exc.status, exc.body(), exc.headers())
