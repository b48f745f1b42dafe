"""`POST /v1/messages`: the Anthropic Messages API as a way in, so the Anthropic SDK and
the tools built on it can point at the gateway.

A request is translated to a Chat Completions request and takes the chat path whole
(routing, failover, breakers, limits, cache, telemetry); the answer is translated back, a
stream event by event (message_start, content blocks with text_delta and input_json_delta,
message_delta with the stop reason and usage, message_stop). Errors come in Anthropic's
shape. The key may come as `x-api-key` (what the SDK sends) or as a bearer token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from quality_gates.gateway._wire import ApiError

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from quality_gates.gateway._app import GatewayApp

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}
# Fields of the Messages API the chat path carries (others are refused by name).
CARRIED = {
    "model",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "stream",
    "metadata",
}


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for block in value:
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _bad(f"{where}: only text blocks are accepted here", where)
            texts.append(str(block.get("text") or ""))
        return "".join(texts)
    raise _bad(f"{where} must be a string or a list of text blocks", where)


def _image(source: Any, where: str) -> dict[str, Any]:
    if isinstance(source, dict) and source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif isinstance(source, dict) and source.get("type") == "url":
        url = str(source.get("url"))
    else:
        raise _bad(f"{where}.source must be of type base64 or url", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _turn(role: str, content: Any, where: str) -> list[dict[str, Any]]:
    """One Anthropic turn as Chat Completions messages (tool results come first, each a
    `tool` message, as OpenAI wants them right after the assistant's calls)."""
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of blocks", where)
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        at = f"{where}.content.{j}"
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text") or "")})
        elif kind == "image" and role == "user":
            parts.append(_image(block.get("source"), at))
        elif kind == "tool_result" and role == "user":
            text = _text(block.get("content") or "", f"{at}.content")
            if block.get("is_error"):
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
        elif kind == "tool_use" and role == "assistant":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
        else:
            raise _bad(f"{at}: a {kind!r} block is not accepted in a {role} turn", at)
    if calls:
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        out.append({"role": "assistant", "content": text or None, "tool_calls": calls})
    elif parts:
        only_text = all(p["type"] == "text" for p in parts)
        joined = "".join(p["text"] for p in parts) if only_text else parts
        out.append({"role": role, "content": joined})
    return out


def _tool_choice(value: Any) -> tuple[Any, bool | None]:
    if not isinstance(value, dict):
        raise _bad("tool_choice must be an object with a type", "tool_choice")
    kind = value.get("type")
    parallel = False if value.get("disable_parallel_tool_use") else None
    if kind == "tool":
        return {"type": "function", "function": {"name": value.get("name")}}, parallel
    mapped = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))
    if mapped is None:
        raise _bad("tool_choice.type must be auto, any, tool or none", "tool_choice")
    return mapped, parallel


def to_chat(raw: bytes) -> tuple[bytes, bool]:
    """A Messages request as a Chat Completions body, and whether it streams."""
    try:
        body = orjson.loads(raw)
    except ValueError as exc:
        raise _bad(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    for name in body:
        if name not in CARRIED:
            raise _bad(f"{name}: not supported by this gateway's Messages API", name)
    if not isinstance(body.get("max_tokens"), int):
        raise _bad("max_tokens: Field required", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages: at least one message is required", "messages")
    chat: list[dict[str, Any]] = []
    if body.get("system"):
        chat.append({"role": "system", "content": _text(body["system"], "system")})
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise _bad(f"messages.{i}.role: must be user or assistant", f"messages.{i}.role")
        chat += _turn(role, message.get("content"), f"messages.{i}")
    out: dict[str, Any] = {
        "model": body.get("model"),
        "messages": chat,
        "max_tokens": body["max_tokens"],
    }
    for name, target in (("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(name) is not None:
            out[target] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    if body.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description") or "",
                    "parameters": t.get("input_schema") or {"type": "object"},
                },
            }
            for t in body["tools"]
            if isinstance(t, dict)
        ]
    if body.get("tool_choice") is not None:
        choice, parallel = _tool_choice(body["tool_choice"])
        out["tool_choice"] = choice
        if parallel is not None and body.get("tools"):
            out["parallel_tool_calls"] = parallel
    stream = bool(body.get("stream"))
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return orjson.dumps(out), stream


def _input(arguments: str) -> Any:
    try:
        value = orjson.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def to_message(body: bytes) -> bytes:
    """A `chat.completion` as an Anthropic `message`."""
    data = orjson.loads(body)
    choice = data["choices"][0]
    message = choice["message"]
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        function = call["function"]
        content.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": function["name"],
                "input": _input(function.get("arguments") or ""),
            }
        )
    usage = data.get("usage") or {}
    return orjson.dumps(
        {
            "id": "msg_" + str(data["id"]).rpartition("-")[2],
            "type": "message",
            "role": "assistant",
            "model": data["model"],
            "content": content,
            "stop_reason": STOP_REASONS.get(choice.get("finish_reason"), "end_turn"),
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
                "cache_read_input_tokens": (usage.get("prompt_tokens_details") or {}).get(
                    "cached_tokens", 0
                ),
            },
        }
    )


def error_body(exc: ApiError) -> bytes:
    """An ApiError in Anthropic's error shape."""
    kind = ERROR_TYPES.get(
        exc.status, "api_error" if exc.status >= 500 else "invalid_request_error"
    )
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": exc.message}})


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class StreamTranslator:
    """OpenAI SSE chunks in, Anthropic stream events out (one translator per stream)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.started = False
        self.block = -1  # index of the open content block, -1 when none
        self.block_kind = ""
        self.stop_reason = "end_turn"
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        """Translate whatever whole events `data` completes."""
        self.buffer += data
        out = b""
        while b"\n\n" in self.buffer:
            event, self.buffer = self.buffer.split(b"\n\n", 1)
            if event.startswith(b"data: "):
                out += self._translate(event[6:])
        return out

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.block += 1
        self.block_kind = kind
        start = {"type": "content_block_start", "index": self.block, "content_block": block}
        return out + _event("content_block_start", start)

    def _close(self) -> bytes:
        if not self.block_kind:
            return b""
        self.block_kind = ""
        return _event("content_block_stop", {"type": "content_block_stop", "index": self.block})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        event = {"type": "content_block_delta", "index": self.block, "delta": delta}
        return _event("content_block_delta", event)

    def _end(self, usage: dict[str, Any]) -> bytes:
        if self.ended:
            return b""
        self.ended = True
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
            "usage": {
                "output_tokens": usage.get("completion_tokens", 0),
                "input_tokens": usage.get("prompt_tokens", 0),
            },
        }
        return (
            self._close()
            + _event("message_delta", delta)
            + _event("message_stop", {"type": "message_stop"})
        )

    def _translate(self, raw: bytes) -> bytes:
        if raw == b"[DONE]":
            return self._end({})
        chunk = orjson.loads(raw)
        if "error" in chunk:
            error = chunk["error"]
            payload = {"type": "error", "error": {"type": "api_error", "message": error["message"]}}
            return _event("error", payload)
        out = b""
        if not self.started:
            self.started = True
            message = {
                "id": "msg_" + str(chunk["id"]).rpartition("-")[2],
                "type": "message",
                "role": "assistant",
                "model": chunk["model"],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }
            out += _event("message_start", {"type": "message_start", "message": message})
        if chunk.get("usage"):
            return out + self._end(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self.block_kind != "text":
                    out += self._open("text", {"type": "text", "text": ""})
                out += self._delta({"type": "text_delta", "text": delta["content"]})
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                if call.get("id"):
                    block = {
                        "type": "tool_use",
                        "id": call["id"],
                        "name": function.get("name"),
                        "input": {},
                    }
                    out += self._open("tool_use", block)
                if function.get("arguments"):
                    piece = {"type": "input_json_delta", "partial_json": function["arguments"]}
                    out += self._delta(piece)
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
                out += self._close()
        return out


async def messages_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /v1/messages as a raw ASGI app (it relays the chat path's stream)."""
    from quality_gates.gateway._http import _checked_key, _read_body

    state: GatewayApp = scope["app"].state.gateway
    headers = {k.decode(): v.decode("latin-1") for k, v in scope["headers"]}
    api_key = headers.get("x-api-key")
    authorization = f"Bearer {api_key}" if api_key else headers.get("authorization")
    try:
        checked = _checked_key(state, authorization)
        if isinstance(checked, ApiError):
            raise checked
        raw = await _read_body(receive, state.settings.config.gateway.max_body_bytes)
        chat, stream = to_chat(raw)
        response = await state.gateway.chat(chat, checked)
    except ApiError as exc:
        await _send(send, exc.status, error_body(exc), "application/json", exc.headers())
        return
    if not stream:
        body = getattr(response, "body", b"")
        status = getattr(response, "status", 200)
        extra = dict(getattr(response, "headers", {}))
        await _send(send, status, to_message(body), "application/json", extra)
        return
    translator = StreamTranslator()

    async def relay(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":  # the length changes in translation
            kept = [(k, v) for k, v in message.get("headers", ()) if k != b"content-length"]
            await send({**message, "headers": kept})
            return
        if message["type"] == "http.response.body":
            out = translator.feed(message.get("body", b""))
            await send({**message, "body": out})
            return
        await send(message)

    await response(scope, receive, relay)


async def _send(
    send: Send, status: int, body: bytes, media_type: str, headers: dict[str, str]
) -> None:
    raw = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class MessagesEndpoint:
    """The ASGI endpoint Starlette mounts at /v1/messages."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await messages_endpoint(scope, receive, send)
