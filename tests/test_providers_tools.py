"""Each adapter's translation of tools, tool history, images, structured outputs and usage
details into and out of its provider's wire format (the shapes in each provider's API
reference), without a network: the request body an adapter builds and the answer it reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.simulators import adapter

from quality_gates.errors import BadRequest
from quality_gates.providers import (
    ChatRequest,
    Image,
    Message,
    MessageParts,
    RequestExtras,
    ResponseFormat,
    Tool,
    ToolCall,
)

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
HISTORY = (
    Message("system", "Be brief."),
    Message("user", "Weather in Oslo?", MessageParts(images=(Image("image/png", "AAAA"),))),
    Message(
        "assistant",
        "",
        MessageParts(tool_calls=(ToolCall("call_1", "weather", '{"city":"Oslo"}'),)),
    ),
    Message("tool", '{"high_c": 4}', MessageParts(tool_call_id="call_1")),
)
EXTRAS = RequestExtras(tools=(Tool("weather", "The weather", SCHEMA),), tool_choice="required")


def body(protocol: str, extras: RequestExtras | None = EXTRAS, stream: bool = False) -> Any:
    provider = adapter(protocol, "http://127.0.0.1:9")
    request = ChatRequest(model="m", messages=HISTORY, extras=extras)
    return json.loads(provider.build(request, stream=stream).body)


def test_bedrock_converse_tool_config_tool_use_and_tool_result() -> None:
    sent = body("bedrock")
    assert sent["system"] == [{"text": "Be brief."}]
    assert sent["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "weather",
                    "description": "The weather",
                    "inputSchema": {"json": SCHEMA},
                }
            }
        ],
        "toolChoice": {"any": {}},
    }
    user, assistant, result = sent["messages"]
    assert user["content"][1] == {"image": {"format": "png", "source": {"bytes": "AAAA"}}}
    assert assistant["content"] == [
        {"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Oslo"}}}
    ]
    assert result == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": '{"high_c": 4}'}]}}
        ],
    }


def test_gemini_function_declarations_calls_and_responses() -> None:
    sent = body("gemini", RequestExtras(tools=EXTRAS.tools, tool_choice="weather", n=2, seed=3))
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {"name": "weather", "description": "The weather", "parametersJsonSchema": SCHEMA}
            ]
        }
    ]
    assert sent["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}
    }
    assert sent["generationConfig"] == {"candidateCount": 2, "seed": 3}
    user, model, result = sent["contents"]
    assert user["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
    assert model == {
        "role": "model",
        "parts": [{"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}],
    }
    assert result == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "weather", "response": {"high_c": 4}}}],
    }
    structured = body(
        "gemini", RequestExtras(response_format=ResponseFormat("json_schema", "r", SCHEMA))
    )
    assert structured["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": SCHEMA,
    }


def test_anthropic_tools_tool_use_tool_result_and_json_by_a_forced_tool() -> None:
    sent = body("anthropic")
    assert sent["system"] == "Be brief."
    assert sent["tools"] == [
        {"name": "weather", "description": "The weather", "input_schema": SCHEMA}
    ]
    assert sent["tool_choice"] == {"type": "any"}
    user, assistant, result = sent["messages"]
    assert user["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert assistant["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}}
    ]
    assert result["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": '{"high_c": 4}'}
    ]
    structured = body("anthropic", RequestExtras(response_format=ResponseFormat("json_object")))
    assert structured["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert structured["tools"][0]["input_schema"] == {"type": "object"}


def test_openai_compatible_passes_the_request_through() -> None:
    sent = body("openai", RequestExtras(tools=EXTRAS.tools, parallel_tool_calls=False, top_p=0.5))
    assert sent["tools"][0] == {
        "type": "function",
        "function": {"name": "weather", "description": "The weather", "parameters": SCHEMA},
    }
    assert sent["parallel_tool_calls"] is False
    assert sent["top_p"] == 0.5
    assert sent["messages"][2]["tool_calls"][0]["function"] == {
        "name": "weather",
        "arguments": '{"city":"Oslo"}',
    }
    assert sent["messages"][3] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"high_c": 4}',
    }


@pytest.mark.parametrize(
    ("protocol", "field"),
    [
        ("bedrock", "seed"),
        ("anthropic", "n"),
        ("anthropic", "presence_penalty"),
        ("gemini", "logprobs"),
    ],
)
def test_a_field_the_protocol_lacks_is_refused_by_name(protocol: str, field: str) -> None:
    value: Any = {"n": 2, "logprobs": True}.get(field, 1)
    with pytest.raises(BadRequest, match=f"{field} is not supported by provider {protocol}"):
        body(protocol, RequestExtras(**{field: value}))
    lenient = RequestExtras(**{field: value}, lenient=frozenset({field}))
    sent = body(protocol, lenient)
    names = {"n": ("n", "candidateCount"), "logprobs": ("logprobs", "responseLogprobs")}
    for name in names.get(field, (field,)):
        assert name not in sent
        assert name not in sent.get("generationConfig", {})
        assert name not in sent.get("inferenceConfig", {})


@pytest.mark.parametrize(
    ("protocol", "answer", "cached", "reasoning"),
    [
        (
            "openai",
            {
                "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 100,
                    "completion_tokens": 20,
                    "prompt_tokens_details": {"cached_tokens": 64},
                    "completion_tokens_details": {"reasoning_tokens": 12},
                },
            },
            64,
            12,
        ),
        (
            "anthropic",
            {
                "content": [{"type": "text", "text": "hi"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 36, "output_tokens": 20, "cache_read_input_tokens": 64},
            },
            64,
            0,
        ),
        (
            "bedrock",
            {
                "output": {"message": {"content": [{"text": "hi"}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 36, "outputTokens": 20, "cacheReadInputTokens": 64},
            },
            64,
            0,
        ),
        (
            "gemini",
            {
                "candidates": [{"content": {"parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
                "usageMetadata": {
                    "promptTokenCount": 100,
                    "candidatesTokenCount": 8,
                    "thoughtsTokenCount": 12,
                    "cachedContentTokenCount": 64,
                },
            },
            64,
            12,
        ),
    ],
)
def test_usage_counts_cached_and_reasoning_tokens(
    protocol: str, answer: Any, cached: int, reasoning: int
) -> None:
    provider = adapter(protocol, "http://127.0.0.1:9")
    read = provider.read_answer(answer, ChatRequest(model="m", messages=HISTORY[:2]))
    assert read.usage is not None
    assert (read.usage.input_tokens, read.usage.output_tokens) == (100, 20)
    assert (read.usage.cached_tokens, read.usage.reasoning_tokens) == (cached, reasoning)
