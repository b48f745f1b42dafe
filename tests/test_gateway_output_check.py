"""The structured-output verdict of an answer: tool calls and JSON checked against what the
request offered and asked for."""

from __future__ import annotations

import pytest

from quality_gates.gateway._output_check import (
    answer_with_calls,
    check_answer,
    check_output,
    is_invalid,
    streamed_calls,
)
from quality_gates.providers import (
    ChatResponse,
    Choice,
    RequestExtras,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

WEATHER = Tool(
    "get_weather",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
TOOLS = RequestExtras(tools=(WEATHER,))
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}
SCHEMA = RequestExtras(response_format=ResponseFormat("json_schema", "person", PERSON))
JSON_OBJECT = RequestExtras(response_format=ResponseFormat("json_object"))


def call(arguments: str, name: str = "get_weather") -> ToolCall:
    return ToolCall("call_1", name, arguments)


@pytest.mark.parametrize(
    ("arguments", "verdict"),
    [
        ('{"city": "Paris", "days": 3}', "valid"),
        ('{"city": "Par', "tool_arguments_not_json"),  # cut off, as the simulator's fault
        ('["Paris"]', "tool_arguments_not_json"),
        ('{"days": 3}', "tool_arguments_schema"),  # required city missing
        ('{"city": "Paris", "days": "three"}', "tool_arguments_schema"),
        ('{"city": "Paris", "units": "C"}', "tool_arguments_schema"),  # no extra properties
    ],
)
def test_tool_call_arguments_are_checked_against_the_tools_schema(
    arguments: str, verdict: str
) -> None:
    assert check_output(TOOLS, "", [call(arguments)], "tool_calls") == verdict


def test_a_call_to_a_function_not_offered_is_unusable() -> None:
    assert check_output(TOOLS, "", [call("{}", "delete_all")], "tool_calls") == "unknown_tool"


def test_one_bad_call_of_several_makes_the_answer_unusable() -> None:
    calls = [call('{"city": "Oslo"}'), call('{"city": ')]
    assert check_output(TOOLS, "", calls, "tool_calls") == "tool_arguments_not_json"


def test_a_required_call_that_did_not_come_is_unusable_but_prose_to_auto_is_fine() -> None:
    required = RequestExtras(tools=(WEATHER,), tool_choice="required")
    named = RequestExtras(tools=(WEATHER,), tool_choice="get_weather")
    assert check_output(required, "It is sunny.", [], "stop") == "tool_call_missing"
    assert check_output(named, "It is sunny.", [], "stop") == "tool_call_missing"
    assert check_output(TOOLS, "It is sunny.", [], "stop") is None


@pytest.mark.parametrize(
    ("extras", "text", "verdict"),
    [
        (SCHEMA, '{"name": "Ada", "age": 36}', "valid"),
        (SCHEMA, '{"name": "Ada"}', "output_schema"),
        (SCHEMA, '["not", "an", "object"]', "output_schema"),
        (SCHEMA, "Sure! Here is the JSON: {", "output_not_json"),
        (JSON_OBJECT, '{"anything": [1, 2]}', "valid"),
        (JSON_OBJECT, "[1, 2]", "output_not_json"),
        (JSON_OBJECT, "plain prose", "output_not_json"),
    ],
)
def test_json_answers_are_checked_against_the_response_format(
    extras: RequestExtras, text: str, verdict: str
) -> None:
    assert check_output(extras, text, [], "stop") == verdict


def test_nothing_to_check_on_plain_requests_and_cut_answers() -> None:
    assert check_output(None, "hello", [], "stop") is None
    assert check_output(RequestExtras(seed=3), "hello", [], "stop") is None
    # The client's max_tokens cut it, a filter stopped it: not the model's output to judge.
    assert check_output(SCHEMA, '{"name": "A', [], "length") is None
    assert check_output(SCHEMA, "", [], "content_filter") is None


def test_every_choice_of_an_n_answer_is_checked() -> None:
    response = ChatResponse(
        text='{"name": "Ada", "age": 36}', finish_reason="stop", usage=Usage(),
        latency_ms=1.0, ttft_ms=1.0, provider="p", model="m",
        more=(Choice('{"name": "Bob"}', "stop"),),
    )  # fmt: skip
    assert check_answer(SCHEMA, response) == "output_schema"
    response.more = (Choice('{"name": "Bob", "age": 7}', "stop"),)
    assert check_answer(SCHEMA, response) == "valid"


def test_streamed_deltas_add_up_to_the_calls_in_index_order() -> None:
    deltas = [
        ToolCallDelta(1, "call_b", "get_weather", '{"ci'),
        ToolCallDelta(0, "call_a", "get_weather", ""),
        ToolCallDelta(0, arguments='{"city": "Rome"}'),
        ToolCallDelta(1, arguments='ty": "Lima"}'),
    ]
    calls = streamed_calls(deltas)
    assert calls == [
        ToolCall("call_a", "get_weather", '{"city": "Rome"}'),
        ToolCall("call_b", "get_weather", '{"city": "Lima"}'),
    ]
    assert check_output(TOOLS, "", calls, "tool_calls") == "valid"


def test_only_reasons_count_as_invalid() -> None:
    assert is_invalid("tool_arguments_schema")
    assert not is_invalid("valid")
    assert not is_invalid(None)


def test_an_answer_of_only_tool_calls_reads_as_its_calls() -> None:
    calls = [call('{"city": "Paris"}')]
    assert answer_with_calls("", calls) == 'get_weather({"city": "Paris"})'
    assert answer_with_calls("Checking.", calls) == 'Checking.\nget_weather({"city": "Paris"})'
    assert answer_with_calls("Hi", []) == "Hi"


def test_a_schema_the_validator_cannot_read_judges_nothing() -> None:
    broken = RequestExtras(tools=(Tool("f", parameters={"type": "no-such-type"}),))
    for _ in range(2):  # the second time from the cache
        assert check_output(broken, "", [call("{}", "f")], "tool_calls") == "valid"
    assert check_output(broken, "", [call("[1]", "f")], "tool_calls") == "tool_arguments_not_json"
