"""What a provider can honour of a request beyond plain chat, and the pieces of translation
every protocol shares (tool-call ids, image sources, the JSON-by-tool fallback).

Nothing is dropped in silence: a field a protocol cannot carry is refused with a
BadRequest naming the field and the provider, unless the request lists it as lenient
(`gateway.lenient_fields`), in which case the adapter leaves it out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

from quality_gates.errors import BadRequest
from quality_gates.providers._types import ChatRequest, Image, RequestExtras, ToolCall

# Fields of RequestExtras an adapter may or may not carry (plus image URLs, a property of
# the messages).
FEATURES = (
    "tools",
    "response_format",
    "n",
    "seed",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "image_url",
)
# The function a JSON answer is asked for through, where a protocol has no JSON mode.
JSON_TOOL = "json_response"


def refusal(provider: str, field: str, why: str) -> BadRequest:
    """The 400 for a field `provider` cannot honour."""
    return BadRequest(
        f"{field} is not supported by provider {provider}: {why} (leave it out, route the "
        f"request to a model that supports it, or list {field} in gateway.lenient_fields "
        "to have it ignored)",
        provider=provider,
        status=400,
    )


def used(extras: RequestExtras, messages: Iterable[Any] = ()) -> list[str]:
    """The FEATURES a request uses."""
    out = []
    if extras.tools:
        out.append("tools")
    if extras.response_format is not None:
        out.append("response_format")
    if extras.n != 1:
        out.append("n")
    for name in ("seed", "top_p", "presence_penalty", "frequency_penalty"):
        if getattr(extras, name) is not None:
            out.append(name)
    if extras.logprobs:
        out.append("logprobs")
    if any(image.url for m in messages for image in m.images):
        out.append("image_url")
    return out


def unsupported(
    request: ChatRequest, provider: str, lacks: dict[str, str], *, stream: bool = False
) -> frozenset[str]:
    """The fields to leave out of `request` (lenient ones `provider` cannot carry); raises
    the refusal for the first other one. `lacks` maps each feature the protocol lacks to
    why."""
    extras = request.extras
    if extras is None:
        return frozenset()
    dropped = set()
    for feature in used(extras, request.messages):
        why = lacks.get(feature)
        if why is None and stream and feature in ("n", "logprobs"):
            if feature in extras.lenient:
                dropped.add(feature)
                continue
            raise BadRequest(
                f"{feature} with stream: true is not supported by this gateway (whichever "
                "provider serves it): ask without stream, or leave the field out",
                provider=provider,
                status=400,
            )
        if why is None:
            continue
        if feature in extras.lenient and feature != "image_url":  # an image is never dropped
            dropped.add(feature)
            continue
        raise refusal(provider, feature, why)
    return frozenset(dropped)


def call_id(*parts: object) -> str:
    """A stable tool-call id for protocols that give none (Gemini)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=12).hexdigest()
    return f"call_{digest}"


def arguments_object(call: ToolCall) -> Any:
    """A tool call's arguments as JSON (protocols that carry objects, not text); text that
    is not a JSON object is kept under `_raw` rather than lost."""
    try:
        value = orjson.loads(call.arguments or "{}")
    except ValueError:
        return {"_raw": call.arguments}
    return value if isinstance(value, dict) else {"_raw": call.arguments}


def tool_result_object(text: str) -> Any:
    """A tool message's content as the JSON object protocols want for function results."""
    try:
        value = orjson.loads(text)
    except ValueError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def image_format(image: Image) -> str:
    """`png` from `image/png` (Bedrock's image block format)."""
    return image.media_type.partition("/")[2].lower().replace("jpg", "jpeg")


def json_tool_schema(extras: RequestExtras) -> dict[str, Any] | None:
    """The input schema of the JSON_TOOL for a JSON response format (None if none asked)."""
    fmt = extras.response_format
    if fmt is None:
        return None
    if fmt.type == "json_schema" and fmt.schema is not None:
        return fmt.schema
    return {"type": "object"}


def merged(turns: list[tuple[str, list[Any]]]) -> list[tuple[str, list[Any]]]:
    """Consecutive turns of one role joined (protocols that want roles to alternate, where
    tool results travel in user turns)."""
    out: list[tuple[str, list[Any]]] = []
    for role, blocks in turns:
        if out and out[-1][0] == role:
            out[-1][1].extend(blocks)
        else:
            out.append((role, list(blocks)))
    return out


def json_text(value: Any) -> str:
    """Compact JSON text (tool-call arguments from protocols that send objects)."""
    return orjson.dumps(value).decode()


class ToolIndex:
    """Stream positions of tool calls: a protocol's content-block index (or a running
    count) to the 0-based OpenAI `tool_calls[].index`, stable for the whole stream."""

    def __init__(self) -> None:
        self._by_block: dict[int, int] = {}

    def open(self, block: int) -> int:
        """The index of a tool call starting at `block`."""
        return self._by_block.setdefault(block, len(self._by_block))

    def get(self, block: int) -> int | None:
        """The index of the tool call at `block`, if one started there."""
        return self._by_block.get(block)
