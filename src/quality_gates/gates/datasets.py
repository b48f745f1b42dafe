"""Evaluation datasets: JSON, JSONL, CSV and YAML, read as a stream of items.

An item has an `id`, an `input` (text, or chat messages with role and content), an
`expected` answer (alias `ideal`, as in OpenAI evals) and/or `assertions`, and free
`metadata`. JSONL, CSV and JSON arrays are streamed (a 1 GB file never sits in memory);
YAML has no streaming reader, so it is refused above YAML_MAX_BYTES with a pointer to JSONL.
Every problem is one DatasetError naming file:line and what would be accepted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any

from quality_gates.errors import UsageError
from quality_gates.providers import Message

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
FORMATS |= {".yaml": "yaml", ".yml": "yaml"}
YAML_MAX_BYTES = 50 * 1024 * 1024
MAX_ITEM_BYTES = 16 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024
ROLES = ("system", "user", "assistant")
DEFAULT_DATASET = "default-dataset.jsonl"
ITEM_KEYS = ("id", "input", "expected", "ideal", "assertions", "metadata")


class DatasetError(UsageError):
    """A dataset cannot be read: one line with the file, the line and what is accepted."""


@dataclass(frozen=True)
class DatasetItem:
    """One evaluation case."""

    id: str
    messages: tuple[Message, ...]
    expected: Any = None
    assertions: tuple[dict[str, Any], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    line: int = 0

    @property
    def prompt(self) -> str:
        """The last user message: what a report shows as the input."""
        users = [m.content for m in self.messages if m.role == "user"]
        return users[-1] if users else self.messages[-1].content

    def to_json(self) -> dict[str, Any]:
        """As written in a results file."""
        return {
            "id": self.id,
            "input": [{"role": m.role, "content": m.content} for m in self.messages],
            "expected": self.expected,
            "assertions": list(self.assertions),
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from: a file, or the one shipped with the package."""

    path: Path
    format: str
    builtin: bool = False

    @property
    def display(self) -> str:
        """For messages and reports."""
        return f"(built-in) {self.path.name}" if self.builtin else str(self.path)

    def digest(self) -> str:
        """SHA-256 of the file's bytes, read in chunks (part of a run's config hash)."""
        sha = hashlib.sha256()
        with self.path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                sha.update(chunk)
        return sha.hexdigest()


def builtin_dataset() -> Path:
    """The default dataset shipped inside the package."""
    return Path(str(resources.files("quality_gates") / "data" / DEFAULT_DATASET))


def locate(path: str | Path | None, *, base: Path | None = None) -> DatasetSource:
    """The dataset at `path` (relative to `base`), or the built-in one when None."""
    if path is None:
        return DatasetSource(builtin_dataset(), "jsonl", builtin=True)
    given = Path(path).expanduser()
    candidate = given
    if not candidate.is_absolute() and base is not None and not candidate.exists():
        candidate = base / candidate
    if not candidate.exists():
        looked = list(dict.fromkeys(str(c.resolve()) for c in (given, candidate)))
        raise DatasetError(f"{path}: dataset not found (looked for {' and '.join(looked)})")
    if candidate.is_dir():
        raise DatasetError(f"{path}: is a folder; name a .jsonl, .json, .csv or .yaml file")
    suffix = candidate.suffix.lower()
    if suffix not in FORMATS:
        raise DatasetError(
            f"{path}: unknown dataset format {suffix or '(no extension)'!r}",
            hint="use .jsonl, .json, .csv, .yaml or .yml",
        )
    return DatasetSource(candidate, FORMATS[suffix])


def read_items(source: DatasetSource, *, limit: int | None = None) -> Iterator[DatasetItem]:
    """Items one at a time; raises DatasetError on the first bad one (or an empty file)."""
    readers = {"jsonl": _jsonl, "json": _json_array, "csv": _csv, "yaml": _yaml}
    seen: set[int] = set()
    count = 0
    try:
        handle = source.path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise DatasetError(f"{source.display}: cannot read: {exc.strerror}") from None
    with handle:
        try:
            for line, raw in readers[source.format](handle, source):
                item = parse_item(raw, source, line, count + 1)
                key = int.from_bytes(hashlib.blake2b(item.id.encode(), digest_size=8).digest())
                if key in seen:
                    raise DatasetError(
                        f"{source.display}:{line}: duplicate id {item.id!r}",
                        hint="ids pair a candidate's answers with a baseline's; make them unique",
                    )
                seen.add(key)
                count += 1
                yield item
                if limit is not None and count >= limit:
                    return
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"{source.display}: not UTF-8 text ({exc.reason} at byte {exc.start} of a "
                "block); save the file as UTF-8"
            ) from None
    if count == 0:
        raise DatasetError(f"{source.display}: the dataset has no items")


def count_items(source: DatasetSource, *, limit: int | None = None) -> int:
    """How many items the dataset has (streams through it once)."""
    return sum(1 for _ in read_items(source, limit=limit))


def parse_item(raw: Any, source: DatasetSource, line: int, index: int) -> DatasetItem:
    """Validate one raw record into a DatasetItem."""
    where = f"{source.display}:{line}"
    if not isinstance(raw, dict):
        raise DatasetError(
            f"{where}: item {index} is a {type(raw).__name__}, not an object",
            hint='expected {"id": ..., "input": ..., "expected": ...}',
        )
    if "input" not in raw:
        keys = ", ".join(sorted(map(str, raw))) or "none"
        raise DatasetError(
            f"{where}: item {index} has no 'input' (keys: {keys})",
            hint="each item needs input (text or chat messages) and expected, ideal or assertions",
        )
    messages = _messages(raw["input"], where)
    expected = raw.get("expected", raw.get("ideal"))
    assertions = raw.get("assertions") or []
    if isinstance(assertions, dict):
        assertions = [assertions]
    if not isinstance(assertions, list) or not all(isinstance(a, dict) for a in assertions):
        raise DatasetError(f"{where}: 'assertions' must be a list of objects with a 'type'")
    for assertion in assertions:
        if not isinstance(assertion.get("type"), str):
            raise DatasetError(f"{where}: an assertion has no 'type' (e.g. contains, regex)")
    if expected is None and not assertions:
        raise DatasetError(
            f"{where}: item {index} has neither 'expected' (or 'ideal') nor 'assertions'",
            hint="say what a right answer is, or how to check one",
        )
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise DatasetError(f"{where}: 'metadata' must be an object")
    extra = {k: v for k, v in raw.items() if k not in ITEM_KEYS}
    item_id = raw.get("id")
    if item_id is None or str(item_id).strip() == "":
        item_id = f"#{index}"
    return DatasetItem(
        id=str(item_id),
        messages=messages,
        expected=expected,
        assertions=tuple(assertions),
        metadata={**extra, **metadata},
        line=line,
    )


def _messages(value: Any, where: str) -> tuple[Message, ...]:
    if isinstance(value, str):
        if not value.strip():
            raise DatasetError(f"{where}: 'input' is empty")
        return (Message("user", value),)
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list) and value:
        messages = []
        for entry in value:
            if not isinstance(entry, dict):
                raise DatasetError(f"{where}: a chat message must be an object with role, content")
            role, content = entry.get("role"), entry.get("content")
            if role not in ROLES:
                raise DatasetError(
                    f"{where}: message role {role!r} is not one of {', '.join(ROLES)}"
                )
            if not isinstance(content, str):
                raise DatasetError(f"{where}: message content must be text")
            messages.append(Message(role, content))
        return tuple(messages)
    raise DatasetError(
        f"{where}: 'input' must be text or a list of chat messages "
        '([{"role": "user", "content": "..."}])'
    )


Records = Iterator[tuple[int, Any]]


def _jsonl(handle: IO[str], source: DatasetSource) -> Records:
    for number, text in enumerate(handle, start=1):
        if len(text) > MAX_ITEM_BYTES:
            raise DatasetError(f"{source.display}:{number}: line longer than 16 MB")
        stripped = text.strip()
        if not stripped or stripped.startswith("//"):
            continue
        try:
            yield number, json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{source.display}:{number}:{exc.colno}: not valid JSON: {exc.msg}",
                hint="JSONL holds one JSON object per line",
            ) from None


def _json_array(handle: IO[str], source: DatasetSource) -> Records:
    """A top-level array streamed item by item; `{"items": [...]}` is read whole."""
    decoder = json.JSONDecoder()
    buffer = handle.read(CHUNK_BYTES)
    offset_line = 1  # line number of buffer[0]
    eof = len(buffer) < CHUNK_BYTES
    pos = _skip_ws(buffer, 0)
    if pos >= len(buffer):
        raise DatasetError(f"{source.display}: the dataset has no items")
    if buffer[pos] == "{":
        rest = buffer + handle.read(MAX_ITEM_BYTES * 4)
        if handle.read(1):
            raise DatasetError(
                f"{source.display}: a JSON object larger than 64 MB cannot be streamed",
                hint='write a top-level array [...] or JSONL instead of {"items": [...]}',
            )
        try:
            document = json.loads(rest)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{source.display}:{exc.lineno}: not valid JSON: {exc.msg}"
            ) from None
        items = document.get("items") if isinstance(document, dict) else None
        if not isinstance(items, list):
            raise DatasetError(
                f'{source.display}: a JSON dataset is an array of items or {{"items": [...]}}'
            )
        for item in items:
            yield 0, item
        return
    if buffer[pos] != "[":
        raise DatasetError(
            f"{source.display}:1: a JSON dataset starts with [ (an array of items)",
            hint="or use JSONL: one object per line",
        )
    pos += 1
    expect_comma = False
    while True:
        pos = _skip_ws(buffer, pos)
        while pos >= len(buffer) and not eof:
            offset_line += buffer.count("\n")
            buffer, pos = handle.read(CHUNK_BYTES), 0
            eof = len(buffer) < CHUNK_BYTES
            pos = _skip_ws(buffer, pos)
        if pos >= len(buffer):
            raise DatasetError(f"{source.display}: the JSON array is not closed (missing ])")
        char = buffer[pos]
        if char == "]":
            return
        if expect_comma:
            if char != ",":
                line = offset_line + buffer.count("\n", 0, pos)
                raise DatasetError(f"{source.display}:{line}: expected , or ] between items")
            pos += 1
            expect_comma = False
            continue
        while True:
            try:
                value, end = decoder.raw_decode(buffer, pos)
                break
            except json.JSONDecodeError as exc:
                if eof or len(buffer) - pos > MAX_ITEM_BYTES:
                    line = offset_line + buffer.count("\n", 0, exc.pos)
                    problem = exc.msg if eof else "an item larger than 16 MB"
                    raise DatasetError(
                        f"{source.display}:{line}: not valid JSON: {problem}"
                    ) from None
                more = handle.read(CHUNK_BYTES)
                eof = len(more) < CHUNK_BYTES
                offset_line += buffer.count("\n", 0, pos)
                buffer = buffer[pos:] + more
                pos = 0
        yield offset_line + buffer.count("\n", 0, pos), value
        pos, expect_comma = end, True


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _csv(handle: IO[str], source: DatasetSource) -> Records:
    csv.field_size_limit(min(sys.maxsize, MAX_ITEM_BYTES))
    reader = csv.DictReader(handle)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise DatasetError(f"{source.display}:1: not valid CSV: {exc}") from None
    if not header:
        raise DatasetError(f"{source.display}: the dataset has no items")
    if "input" not in header:
        raise DatasetError(
            f"{source.display}:1: CSV header has no 'input' column (columns: {', '.join(header)})",
            hint="columns: id, input, expected (or ideal), optional assertions (JSON), others",
        )
    try:
        for row in reader:
            line = reader.line_num
            if None in row:
                raise DatasetError(f"{source.display}:{line}: more fields than header columns")
            record: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
            if "assertions" in record:
                try:
                    record["assertions"] = json.loads(record["assertions"])
                except json.JSONDecodeError as exc:
                    raise DatasetError(
                        f"{source.display}:{line}: the assertions column is not JSON: {exc.msg}"
                    ) from None
            if "input" in record and record["input"].lstrip().startswith("[{"):
                try:
                    record["input"] = json.loads(record["input"])
                except json.JSONDecodeError:
                    pass  # plain text that happens to start with [{
            yield line, record
    except csv.Error as exc:
        raise DatasetError(f"{source.display}:{reader.line_num}: not valid CSV: {exc}") from None


def _yaml(handle: IO[str], source: DatasetSource) -> Records:
    import yaml

    size = source.path.stat().st_size
    if size > YAML_MAX_BYTES:
        raise DatasetError(
            f"{source.display}: a YAML dataset over {YAML_MAX_BYTES // 2**20} MB "
            f"({size / 2**20:.0f} MB) cannot be streamed",
            hint="convert it to JSONL (one object per line), which streams at any size",
        )
    text = handle.read()
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        node = yaml.compose(io.StringIO(text), Loader=loader)
        document = yaml.load(io.StringIO(text), Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DatasetError(f"{source.display}{line}: not valid YAML: {problem}") from None
    items = document.get("items") if isinstance(document, dict) else document
    nodes: list[Any] = []
    if node is not None and isinstance(document, dict):
        nodes = next((v.value for k, v in node.value if getattr(k, "value", None) == "items"), [])
    elif node is not None and isinstance(document, list):
        nodes = node.value
    if document is None:
        raise DatasetError(f"{source.display}: the dataset has no items")
    if not isinstance(items, list):
        raise DatasetError(f"{source.display}: a YAML dataset is a list of items or items: [...]")
    for index, item in enumerate(items):
        number = int(nodes[index].start_mark.line) + 1 if index < len(nodes) else 0
        yield number, item
