"""Finding quality-gates.yaml without importing the config models (kept light for start-up)."""

from __future__ import annotations

import os
from pathlib import Path

from quality_gates.errors import ConfigError

CONFIG_NAMES = ("quality-gates.yaml", "quality-gates.yml")
CONFIG_ENV = "QG_CONFIG"


def find_config(explicit: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Path:
    """`--config`, else $QG_CONFIG, else quality-gates.yaml in this folder or one above it."""
    chosen = explicit or os.environ.get(CONFIG_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            source = "--config" if explicit else CONFIG_ENV
            raise ConfigError(
                f"{path}: no such config file (from {source})",
                hint="run `quality-gates init` to write one",
            )
        return path.resolve()
    start = (cwd or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        for name in CONFIG_NAMES:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    raise ConfigError(
        f"no quality-gates.yaml in {start} or above",
        hint="run `quality-gates init`, pass --config FILE or set QG_CONFIG",
    )
