"""A validated config as plain data: what the store keeps after a sync, read without pydantic.

Commands that only read (status, dashboards, reports) use the snapshot when the file's digest
matches the one synced into the store, which spares them validating the file again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ConfigSnapshot:
    """The effective config (defaults filled in) as JSON-ready data, with its origin."""

    path: Path
    digest: str
    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        """The folder the config lives in."""
        return self.path.parent

    @property
    def project(self) -> str:
        """The project's name."""
        return str(self.data.get("project", "ai-service"))

    @property
    def environment_names(self) -> list[str]:
        """Environments the config defines."""
        return list(self.data.get("environments", {}))

    def environment(self, name: str) -> dict[str, Any] | None:
        """One environment's section."""
        env = self.data.get("environments", {}).get(name)
        return env if isinstance(env, dict) else None

    def to_json(self) -> str:
        """Serialised for the store."""
        return json.dumps(
            {
                "path": str(self.path),
                "digest": self.digest,
                "data": self.data,
                "warnings": self.warnings,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ConfigSnapshot:
        """Read back what `to_json` wrote."""
        raw = json.loads(text)
        return cls(Path(raw["path"]), raw["digest"], raw["data"], list(raw.get("warnings", [])))
