"""Validate gateway answers against the official OpenAI OpenAPI description
(`../shared/openai-openapi.json`): its component schemas, $refs resolved, with the
OpenAPI-3.0 `nullable: true` flags read as allowing null."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

SPEC_ENV = "QG_OPENAI_OPENAPI"
CANDIDATES = (
    Path(__file__).resolve().parents[2] / "shared" / "openai-openapi.json",
    Path("/work/shared/openai-openapi.json"),
)


def _spec_path() -> Path | None:
    named = os.environ.get(SPEC_ENV)
    if named:
        return Path(named)
    return next((p for p in CANDIDATES if p.exists()), None)


def _nullable(node: Any) -> Any:
    """`nullable: true` (OpenAPI 3.0) as JSON Schema: the same schema or null."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _spec() -> dict[str, Any]:
    path = _spec_path()
    if path is None:
        pytest.skip("the OpenAI OpenAPI description is not here (set QG_OPENAI_OPENAPI)")
    return _nullable(json.loads(path.read_text()))  # type: ignore[no-any-return]


def validate(name: str, value: Any) -> None:
    """Raise jsonschema.ValidationError unless `value` is a valid `name` (a component)."""
    spec = _spec()
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    jsonschema.Draft202012Validator(schema).validate(value)


def validate_stream(raw: bytes) -> list[dict[str, Any]]:
    """Every `data:` event of an SSE body but `[DONE]`, each validated as a
    CreateChatCompletionStreamResponse (an error event as an ErrorResponse)."""
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.startswith("data: ") or block == "data: [DONE]":
            continue
        event = json.loads(block[6:])
        validate(
            "ErrorResponse" if "error" in event else "CreateChatCompletionStreamResponse", event
        )
        events.append(event)
    return events
