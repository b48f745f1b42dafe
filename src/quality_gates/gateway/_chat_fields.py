"""The Chat Completions request beyond plain text chat: tool definitions and tool history,
image parts, structured outputs, n, seed and the other sampling fields.

Each is validated here into the provider-neutral types (quality_gates.providers); whether
the route's provider can honour it is the adapter's decision (providers/_features.py). A
field this gateway does not carry at all is refused with a 400 naming it, unless
`gateway.lenient_fields` lists it; an unknown field is refused as OpenAI refuses one.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from quality_gates.providers import (
    Image,
    Message,
    MessageParts,
    RequestExtras,
    ResponseFormat,
    Role,
    Tool,
    ToolCall,
)

if TYPE_CHECKING:
    from quality_gates.gateway._wire import ApiError

# Fields the gateway reads in _wire.parse_request (the plain request).
PLAIN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "stream_options",
    }
)
# Fields read here.
EXTRA_FIELDS = frozenset(
    {
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "n",
        "seed",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
    }
)
# Fields that change nothing about the answer: metadata for the caller's own records.
NEUTRAL_FIELDS = frozenset({"user", "metadata", "store", "safety_identifier", "prompt_cache_key"})
# Fields of the OpenAI API this gateway does not carry to any provider (refused unless
# lenient), with what to use instead.
NOT_CARRIED = {
    "functions": "use tools",
    "function_call": "use tool_choice",
    "logit_bias": "no provider adapter carries it",
    "modalities": "text output only",
    "audio": "text output only",
    "prediction": "no provider adapter carries it",
    "reasoning_effort": "no provider adapter carries it",
    "service_tier": "no provider adapter carries it",
    "web_search_options": "no provider adapter carries it",
    "verbosity": "no provider adapter carries it",
}
ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_DATA_URL = re.compile(r"^data:(?P<type>image/[a-zA-Z0-9.+-]+);base64,(?P<data>.+)$", re.S)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_N = 8


def _bad(message: str, param: str | None = None) -> ApiError:
    from quality_gates.gateway._wire import _bad as bad  # one 400 shape (_wire imports us)

    return bad(message, param)


def _text_or_parts(value: Any, where: str, *, images: bool) -> tuple[str, tuple[Image, ...]]:
    if value is None:
        return "", ()
    if isinstance(value, str):
        return value, ()
    if not isinstance(value, list):
        raise _bad(f"{where} must be a string or a list of content parts", where)
    texts: list[str] = []
    found: list[Image] = []
    for j, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and images:
            found.append(_image(part.get("image_url"), f"{where}[{j}].image_url"))
        elif kind == "image_url":
            raise _bad(f"{where}[{j}]: image parts are only accepted in user messages", where)
        else:
            accepted = "text or image_url" if images else "text"
            raise _bad(f"{where}[{j}]: a content part of type {kind!r}; use {accepted}", where)
    return "".join(texts), tuple(found)


def _image(value: Any, where: str) -> Image:
    if not isinstance(value, dict) or not isinstance(value.get("url"), str):
        raise _bad(f"{where} must be an object with url", where)
    url, detail = value["url"], value.get("detail")
    if detail is not None and detail not in ("auto", "low", "high"):
        raise _bad(f"{where}.detail must be auto, low or high", where)
    match = _DATA_URL.match(url)
    if match is not None:
        if match["type"] not in IMAGE_TYPES:
            raise _bad(
                f"{where}: image type {match['type']} is not accepted; use "
                + ", ".join(IMAGE_TYPES),
                where,
            )
        return Image(media_type=match["type"], data=match["data"].strip(), detail=detail)
    if url.startswith(("http://", "https://")):
        return Image(url=url, detail=detail)
    raise _bad(f"{where}.url must be a data:image/...;base64, URL or an http(s) URL", where)


def _tool_calls(value: Any, where: str) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _bad(f"{where} must be a list of tool calls", where)
    calls = []
    for j, call in enumerate(value):
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(call.get("id"), str)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments", ""), str)
        ):
            raise _bad(
                f"{where}[{j}] must be {{id, type: function, function: {{name, arguments}}}}",
                where,
            )
        calls.append(ToolCall(call["id"], function["name"], function.get("arguments") or ""))
    return tuple(calls)


def rich_message(item: dict[str, Any], index: int) -> Message:
    """A message with tool calls, a tool result or image parts."""
    where = f"messages[{index}]"
    role: Role = ROLES[item["role"]]
    text, images = _text_or_parts(item.get("content"), f"{where}.content", images=role == "user")
    if role == "tool":
        call_id = item.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise _bad(f"{where}.tool_call_id is required for a tool message", where)
        return Message("tool", text, MessageParts(tool_call_id=call_id))
    if item.get("content") is None and role != "assistant":
        raise _bad(f"{where}.content is required for a {item['role']} message", where)
    calls = (
        _tool_calls(item.get("tool_calls"), f"{where}.tool_calls") if role == "assistant" else ()
    )
    name = item.get("name")
    parts = MessageParts(images, calls, name=name if isinstance(name, str) else None)
    return Message(role, text, parts)


def _tools(value: Any) -> tuple[Tool, ...]:
    if not isinstance(value, list) or not value:
        raise _bad("tools must be a non-empty list of {type: function, function}", "tools")
    tools = []
    for i, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _bad(f"tools[{i}].type must be function", "tools")
        if not isinstance(function, dict) or not _NAME.match(str(function.get("name", ""))):
            raise _bad(f"tools[{i}].function.name must be 1-64 letters, digits, _ or -", "tools")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _bad(f"tools[{i}].function.parameters must be a JSON Schema object", "tools")
        tools.append(
            Tool(
                function["name"],
                str(function.get("description") or ""),
                parameters,
                bool(function.get("strict")),
            )
        )
    return tuple(tools)


def _tool_choice(value: Any, tools: tuple[Tool, ...]) -> str | None:
    if value is None:
        return None
    if value in ("auto", "none", "required"):
        if value == "required" and not tools:
            raise _bad("tool_choice required needs tools", "tool_choice")
        return str(value)
    function = value.get("function") if isinstance(value, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise _bad(
            'tool_choice must be auto, none, required or {"type": "function", '
            '"function": {"name": ...}}',
            "tool_choice",
        )
    if name not in {t.name for t in tools}:
        raise _bad(f"tool_choice names {name!r}, which is not in tools", "tool_choice")
    return name


def _response_format(value: Any) -> ResponseFormat | None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _bad("response_format.json_schema needs a name and a schema", "response_format")
        schema = spec.get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise _bad("response_format.json_schema.schema must be an object", "response_format")
        return ResponseFormat("json_schema", spec["name"], schema, bool(spec.get("strict")))
    raise _bad("response_format.type must be text, json_object or json_schema", "response_format")


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{name} must be a number between {low:g} and {high:g}", name)
    if not low <= value <= high:
        raise _bad(f"{name} {value!r} is out of range: use {low:g} to {high:g}", name)
    return float(value)


def _int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{name} must be an integer from {low} to {high}, got {value!r}", name)
    return value


def parse_extras(body: dict[str, Any], lenient: frozenset[str]) -> RequestExtras | None:
    """The request's fields beyond plain chat (None when it has none that matter)."""
    for name in body:
        if name in PLAIN_FIELDS or name in EXTRA_FIELDS or name in NEUTRAL_FIELDS:
            continue
        if name in lenient:
            continue
        if name in NOT_CARRIED:
            raise _bad(f"{name} is not supported by this gateway: {NOT_CARRIED[name]}", name)
        raise _bad(f"Unrecognized request argument supplied: {name}", name)
    if not any(body.get(name) is not None for name in EXTRA_FIELDS):
        return None
    tools = _tools(body["tools"]) if body.get("tools") is not None else ()
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise _bad("parallel_tool_calls must be true or false", "parallel_tool_calls")
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise _bad("logprobs must be true or false", "logprobs")
    top_logprobs = _int(body, "top_logprobs", 0, 20)
    if top_logprobs is not None and not logprobs:
        raise _bad("top_logprobs needs logprobs: true", "top_logprobs")
    extras = RequestExtras(
        tools=tools,
        tool_choice=_tool_choice(body.get("tool_choice"), tools),
        parallel_tool_calls=parallel,
        response_format=_response_format(body["response_format"])
        if body.get("response_format") is not None
        else None,
        n=_int(body, "n", 1, MAX_N) or 1,
        seed=_int(body, "seed", -(2**63), 2**63 - 1),
        top_p=_number(body, "top_p", 0.0, 1.0),
        presence_penalty=_number(body, "presence_penalty", -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", -2.0, 2.0),
        logprobs=bool(logprobs),
        top_logprobs=top_logprobs,
        lenient=lenient,
    )
    if extras == RequestExtras(lenient=lenient):
        return None
    return extras
