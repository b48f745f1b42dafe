"""Edits that change only the lines they edit.

ruamel's round trip keeps comments but re-indents sequences and re-flows long lines, so a
`config set` of one key used to rewrite a hundred lines. Here a value is replaced in the
original text at the position ruamel reports for it; a new key is inserted as one line after
the last line of its mapping. What cannot be done that way (a value spread over several
lines inside a flow collection, say) returns None and the caller says the file was
reformatted.
"""

from __future__ import annotations

import io
from typing import Any


def inline(value: Any) -> str:
    """`value` as one line of YAML (flow style for collections)."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    yaml.default_flow_style = True
    yaml.width = 1 << 20
    buffer = io.StringIO()
    yaml.dump(value, buffer)
    text = buffer.getvalue().strip()
    if text.endswith("..."):  # a lone scalar ends with a document end marker
        text = text.rsplit("\n", 1)[0].strip()
    return text


def _scalar_end(line: str, start: int, *, flow: bool = False) -> int | None:
    """Where the scalar (or one-line flow collection) starting at `start` ends, before any
    trailing comment (inside a flow collection, before the next `,` `}` `]`); None when it
    does not end on this line."""
    opener = line[start] if start < len(line) else ""
    if opener in ("'", '"'):
        i = start + 1
        while i < len(line):
            if line[i] == opener:
                if opener == "'" and i + 1 < len(line) and line[i + 1] == "'":
                    i += 2
                    continue
                return i + 1
            if opener == '"' and line[i] == "\\":
                i += 2
                continue
            i += 1
        return None
    if opener in ("[", "{"):
        depth, quote = 0, ""
        for i in range(start, len(line)):
            char = line[i]
            if quote:
                if char == quote:
                    quote = ""
                continue
            if char in ("'", '"'):
                quote = char
            elif char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
                if depth == 0:
                    return i + 1
        return None
    if opener in ("|", ">"):
        return None  # a block scalar spans the lines below
    if flow:
        stops = [i for i in (line.find(c, start) for c in ",}]") if i >= 0]
        return len(line[: min(stops)].rstrip()) if stops else None
    end = line.find(" #", start)
    return len(line.rstrip("\n")) if end < 0 else len(line[:end].rstrip())


def _block_end(lines: list[str], first: int, indent: int) -> int:
    """The index after the last line that belongs to a block starting on line `first` whose
    parent key sits at column `indent` (trailing blank and comment lines stay outside)."""
    last = first
    for index in range(first + 1, len(lines)):
        text = lines[index]
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(text) - len(text.lstrip(" ")) <= indent and not stripped.startswith("- "):
            break
        if len(text) - len(text.lstrip(" ")) < indent:
            break
        last = index
    return last + 1


def replace_value(text: str, parent: Any, key: Any, new_value: Any) -> str | None:
    """`text` with the value of `parent[key]` (a node of ruamel's round-trip load of `text`)
    replaced by `new_value`, or None when that cannot be done in place."""
    lines = text.splitlines(keepends=True)
    try:
        if isinstance(key, int):
            key_line, key_col = parent.lc.item(key)
            value_line, value_col = key_line, key_col
        else:
            key_line, key_col, value_line, value_col = parent.lc.data[key]
    except (AttributeError, KeyError, IndexError, TypeError):
        return None
    old = parent[key]
    if isinstance(key, int):
        if isinstance(old, (dict, list)):
            return None
        return _replace_span(lines, value_line, value_col, inline(new_value), flow=_is_flow(parent))
    is_block = isinstance(old, (dict, list)) and not _is_flow(old)
    if is_block or value_line != key_line:
        # The value sits on the lines below its key: they all become `key: <inline value>`.
        if key_line >= len(lines):
            return None
        end = _block_end(lines, key_line, key_col)
        head = lines[key_line]
        colon = head.find(":", key_col)
        if colon < 0:
            return None
        newline = "\n" if head.endswith("\n") else ""
        lines[key_line:end] = [f"{head[: colon + 1]} {inline(new_value)}{newline}"]
        return "".join(lines)
    return _replace_span(lines, value_line, value_col, inline(new_value), flow=_is_flow(parent))


def _is_flow(node: Any) -> bool:
    try:
        return bool(node.fa.flow_style())
    except AttributeError:
        return False


def _replace_span(
    lines: list[str], line_no: int, col: int, replacement: str, *, flow: bool = False
) -> str | None:
    if line_no >= len(lines):
        return None
    line = lines[line_no]
    end = _scalar_end(line, col, flow=flow)
    if end is None:
        return None
    lines[line_no] = line[:col] + replacement + line[end:]
    return "".join(lines)


def insert_key(text: str, parent: Any, key: str, new_value: Any) -> str | None:
    """`text` with `key: new_value` added as the last entry of the block mapping `parent`,
    or None when `parent` is a flow mapping or has no position to go by."""
    if _is_flow(parent) or not len(parent):
        return None
    lines = text.splitlines(keepends=True)
    try:
        last_key = list(parent)[-1]
        key_line, key_col, _, _ = parent.lc.data[last_key]
    except (AttributeError, KeyError, IndexError, TypeError):
        return None
    end = _block_end(lines, key_line, key_col)
    if end > 0 and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    lines.insert(end, f"{' ' * key_col}{key}: {inline(new_value)}\n")
    return "".join(lines)
