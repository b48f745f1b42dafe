"""Reading and changing single keys of quality-gates.yaml while keeping its comments.

Keys are dotted paths. List items are addressed by index (`providers.0`) or by their
`name` / `id` (`providers.bedrock.profile`, `models.claude-3-haiku.price.input_per_1k`).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from quality_gates.config._loader import LoadedConfig, parse_config_text
from quality_gates.errors import ConfigError, UsageError

_IDENTITY_KEYS = ("name", "id", "primary")


def split_key(key: str) -> list[str]:
    """`a.b.c` -> [a, b, c]; a segment in brackets may hold dots: `models.[llama-3.1].price`."""
    parts: list[str] = []
    buffer = ""
    depth = 0
    for char in key:
        if char == "[":
            depth += 1
            if depth == 1:
                continue
        elif char == "]":
            depth -= 1
            if depth == 0:
                continue
        if char == "." and depth == 0:
            parts.append(buffer)
            buffer = ""
        else:
            buffer += char
    parts.append(buffer)
    if any(p == "" for p in parts):
        raise UsageError(f"{key!r} is not a key path (example: environments.production.routing)")
    return parts


def _child(node: Any, part: str, key: str) -> tuple[Any, str | int]:
    if isinstance(node, dict):
        if part in node:
            return node[part], part
        raise UsageError(f"{key}: no key {part!r} here (present: {', '.join(map(str, node))})")
    if isinstance(node, list):
        if part.isdigit() and int(part) < len(node):
            return node[int(part)], int(part)
        for index, item in enumerate(node):
            if isinstance(item, dict) and any(item.get(k) == part for k in _IDENTITY_KEYS):
                return item, index
        names = [
            str(next((i.get(k) for k in _IDENTITY_KEYS if k in i), "?"))
            for i in node
            if isinstance(i, dict)
        ]
        raise UsageError(f"{key}: no item {part!r} (items: {', '.join(names) or 'none'})")
    raise UsageError(f"{key}: {part!r} is below a value, not a section")


def get_value(data: Any, key: str) -> Any:
    """The value at dotted `key` in plain data."""
    node = data
    for part in split_key(key):
        node, _ = _child(node, part, key)
    return node


def flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, scalar) for every leaf; list items by name where they have one."""
    if isinstance(data, dict):
        if not data and prefix:
            yield prefix, {}
        for k, v in data.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(data, list):
        if not data and prefix:
            yield prefix, []
        for index, item in enumerate(data):
            label: Any = index
            if isinstance(item, dict):
                label = next((item[k] for k in _IDENTITY_KEYS if k in item), index)
            yield from flatten(item, f"{prefix}.{label}" if prefix else str(label))
    else:
        yield prefix, data


def _parse_scalar(text: str) -> Any:
    from ruamel.yaml import YAML

    try:
        return YAML(typ="safe").load(text)
    except Exception:
        return text


def set_value(path: Path, key: str, value_text: str) -> tuple[Any, Any, LoadedConfig]:
    """Set `key` to the YAML value in `value_text`; validate; write atomically.

    Returns (old value, new value, the validated config). Nothing is written if the new
    document does not validate.
    """
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 100
    original = path.read_text(encoding="utf-8")
    document = yaml.load(original)
    parts = split_key(key)
    parent = document
    for part in parts[:-1]:
        if isinstance(parent, dict) and part not in parent:
            parent[part] = {}
        parent, _ = _child(parent, part, key)
    last = parts[-1]
    new_value = _parse_scalar(value_text)
    if isinstance(parent, list):
        _, position = _child(parent, last, key)
        index = int(position)
        old_value = parent[index]
        parent[index] = new_value
    elif isinstance(parent, dict):
        old_value = parent.get(last)
        parent[last] = new_value
    else:
        raise UsageError(f"{key}: the parent is a value, not a section")
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    text = buffer.getvalue()
    try:
        loaded = parse_config_text(text, str(path))
    except ConfigError as exc:
        raise ConfigError(
            f"{key}={value_text} would make the config invalid; nothing written",
            problems=[
                f"{key}={value_text} would make the config invalid; nothing written",
                *exc.problems,
            ],
        ) from None
    write_atomically(path, text)
    loaded.path = path.resolve()
    return old_value, new_value, loaded


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename, keeping its permission bits."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
