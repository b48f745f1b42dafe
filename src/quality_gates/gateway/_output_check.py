"""Is the answer usable as the structured output the request asked for?

A request that offers `tools` or asks for `response_format` JSON gets an answer an
application parses; an answer it cannot parse is a quality failure even with HTTP 200. Each
such answer from a provider is classified once, when its record closes:

    valid                    every tool call and the JSON text check out
    tool_arguments_not_json  a tool call's arguments are not a JSON object
    tool_arguments_schema    a tool call's arguments break that tool's `parameters` schema
    unknown_tool             a call names a function the request did not offer
    tool_call_missing        `tool_choice` required a call (or named one) and none came
    output_not_json          json_object / json_schema asked, the text is not a JSON object
    output_schema            json_schema asked, the JSON breaks the schema

Nothing to classify (None): plain requests, cached answers, answers cut by the client's
`max_tokens` (finish `length`) or by a content filter. Schemas are checked with
`jsonschema` (the validator the offline `json_schema` scorer uses, so the gate and the
watch agree); it is imported by a thread at start-up (`warm`), never on the event loop,
and its validators are kept per schema text. The classification counts into the roll-ups
(`invalid_output_rate`), Prometheus and the request row (`output_check`).
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Sequence
from typing import Any

import orjson

from quality_gates.providers import ChatResponse, RequestExtras, ToolCall, ToolCallDelta

VALID = "valid"
UNCHECKED_FINISH = frozenset({"length", "content_filter", "error"})
MAX_VALIDATORS = 512  # schemas kept compiled; past it the cache starts over
_validators: dict[bytes, Any] = {}  # schema text -> validator (None: a schema it cannot read)
_BAD = object()  # text that is not JSON at all
_UNKNOWN = object()


def warm() -> None:
    """Import jsonschema in a thread (≈0.2 s of imports that must not stall the loop)."""
    if "jsonschema" not in sys.modules:
        threading.Thread(
            target=importlib.import_module, args=("jsonschema",), name="qg-jsonschema", daemon=True
        ).start()


def wants_check(extras: RequestExtras | None) -> bool:
    """True when the request asks for structured output (tools or JSON)."""
    return extras is not None and (bool(extras.tools) or extras.response_format is not None)


def check_output(
    extras: RequestExtras | None,
    text: str,
    tool_calls: Sequence[ToolCall],
    finish_reason: str | None,
) -> str | None:
    """`valid`, the first reason the answer is unusable (see the module docstring), or None
    when there is nothing to classify."""
    if extras is None or not wants_check(extras) or finish_reason in UNCHECKED_FINISH:
        return None
    if tool_calls:
        offered = {tool.name: tool for tool in extras.tools}
        for call in tool_calls:
            tool = offered.get(call.name)
            if tool is None:
                return "unknown_tool"
            arguments = _parse(call.arguments)
            if not isinstance(arguments, dict):
                return "tool_arguments_not_json"
            if tool.parameters and not _valid(tool.parameters, arguments):
                return "tool_arguments_schema"
        return VALID
    choice = extras.tool_choice
    if extras.tools and choice not in (None, "auto", "none"):
        return "tool_call_missing"
    form = extras.response_format
    if form is None:
        return None  # tools offered, the model answered in prose: nothing structured
    value = _parse(text)
    if value is _BAD or (form.type == "json_object" and not isinstance(value, dict)):
        return "output_not_json"
    if form.type == "json_schema" and form.schema and not _valid(form.schema, value):
        return "output_schema"
    return VALID


def is_invalid(verdict: str | None) -> bool:
    """True for a verdict that counts in `invalid_output_rate`'s numerator."""
    return verdict is not None and verdict != VALID


def _parse(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _BAD


def _valid(schema: dict[str, Any], value: Any) -> bool:
    key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    validator = _validators.get(key, _UNKNOWN)
    if validator is _UNKNOWN:
        import jsonschema  # normally already imported by `warm`'s thread

        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
            validator = cls(schema)
        except jsonschema.SchemaError:
            validator = None  # a schema the validator cannot read judges nothing
        if len(_validators) >= MAX_VALIDATORS:
            _validators.clear()
        _validators[key] = validator
    return validator is None or bool(validator.is_valid(value))


def check_answer(extras: RequestExtras | None, response: ChatResponse) -> str | None:
    """`check_output` over every choice of a complete answer: the first unusable one
    decides, else `valid` when any choice was checked."""
    verdict = check_output(extras, response.text, response.tool_calls, response.finish_reason)
    for choice in response.more:
        if is_invalid(verdict):
            break
        verdict = (
            check_output(extras, choice.text, choice.tool_calls, choice.finish_reason) or verdict
        )
    return verdict


def streamed_calls(deltas: Sequence[ToolCallDelta]) -> list[ToolCall]:
    """The tool calls a stream's deltas add up to, in index order."""
    calls: dict[int, list[str]] = {}
    for delta in deltas:
        call = calls.setdefault(delta.index, ["", "", ""])
        if delta.id:
            call[0] = delta.id
        if delta.name:
            call[1] = delta.name
        call[2] += delta.arguments
    return [ToolCall(*calls[index]) for index in sorted(calls)]


def answer_with_calls(text: str, tool_calls: Sequence[ToolCall]) -> str:
    """The answer as the live sampler scores it: its text, then one `name(arguments)` line
    per tool call (an answer that is only tool calls is not an empty answer)."""
    if not tool_calls:
        return text
    calls = "\n".join(f"{call.name}({call.arguments})" for call in tool_calls)
    return f"{text}\n{calls}" if text else calls
