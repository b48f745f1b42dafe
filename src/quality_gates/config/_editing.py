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
    # Where the text changes: (mapping or list as loaded, key or index, value to put there).
    anchor: tuple[Any, Any, Any] | None = None
    new_value = _parse_scalar(value_text)
    for depth, part in enumerate(parts[:-1]):
        if isinstance(parent, dict) and part not in parent:
            if anchor is None:
                nested: Any = new_value
                for inner in reversed(parts[depth + 1 :]):
                    nested = {inner: nested}
                anchor = (parent, part, nested)
            parent[part] = {}
        parent, _ = _child(parent, part, key)
    last = parts[-1]
    if isinstance(parent, list):
        _, position = _child(parent, last, key)
        index = int(position)
        old_value = parent[index]
        anchor = anchor or (parent, index, new_value)
        parent[index] = new_value
    elif isinstance(parent, dict):
        old_value = parent.get(last)
        anchor = anchor or (parent, last, new_value)
        parent[last] = new_value
    else:
        raise UsageError(f"{key}: the parent is a value, not a section")
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    text = _in_place(original, anchor, buffer.getvalue())
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


def _in_place(original: str, anchor: tuple[Any, Any, Any], dumped: str) -> str:
    """The edit made in `original` itself, changing only the lines it must, when the result
    reads the same as ruamel's full rewrite (`dumped`); else the full rewrite."""
    from ruamel.yaml import YAML

    from quality_gates.config._surgery import insert_key, replace_value

    # Positions come from a fresh load of the original (the document above is edited).
    parent, key, value = anchor
    node = _same_node(YAML().load(original), parent)
    if node is None:
        return dumped
    edited = (
        replace_value(original, node, key, value)
        if (isinstance(node, list) or key in node)
        else insert_key(original, node, str(key), value)
    )
    if edited is None:
        return dumped
    safe = YAML(typ="safe")
    if safe.load(edited) != safe.load(dumped):
        return dumped
    return edited


def _same_node(fresh: Any, target: Any) -> Any:
    """The node of `fresh` that sits where `target` (a node of an edited copy) sits."""
    try:
        where = (target.lc.line, target.lc.col)
    except AttributeError:
        return None

    def walk(node: Any) -> Any:
        if not isinstance(node, (dict, list)):
            return None
        lc = getattr(node, "lc", None)
        if lc is not None and (lc.line, lc.col) == where and type(node) is type(target):
            return node
        for child in node.values() if isinstance(node, dict) else node:
            found = walk(child)
            if found is not None:
                return found
        return None

    return walk(fresh)


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
