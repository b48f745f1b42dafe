"""Secrets moved out of quality-gates.yaml: `.quality-gates/secrets.env` beside the config.

`validate --fix` moves every plain-text secret it finds in the config into this file (mode
0600, `NAME=value` lines) and puts a reference in its place: the variable's name for a
provider credential (credentials are names of variables), `${NAME}` anywhere else. The CLI
loads the file at start-up into the process environment, without overriding a variable that
is already set, so an exported variable (or a real secret manager) always wins
(`config._secrets.load_secrets`, which the fast commands have loaded anyway). The values are
never printed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quality_gates.config._secrets import (
    is_env_reference,
    looks_like_secret,
    read_secrets,
    secrets_path,
)


@dataclass(frozen=True)
class PlainSecret:
    """A plain-text secret found in the config (the value itself is never shown)."""

    path: tuple[str | int, ...]
    credential: bool
    variable: str

    @property
    def where(self) -> str:
        """`providers[1].credentials.api_key`."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


def _variable(raw: Any, path: tuple[str | int, ...], taken: set[str]) -> str:
    words: list[str] = []
    node = raw
    for part in path:
        child: Any = node[part] if isinstance(node, dict | list) else None  # type: ignore[index]
        if isinstance(part, int) and isinstance(child, dict) and isinstance(child.get("name"), str):
            words.append(child["name"])
        elif isinstance(part, str) and part not in ("providers", "credentials", "channels"):
            words.append(part)
        node = child
    name = "QG_" + re.sub(r"[^A-Za-z0-9]+", "_", "_".join(words)).strip("_").upper()
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def find_plain_secrets(raw: Any) -> list[PlainSecret]:
    """Every string in the parsed config that reads like a credential in plain text."""
    found: list[PlainSecret] = []
    taken: set[str] = set()

    def walk(node: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, str(key)))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*path, index))
        elif isinstance(node, str) and not is_env_reference(node) and looks_like_secret(node):
            credential = len(path) >= 2 and path[-2] == "credentials"
            found.append(PlainSecret(path, credential, _variable(raw, path, taken)))

    walk(raw, ())
    return found


def move_secrets(config_path: Path) -> list[PlainSecret]:
    """Move every plain-text secret of the config into the secrets file; the config keeps a
    reference. Returns what was moved (nothing is written when nothing is found)."""
    import io

    from ruamel.yaml import YAML

    from quality_gates.config._editing import write_atomically

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 100
    original = config_path.read_text(encoding="utf-8")
    document = yaml.load(original)
    secrets = find_plain_secrets(document)
    if not secrets:
        return []
    target = secrets_path(config_path.parent)
    existing = read_secrets(target)
    lines = []
    moved = []
    for secret in secrets:
        node = document
        for part in secret.path[:-1]:
            node = node[part]
        value = str(node[secret.path[-1]])
        variable = secret.variable
        if existing.get(variable, value) != value:
            variable = f"{variable}_MOVED"
        lines.append(f"{variable}={value}")
        node[secret.path[-1]] = variable if secret.credential else "${" + variable + "}"
        os.environ.setdefault(variable, value)
        moved.append(PlainSecret(secret.path, secret.credential, variable))
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = target.read_text(encoding="utf-8") if target.is_file() else ""
    header = "" if previous else "# Secrets moved out of quality-gates.yaml by `validate --fix`.\n"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(header + previous + "".join(f"{line}\n" for line in lines))
    os.chmod(target, 0o600)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    write_atomically(config_path, _edited_in_place(original, document, moved, buffer.getvalue()))
    return moved


def _edited_in_place(original: str, document: Any, moved: list[PlainSecret], dumped: str) -> str:
    """The secrets replaced by their references in the original text, line by line (every
    other byte kept), when that reads the same as the full rewrite; else the rewrite."""
    from ruamel.yaml import YAML

    from quality_gates.config._surgery import replace_value

    text = original
    for secret in moved:
        fresh = YAML().load(text)
        parent = fresh
        target = document
        for part in secret.path[:-1]:
            parent, target = parent[part], target[part]
        edited = replace_value(text, parent, secret.path[-1], target[secret.path[-1]])
        if edited is None:
            return dumped
        text = edited
    safe = YAML(typ="safe")
    return text if safe.load(text) == safe.load(dumped) else dumped
