"""Structured answers of the simulated model: tool calls and JSON that fits a schema, both
fixed by the seed, the model and the conversation, with a configurable share broken as a
quality fault (cut-off tool arguments, JSON that breaks its schema); and embeddings of a
fixed dimension."""

from __future__ import annotations

import json
import math
from typing import Any

from quality_gates.simulator._answers import unit_hash

_WORDS = ("alpha", "bravo", "delta", "echo", "kilo", "lima", "oscar", "sierra", "tango")
MAX_DEPTH = 6


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _resolve(target, root)
    return schema


def instance(schema: Any, key: str, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value valid against `schema` (the JSON Schema subset tool and response schemas
    use: types, properties, required, items, enum, const, anyOf/oneOf, $ref to $defs),
    the same for the same `key`."""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return {}
    u = unit_hash(key)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][int(u * len(schema["enum"]))]
    for union in ("anyOf", "oneOf"):
        options = [o for o in schema.get(union) or () if _resolve(o, root).get("type") != "null"]
        if options:
            return instance(options[0], key + "|u", root, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        if depth >= MAX_DEPTH:
            return {}
        props = schema.get("properties") or {}
        return {
            name: instance(sub, f"{key}.{name}", root, depth + 1) for name, sub in props.items()
        }
    if kind == "array":
        count = max(int(schema.get("minItems") or 0), 1 + int(u * 2))
        if schema.get("maxItems") is not None:
            count = min(count, int(schema["maxItems"]))
        if depth >= MAX_DEPTH:
            return []
        return [
            instance(schema.get("items") or {}, f"{key}[{i}]", root, depth + 1)
            for i in range(count)
        ]
    if kind == "integer":
        low = int(schema.get("minimum", 0))
        high = int(schema.get("maximum", low + 100))
        return low + int(u * (high - low + 1)) if high >= low else low
    if kind == "number":
        bottom = float(schema.get("minimum", 0.0))
        top = float(schema.get("maximum", bottom + 100.0))
        return round(bottom + u * (top - bottom), 2)
    if kind == "boolean":
        return u < 0.5
    if kind == "null":
        return None
    word = _WORDS[int(u * len(_WORDS))]
    if schema.get("format") == "date":
        return f"2026-01-{1 + int(u * 28):02d}"
    return word if len(word) >= int(schema.get("minLength") or 0) else word * 4


def json_answer(schema: dict[str, Any], key: str, *, broken: bool) -> str:
    """JSON text valid against `schema`, or (broken) parseable JSON that is not: a required
    property missing, or an object where the schema wants none."""
    value = instance(schema, key)
    if broken:
        if isinstance(value, dict):
            required = [r for r in _resolve(schema, schema).get("required") or () if r in value]
            if required:
                value.pop(required[0])
            else:
                value = ["not", "an", "object"]
        else:
            value = {"unexpected": value}
    return json.dumps(value, separators=(",", ":"))


def tool_calls(
    tools: list[tuple[str, dict[str, Any]]],
    choice: str | None,
    parallel: bool,
    key: str,
    *,
    malformed_rate: float,
) -> list[tuple[str, str, str]]:
    """(id, name, arguments) of the calls the model makes: the named function, or one or
    two of the tools picked by the hash of `key`; a `malformed_rate` share of them carry
    cut-off JSON."""
    if not tools:
        return []
    if choice not in (None, "auto", "required", "none"):
        picked = [t for t in tools if t[0] == choice][:1]
    else:
        start = int(unit_hash(key, "tool") * len(tools))
        count = 2 if parallel and len(tools) > 1 and unit_hash(key, "parallel") < 0.5 else 1
        picked = [tools[(start + i) % len(tools)] for i in range(count)]
    calls = []
    for i, (name, schema) in enumerate(picked):
        arguments = json.dumps(instance(schema, f"{key}:{name}"), separators=(",", ":"))
        if unit_hash(key, "malformed", i) < malformed_rate:
            arguments = arguments[: max(1, len(arguments) // 2)]
        digest = f"{unit_hash(key, 'id', i):.12f}"[2:]
        calls.append((f"call_{digest}", name, arguments))
    return calls


def embedding(text: str, model: str, dimensions: int) -> list[float]:
    """A unit vector of `dimensions` fixed by the text and model."""
    raw = [unit_hash(model, text, i) - 0.5 for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


def argument_pieces(arguments: str, count: int = 3) -> list[str]:
    """Tool-call arguments split into `count` stream deltas."""
    size = max(1, math.ceil(len(arguments) / count))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]
