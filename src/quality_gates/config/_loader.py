"""Finding, reading and validating quality-gates.yaml with errors that name file:line:field."""

from __future__ import annotations

import hashlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from quality_gates._suggest import nearest
from quality_gates.config._root import Finding, QualityGatesConfig, cross_check, secret_findings
from quality_gates.config._snapshot import ConfigSnapshot
from quality_gates.errors import ConfigError

KeyPath = tuple[str | int, ...]


@dataclass
class LoadedConfig:
    """A validated config with where it came from and what validation warned about."""

    config: QualityGatesConfig
    path: Path
    digest: str
    warnings: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        """The folder the config lives in; relative paths in it are read from here."""
        return self.path.parent

    def snapshot(self) -> ConfigSnapshot:
        """The effective config as plain data, as the store keeps it."""
        data = self.config.model_dump(mode="json", by_alias=True)
        return ConfigSnapshot(self.path, self.digest, data, list(self.warnings))


class _LineMap:
    """Line numbers (1-based) of every key and item in a YAML document."""

    def __init__(self) -> None:
        self.lines: dict[KeyPath, int] = {}
        self.duplicates: list[tuple[KeyPath, int]] = []

    def walk(self, node: yaml.Node, path: KeyPath = ()) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = (*path, key)
                if key in seen:
                    self.duplicates.append((child, key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[child] = key_node.start_mark.line + 1
                self.walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, index)
                self.lines[child] = item.start_mark.line + 1
                self.walk(item, child)

    def line_of(self, path: KeyPath) -> int | None:
        """The line of `path`, or of its nearest ancestor present in the file."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def _format_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _model_at(root: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    """The config model class that owns the mapping at `path`, for key suggestions."""
    annotation: Any = root
    for part in path:
        annotation = _unwrap(annotation, part)
        if annotation is None:
            return None
    annotation = _unwrap(annotation, None)
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _unwrap(annotation: Any, part: str | int | None) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = options[0] if len(options) == 1 else None
        else:
            break
    if part is None:
        return annotation
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    if origin is list and isinstance(part, int):
        return typing.get_args(annotation)[0]
    if origin is dict:
        return typing.get_args(annotation)[1]
    return None


def _describe(error: Any, path: KeyPath) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(path[-1])
        owner = _model_at(QualityGatesConfig, path[:-1])
        known = []
        if owner is not None:
            known = [info.alias or name for name, info in owner.model_fields.items()]
        near = nearest(key, known)
        hint = f"; did you mean {near!r}?" if near else ""
        listing = f" (accepted: {', '.join(known)})" if known and not near else ""
        return f"unknown key {key!r}{hint}{listing}"
    if kind == "missing":
        return f"required key {str(path[-1])!r} is missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        got = error.get("input")
        options = [o.strip().strip("'") for o in expected.replace(" or ", ",").split(",")]
        near = nearest(str(got), options)
        hint = f"; did you mean {near!r}?" if near else ""
        return f"{got!r} is not one of {expected}{hint}"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    got = error.get("input")
    if kind not in ("value_error",) and not isinstance(got, dict | list) and got is not None:
        message = f"{message} (got {got!r})"
    return message


def _located(source: str, lines: _LineMap, finding_path: KeyPath, message: str) -> str:
    line = lines.line_of(finding_path)
    where = f"{source}:{line}" if line else source
    return f"{where}: {_format_path(finding_path)}: {message}"


# A real config is a few KiB and a few hundred nodes. Past these, the file is refused before
# it is expanded: a billion-laughs file (aliases of aliases) took 4.3 GB in `config validate`.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_NODES = 100_000  # counted with every alias expanded


def _check_expansion(node: yaml.Node, source: str) -> None:
    """Refuse a document whose expanded size (aliases followed) passes MAX_CONFIG_NODES;
    stops counting there, so the check itself stays cheap."""
    seen, stack = 0, [node]
    while stack:
        current = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_NODES:
            raise ConfigError(
                f"{source}: the document expands to over {MAX_CONFIG_NODES:,} YAML nodes "
                "(aliases of aliases?); a config is far smaller"
            )
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack += (key, value)
        elif isinstance(current, yaml.SequenceNode):
            stack += current.value


def parse_config_text(text: str, source: str) -> LoadedConfig:
    """Validate YAML text; raise ConfigError listing every problem with its file:line."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{source}: {len(text):,} characters; a config is at most {MAX_CONFIG_BYTES:,}"
        )
    digest = hashlib.sha256(text.encode()).hexdigest()
    loader = yaml.CSafeLoader(text) if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, source)
        raw = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"{source}{line}: malformed YAML: {problem}",
            problems=[f"{source}{line}: malformed YAML: {problem}"],
        ) from None
    finally:
        loader.dispose()
    if raw is None:
        raise ConfigError(
            f"{source}: the file is empty", hint="run `quality-gates init` for a starter"
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}:1: the top level must be a mapping of sections, not a {type(raw).__name__}"
        )
    lines = _LineMap()
    if node is not None:
        lines.walk(node)
    problems = [
        _located(source, lines, path, f"key {str(path[-1])!r} appears twice (line {line})")
        for path, line in lines.duplicates
    ]
    try:
        config = QualityGatesConfig.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            path = tuple(p for p in error["loc"] if isinstance(p, str | int))
            problems.append(_located(source, lines, path, _describe(error, path)))
        raise ConfigError(f"{source}: {len(problems)} problem(s)", problems=problems) from None
    findings: list[Finding] = cross_check(config) + secret_findings(raw)
    problems += [_located(source, lines, f.path, f.message) for f in findings if f.level == "error"]
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s)", problems=problems)
    warnings = [
        _located(source, lines, f.path, f"warning: {f.message}")
        for f in findings
        if f.level == "warning"
    ]
    return LoadedConfig(config=config, path=Path(source), digest=digest, warnings=warnings, raw=raw)


def load_config(path: Path) -> LoadedConfig:
    """Read and validate the config at `path`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    loaded = parse_config_text(text, str(path))
    loaded.path = path.resolve()
    return loaded
